"""Score sampled DRG completions the way REFERENCE A does, plus the analysis a coder needs.

Input: one record per case, ``{"solution": GOLD_DESCRIPTION, "completions": [text, …]}`` (``hadm_id``
optional; ``gold``/``description`` are accepted for ``solution``) — the lines of ``generations.jsonl``.

Per sample: the completion is parsed with :func:`clinrl.drg.prompts.parse_completion` and its answer
matched with :func:`clinrl.drg.rewards.match_answer` (exact v34 description, case and white space aside,
no DRG numbers, no look-alike characters). A sample *predicts* a DRG only when its format holds (one
think block then one answer block, as the format reward demands) and the answer is a v34 description;
otherwise it abstains. Targets, each scored the same way:

- ``drg``: the predicted DRG is the gold DRG;
- ``principal``: same base DRG (``DRG.principal``);
- ``cc_mcc``: same CC/MCC class (``DRG.cc_mcc``; two NOT_APPLICABLE count as equal, so an exact DRG is
  always right on both principal and CC/MCC — unlike the reward's partial credit, which never pays
  NOT_APPLICABLE).

Metrics (fractions in [0, 1]; ``n`` = samples per case, the smallest count when cases differ):

- ``pass@1``: mean over cases of the share of correct samples (mean accuracy over the n samples).
- ``pass@k``: unbiased estimator ``1 - C(n-c, k) / C(n, k)`` per case (c correct of n), mean over cases;
  for k = n this is "any sample correct".
- ``maj@k``: the majority vote of the first k samples is correct. Abstaining samples do not vote; a case
  where nobody votes is wrong. Ties go to the tied answer whose first vote came earliest in sample order.
  For ``principal``/``cc_mcc`` the vote is over predicted base DRGs / CC/MCC classes.
- ``format_failure_rate``: share of samples not in the strict format. ``invalid_answer_rate``: share of
  samples with a closed ``<answer>…</answer>`` block whose text is not a v34 description (empty
  included), whatever the format. ``no_answer_rate``: share with no closed answer block.
- ``per_mdc``: by the gold DRG's MDC: cases and DRG Pass@1. ``macro_f1``: DRG macro-F1 over the gold
  classes, every sample one prediction (abstentions are wrong); ``macro_f1_maj``: the same with the
  majority vote of all n samples as the one prediction per case.
- ``case_mix``: over samples that predict a DRG with a known relative weight (gold weight known too):
  ``mean_pred_weight``, ``mean_true_weight``, ``mean_abs_weight_error``, ``n_samples``.
- ``error_breakdown``: over samples that predict a wrong DRG: share with the wrong principal only
  (``wrong_principal``), the wrong CC/MCC class only (``wrong_cc_mcc``) or ``both``; ``n_wrong``.
- ``cc_mcc_confusion``: ``labels`` (gold classes, rows), ``columns`` (predicted classes then
  ``"invalid"`` for abstentions) and ``matrix`` of sample counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrl.drg.ontology import CCMCC, DRG, MDC_NAMES, Ontology, load_ontology
from clinrl.drg.prompts import parse_completion
from clinrl.drg.rewards import match_answer
from clinrl.errors import DataError
from clinrl.io import read_jsonl

__all__ = [
    "METRICS_VERSION",
    "TARGETS",
    "SampleResult",
    "default_ks",
    "judge",
    "majority",
    "pass_at_k",
    "read_generations",
    "score_generations",
]

METRICS_VERSION = 1
GOLD_FIELDS = ("solution", "gold", "description")

# target name -> the key of a DRG that the target compares
TARGETS: dict[str, Callable[[DRG], Any]] = {
    "drg": lambda d: d.code,
    "principal": lambda d: d.principal,
    "cc_mcc": lambda d: int(d.cc_mcc),
}


@dataclass(frozen=True)
class SampleResult:
    """One parsed sample: its predicted DRG (None = abstains) and why it may not count."""

    drg: DRG | None
    format_ok: bool
    has_answer: bool
    valid_answer: bool


def judge(text: str, ontology: Ontology) -> SampleResult:
    """Parse and match one completion."""
    parsed = parse_completion(text if isinstance(text, str) else "")
    matched = match_answer(parsed.answer, ontology) if parsed.answer is not None else None
    predicted = matched if parsed.format_ok else None
    return SampleResult(predicted, parsed.format_ok, parsed.answer is not None, matched is not None)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one case: ``1 - C(n-c, k) / C(n, k)`` (1 when fewer than k are wrong)."""
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(votes: Sequence[Any]) -> Any:
    """The most frequent non-None vote; ties go to the tied value voted first; None if nobody votes."""
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(v for v in votes if v is not None and counts[v] == best)


def default_ks(n: int) -> tuple[int, ...]:
    """1, 2, 4, … up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return tuple(ks + [n])


def read_generations(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``generations.jsonl`` file; a torn last line (interrupted run) is ignored,
    any other unreadable line raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    return [record for _, record in read_jsonl(path, torn_tail=True)]


def _gold(record: Mapping[str, Any], ontology: Ontology, row: int, path: object) -> DRG:
    for name in GOLD_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            drg = ontology.find(value)
            if drg is None:
                raise DataError(f"{value!r} is not an MS-DRG v34 description", path=path, row=row, field=name)
            return drg
    raise DataError("no gold answer (solution)", path=path, row=row, field="solution")


def _completions(record: Mapping[str, Any], row: int, path: object) -> list[str]:
    texts = record.get("completions")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise DataError("completions must be a non-empty list of strings", path=path, row=row, field="completions")
    return texts


def _macro_f1(pairs: Iterable[tuple[int, int | None]]) -> float:
    """Macro-F1 over the gold classes of (gold, predicted) pairs; a None prediction is always wrong."""
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for gold, pred in pairs:
        if pred == gold:
            tp[gold] += 1
        else:
            fn[gold] += 1
            if pred is not None:
                fp[pred] += 1
    classes = set(tp) | set(fn)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        denom = 2 * tp[c] + fp[c] + fn[c]
        scores.append(2 * tp[c] / denom if denom else 0.0)
    return sum(scores) / len(scores)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _checked_ks(ks: Sequence[int] | None, n: int, path: object) -> list[int]:
    """The sorted distinct ks to report: :func:`default_ks` of ``n`` when none are given; a given k below 1
    or above ``n`` raises (pass@k needs k of the n samples, so it would be left out without a word)."""
    if not ks:
        return sorted(set(default_ks(n)))
    bad = sorted({k for k in ks if not 1 <= k <= n})
    if bad:
        raise DataError(
            f"k={', '.join(map(str, bad))} is outside 1..{n}: the file has n={n} completions per case "
            f"(the fewest of any case); use k from 1 to {n}",
            path=path,
        )
    return sorted(set(ks))


def score_generations(
    records: Iterable[Mapping[str, Any]] | str | Path,
    ontology: Ontology | None = None,
    ks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """All metrics (module docstring) for ``records`` or a ``generations.jsonl`` path: the content of
    ``metrics.json``. ``ks`` defaults to :func:`default_ks` of n (the fewest completions of any case); a
    k given outside 1..n is a :class:`DataError` naming n, not a silently empty ``pass@k``."""
    path: object = None
    if isinstance(records, (str, Path)):
        path = records
        records = read_generations(records)
    onto = ontology if ontology is not None else load_ontology()
    cases: list[tuple[DRG, list[SampleResult]]] = []
    for row, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            raise DataError("not a JSON object", path=path, row=row)
        gold = _gold(record, onto, row, path)
        cases.append((gold, [judge(t, onto) for t in _completions(record, row, path)]))
    if not cases:
        raise DataError("no cases to score", path=path)
    n = min(len(samples) for _, samples in cases)
    ks = _checked_ks(ks, n, path)
    metrics: dict[str, Any] = {
        "metrics_version": METRICS_VERSION,
        "n_cases": len(cases),
        "n_samples": n,
        "n_samples_total": sum(len(s) for _, s in cases),
    }
    for target, key in TARGETS.items():
        metrics[target] = _target_scores(cases, key, ks)
    samples = [s for _, ss in cases for s in ss]
    total = len(samples)
    metrics["format_failure_rate"] = sum(not s.format_ok for s in samples) / total
    metrics["invalid_answer_rate"] = sum(s.has_answer and not s.valid_answer for s in samples) / total
    metrics["no_answer_rate"] = sum(not s.has_answer for s in samples) / total
    metrics["abstain_rate"] = sum(s.drg is None for s in samples) / total
    metrics["per_mdc"] = _per_mdc(cases)
    metrics["macro_f1"] = _macro_f1((g.code, s.drg.code if s.drg else None) for g, ss in cases for s in ss)
    metrics["macro_f1_maj"] = _macro_f1(
        (g.code, majority([s.drg.code if s.drg else None for s in ss])) for g, ss in cases
    )
    metrics["case_mix"] = _case_mix(cases)
    metrics["error_breakdown"] = _error_breakdown(cases)
    metrics["cc_mcc_confusion"] = _confusion(cases)
    return metrics


def _target_scores(cases: list[tuple[DRG, list[SampleResult]]], key: Callable[[DRG], Any], ks: list[int]) -> dict:
    per_case_acc, pass_k, maj_k = [], {k: [] for k in ks}, {k: [] for k in ks}
    for gold, samples in cases:
        truth = key(gold)
        votes = [key(s.drg) if s.drg is not None else None for s in samples]
        hits = [v == truth for v in votes]
        per_case_acc.append(sum(hits) / len(hits))
        for k in ks:
            pass_k[k].append(pass_at_k(len(hits), sum(hits), k))
            maj_k[k].append(majority(votes[:k]) == truth)
    n_cases = len(cases)
    return {
        "pass@1": sum(per_case_acc) / n_cases,
        "pass@k": {str(k): sum(v) / n_cases for k, v in pass_k.items()},
        "maj@k": {str(k): sum(v) / n_cases for k, v in maj_k.items()},
    }


def _per_mdc(cases: list[tuple[DRG, list[SampleResult]]]) -> dict[str, Any]:
    by_mdc: dict[str, list[float]] = {}
    for gold, samples in cases:
        acc = sum(s.drg is not None and s.drg.code == gold.code for s in samples) / len(samples)
        by_mdc.setdefault(gold.mdc, []).append(acc)
    order = {m: i for i, m in enumerate(MDC_NAMES)}
    return {
        mdc: {"name": MDC_NAMES.get(mdc, mdc), "n_cases": len(accs), "pass@1": sum(accs) / len(accs)}
        for mdc, accs in sorted(by_mdc.items(), key=lambda kv: order.get(kv[0], len(order)))
    }


def _case_mix(cases: list[tuple[DRG, list[SampleResult]]]) -> dict[str, Any]:
    pred, true = [], []
    for gold, samples in cases:
        for s in samples:
            if s.drg is not None and s.drg.weight and gold.weight:
                pred.append(s.drg.weight)
                true.append(gold.weight)
    errors = [abs(p - t) for p, t in zip(pred, true)]
    return {
        "mean_pred_weight": _mean(pred),
        "mean_true_weight": _mean(true),
        "mean_abs_weight_error": _mean(errors),
        "n_samples": len(pred),
    }


def _error_breakdown(cases: list[tuple[DRG, list[SampleResult]]]) -> dict[str, Any]:
    counts = Counter()
    for gold, samples in cases:
        for s in samples:
            if s.drg is None or s.drg.code == gold.code:
                continue
            principal_ok = s.drg.principal == gold.principal
            cc_ok = s.drg.cc_mcc == gold.cc_mcc
            counts["wrong_cc_mcc" if principal_ok else "wrong_principal" if cc_ok else "both"] += 1
    wrong = sum(counts.values())
    shares = {name: (counts[name] / wrong if wrong else 0.0) for name in ("wrong_principal", "wrong_cc_mcc", "both")}
    return {**shares, "n_wrong": wrong, "counts": {name: counts[name] for name in shares}}


def _confusion(cases: list[tuple[DRG, list[SampleResult]]]) -> dict[str, Any]:
    labels = [c.label for c in CCMCC]
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    for gold, samples in cases:
        for s in samples:
            col = int(s.drg.cc_mcc) if s.drg is not None else len(labels)
            matrix[int(gold.cc_mcc)][col] += 1
    return {"labels": labels, "columns": labels + ["invalid"], "matrix": matrix}
