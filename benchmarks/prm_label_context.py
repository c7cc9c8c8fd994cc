"""Benchmark: which label context to score a causal-LM PRM with — ``placeholder``, ``plus`` or ``greedy``.

The trainer (:mod:`clinrl.prm.train`) feeds the causal-LM PRM the *true-label* PRM string, as the study
did: every label slot holds the note's own '+'/'-' (teacher forcing), so the model never sees the
PLACEHOLDER token in its input. At inference the labels are unknown, and the scorer can fill the slots with
the PLACEHOLDER (the study), with '+' everywhere, or greedily with the label the model predicted at each
slot (:class:`clinrl.prm.score.ScoreConfig` ``context``).

This script trains a CPU-sized causal-LM PRM (``prm/cpu_causal``: random-init Qwen2, byte-level
BPE trained on the spot, ``special_token`` loss, bundled gold notes + synthetic errors, no verification data)
unless ``--model`` names a trained one, then scores every candidate of the dev verification cases once per
context × probability readout (``full`` vocabulary, the study's, or ``binary`` {'+', '-'}), each note on its
own (:class:`clinrl.prm.score.PRMScorer`). From each scoring it reports, per ``Data_source``:

- gold-selection accuracy (%) under each aggregation (``sum_log``, ``min``, ``mean``, ``last``), by
  :func:`clinrl.prm.evaluate.evaluate_selection` exactly as ``clinrl prm eval-selection`` (a tie is a miss);
- step AUROC (error = positive class, score 1 - P(+), step slots) and AUROC over all slots;

- AUROC at the end-of-note slot alone (the slot whose label is a function of the earlier ones);

plus the ``random`` (exact expectation), ``length`` and ``medoid`` reference rules, and a diagnostic (not a
valid scorer: it reads the labels): every note scored with its own true labels in the slots, i.e. exactly the
training input, to show how much the model leans on the label context. Prints a JSON object last.

    .venv/bin/python benchmarks/prm_label_context.py [--model runs/prm/cpu_causal] [--threads 1] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AGGREGATES = ("sum_log", "min", "mean", "last")
CONTEXTS = ("placeholder", "plus", "greedy")
PROBABILITIES = ("full", "binary")


class _Precomputed:
    """Stands in for a :class:`~clinrl.prm.score.PRMScorer` whose scores were computed once (one scoring run
    serves all four aggregations); looks the candidates up by identity."""

    def __init__(self, scorer: Any, scored: dict[tuple[int, ...], list[Any]]) -> None:
        self.config, self.head, self.objective, self.stats = scorer.config, scorer.head, scorer.objective, scorer.stats
        self._scored = scored

    def score_notes(self, notes: Any) -> list[Any]:
        return self._scored[tuple(id(n) for n in notes)]


def _train(recipe: Path, out: Path) -> dict[str, Any]:
    from clinrl.prm.train import train_from_recipe

    result = train_from_recipe(recipe, ["--output_dir", str(out)])
    return {"seconds": result.seconds, "steps": result.steps, "notes": result.notes, "last_loss": result.losses[-1][1]}


def _score_all(loaded: Any, cases: list[Any], context: str, probability: str, batch_size: int):
    from tqdm import tqdm

    from clinrl.prm.score import PRMScorer, ScoreConfig

    scorer = PRMScorer(
        model=loaded.model, tokenizer=loaded.tokenizer, tokens=loaded.meta.tokens, head=loaded.meta.head,
        objective=loaded.meta.objective, loaded=loaded,
        config=ScoreConfig(probability=probability, context=context, batch_size=batch_size),  # type: ignore[arg-type]
    )  # fmt: skip
    scored = {}
    start = time.perf_counter()
    for case in tqdm(cases, desc=f"{context}/{probability}", unit="case", file=sys.stderr):
        scored[tuple(id(n) for n in case.candidates)] = scorer.score_notes(case.candidates)
    return scorer, scored, time.perf_counter() - start


def _teacher_forced(loaded: Any, cases: list[Any]) -> dict[tuple[int, ...], list[Any]]:
    """Diagnostic, not a scorer: each note scored with its own *true* labels in the slots (the training input;
    slot k sees the true labels of slots < k only), one note at a time with full logits."""
    from tqdm import tqdm

    from clinrl.prm.encode import encode_causal
    from clinrl.prm.fastpath import reference_slot_probs
    from clinrl.prm.format import TokenIds
    from clinrl.prm.score import NoteScore, SlotScore, slot_layout

    meta, tokenizer = loaded.meta, loaded.tokenizer
    ids = TokenIds.from_tokenizer(meta.tokens, tokenizer)
    out = {}
    for case in tqdm(cases, desc="teacher-forced", unit="case", file=sys.stderr):
        scored = []
        for note in case.candidates:
            window = encode_causal(note, note.dialogue, tokenizer, meta.tokens, ids, meta.settings, labels="true")
            probs = reference_slot_probs(loaded.model, [window.input_ids], [[s.token_index for s in window.slots]],
                                         (ids.plus, ids.minus), "full")[0].tolist()  # fmt: skip
            slots = [SlotScore(index=k, p_plus=float(q), **m) for k, (m, q) in enumerate(zip(slot_layout(note), probs))]
            scored.append(NoteScore(slots))
        out[tuple(id(n) for n in case.candidates)] = scored
    return out


def _end_auroc(cases: list[Any], scored: dict[tuple[int, ...], list[Any]], source: str) -> float | None:
    """AUROC of 1 - P(+) at the end-of-note slot against the note's outcome label (error = positive)."""
    from clinrl.prm.evaluate import auroc

    pairs = [(1 - s.slots[-1].p_plus, s.slots[-1].label == "-") for c in cases if c.data_source == source
             for s in scored[tuple(id(n) for n in c.candidates)]]  # fmt: skip
    return _round(auroc([a for a, _ in pairs], [b for _, b in pairs]), 3)


def _fed_minus_rate(scored: dict[tuple[int, ...], list[Any]]) -> float | None:
    fed = [label for notes in scored.values() for s in notes for label in (s.fed_labels or [])]
    return round(sum(label == "-" for label in fed) / len(fed), 4) if fed else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from clinrl.prm import demo_data_dir
    from clinrl.prm.evaluate import evaluate_selection, limit_cases, load_dev_cases
    from clinrl.prm.model import META_FILE, load_prm

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    train = None
    if args.retrain or not (model_dir / META_FILE).is_file():
        print(f"training {args.recipe} -> {model_dir} …", file=sys.stderr, flush=True)
        train = _train(Path(args.recipe), model_dir)
    report_file = model_dir / "train_report.json"
    if train is None and report_file.is_file():
        rep = json.loads(report_file.read_text(encoding="utf-8"))
        train = {
            "seconds": rep["seconds"],
            "steps": rep["steps"],
            "notes": rep["notes"],
            "last_loss": rep["losses"][-1][1],
        }

    data = Path(args.data) if args.data else demo_data_dir()
    cases, _ = load_dev_cases(data)
    if args.limit:
        cases = limit_cases(cases, args.limit)
    sources = sorted({c.data_source for c in cases})

    references = {}
    for rule in ("random", "length", "medoid"):
        rep = evaluate_selection(cases, rule).to_dict()["sources"]
        references[rule] = {s: _round(100 * rep[s]["accuracy"], 1) for s in sources}

    loaded = load_prm(model_dir)
    meta = loaded.meta
    selection, detection, timing = [], [], {}
    for context, probability in product(args.contexts, args.probabilities):
        scorer, scored, seconds = _score_all(loaded, cases, context, probability, args.batch_size)
        timing[f"{context}/{probability}"] = round(seconds, 1)
        proxy = _Precomputed(scorer, scored)
        det = None
        for aggregate in AGGREGATES:
            rep = evaluate_selection(cases, "prm", model=proxy, aggregate=aggregate).to_dict()
            selection.append({"context": context, "probability": probability, "aggregate": aggregate,
                              **{s: _round(100 * rep["sources"][s]["accuracy"], 1) for s in sources}})  # fmt: skip
            det = rep
        assert det is not None
        row: dict[str, Any] = {"context": context, "probability": probability}
        for s in sources:
            d = det["sources"][s]["detection"]
            row[f"auroc_steps_{s}"] = _round(d["auroc_steps"], 3)
            row[f"auroc_all_{s}"] = _round(d["auroc_all"], 3)
            row[f"best_f1_{s}"] = _round(d["best_f1"], 3)
            row[f"auroc_end_{s}"] = _end_auroc(cases, scored, s)
        row["fed_minus_rate"] = _fed_minus_rate(scored)
        detection.append(row)

    oracle = None
    if args.teacher_forced:
        scored = _teacher_forced(loaded, cases)
        proxy = _Precomputed(scorer, scored)
        rep = evaluate_selection(cases, "prm", model=proxy, aggregate="mean").to_dict()
        oracle = {"note": "diagnostic only: true labels of earlier slots in the input (the training condition)"}
        for s in sources:
            d = rep["sources"][s]["detection"]
            oracle[f"auroc_steps_{s}"] = _round(d["auroc_steps"], 3)
            oracle[f"auroc_all_{s}"] = _round(d["auroc_all"], 3)
            oracle[f"auroc_end_{s}"] = _end_auroc(cases, scored, s)

    def mean_over(row: dict[str, Any], key: str) -> float:
        return sum(row[key.format(s)] or 0.0 for s in sources) / len(sources)

    best_sel = max(selection, key=lambda r: mean_over(r, "{}"))
    best_det = max(detection, key=lambda r: mean_over(r, "auroc_steps_{}"))
    return {
        "model": {
            "path": str(model_dir),
            "head": meta.head,
            "objective": meta.objective,
            "loss_mode": meta.loss_mode,
            "base_model": meta.base_model,
            "max_length": meta.max_length,
            "params_m": round(sum(p.numel() for p in loaded.model.parameters()) / 1e6, 2),
            "trained_with": "true labels in the label slots (teacher forcing)",
        },  # fmt: skip
        "train": train,
        "cases": {s: sum(c.data_source == s for c in cases) for s in sources},
        "notes": sum(len(c.candidates) for c in cases),
        "references": references,
        "selection": selection,
        "detection": detection,
        "teacher_forced_diagnostic": oracle,
        "scoring_seconds": timing,
        "best_selection": {k: best_sel[k] for k in ("context", "probability", "aggregate", *sources)},
        "best_step_auroc": {k: best_det[k] for k in ("context", "probability", *[f"auroc_steps_{s}" for s in sources])},
        "threads": args.threads,
    }


def _print_tables(result: dict[str, Any]) -> None:
    sources = list(result["cases"])
    print("gold selection % (" + " / ".join(sources) + ")", file=sys.stderr)
    for r in result["selection"]:
        cells = " / ".join(f"{r[s]:5.1f}" for s in sources)
        print(f"  {r['context']:<11} {r['probability']:<6} {r['aggregate']:<7} {cells}", file=sys.stderr)
    print("step AUROC (" + " / ".join(sources) + ") | end-of-note AUROC", file=sys.stderr)
    rows = list(result["detection"])
    if result["teacher_forced_diagnostic"]:
        rows.append({"context": "true labels", "probability": "(diag)", **result["teacher_forced_diagnostic"]})
    for r in rows:
        cells = " / ".join(f"{r[f'auroc_steps_{s}']:.3f}" for s in sources)
        ends = " / ".join(f"{r[f'auroc_end_{s}']:.3f}" for s in sources)
        print(f"  {r['context']:<11} {r['probability']:<6} {cells} | {ends}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--recipe", default=str(ROOT / "src/clinrl/recipes/prm/cpu_causal.yaml"), help="training recipe"
    )
    parser.add_argument(
        "--model",
        default=str(ROOT / "runs/prm/cpu_causal"),
        help="trained PRM folder (trained from --recipe first when it holds no model)",
    )
    parser.add_argument("--retrain", action="store_true", help="train even when --model holds a model")
    parser.add_argument("--data", default=None, help="PRM data folder (default: the bundled dev data)")
    parser.add_argument("--limit", type=int, default=None, help="first N cases of each Data_source")
    parser.add_argument("--contexts", nargs="+", default=list(CONTEXTS), choices=CONTEXTS)
    parser.add_argument("--probabilities", nargs="+", default=list(PROBABILITIES), choices=PROBABILITIES)
    parser.add_argument(
        "--no-teacher-forced",
        dest="teacher_forced",
        action="store_false",
        help="skip the diagnostic scoring with the true labels in the slots",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = parser.parse_args()
    result = run(args)
    _print_tables(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
