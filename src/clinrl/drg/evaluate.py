"""``clinrl drg eval``: sample n completions per test case through a generation backend, resumably, then
score them (:mod:`clinrl.drg.metrics`) and draw the plots.

Files in ``out_dir``:

- ``generations.jsonl`` — one line per finished case ``{"hadm_id", "solution", "completions": [n texts]}``,
  appended and flushed batch by batch. A rerun with the same sampling settings skips the cases already
  there (a torn last line from a killed run is cut off first); different settings raise ClinrlError.
- ``eval_config.json`` — the sampling settings the generations were made with, plus ``meta``.
- ``metrics.json`` — :func:`clinrl.drg.metrics.score_generations` over the selected cases, plus
  ``"eval"`` (settings, model, counts of cases generated now and reused).
- ``summary.md`` — a short readable summary; ``cc_mcc_confusion.png``; ``training_curves.png`` when the
  model folder holds a TRL ``trainer_state.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from clinrl.drg.metrics import TARGETS, score_generations
from clinrl.errors import ClinrlError, DataError
from clinrl.io import cut_torn_line, write_json_atomic, write_text_atomic
from clinrl.llm.backends import GenerationBackend, SamplingParams

__all__ = [
    "GENERATIONS",
    "case_messages",
    "constrain_backend",
    "evaluate_prompts",
    "load_cases",
    "prompt_budget",
    "run_eval",
    "summary_markdown",
]

GENERATIONS = "generations.jsonl"
# settings that change what a generation looks like: a resumed run must use the same ones
_SAMPLING_KEYS = ("n", "temperature", "top_p", "max_new_tokens", "seed", "constrained", "max_prompt_tokens")


def load_cases(data: Any, limit: int | None = None, *, require_id: bool = False) -> list[dict[str, Any]]:
    """Cases ``{hadm_id, text, solution}`` from a DataFrame or a parquet/JSONL file (``solution`` from
    ``description`` when absent; ``hadm_id`` defaults to the row number unless ``require_id``); the first
    ``limit`` rows. Raises DataError for an unreadable file, a missing column or a repeated hadm_id."""
    import pandas as pd

    from clinrl.drg.ontology import load_ontology
    from clinrl.drg.split import add_solution

    path = None
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        path = Path(data)
        if not path.is_file():
            raise DataError("file not found", path=path)
        try:
            frame = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_parquet(path)
        except Exception as err:  # pandas/pyarrow raise several types for unreadable input
            raise DataError(f"cannot read ({type(err).__name__}: {err})", path=path) from None
        from clinrl.drg.prepared import check_prepared_input

        check_prepared_input(path)  # a `drg prepare` output must come from one finished run
    if limit is not None:
        frame = frame.head(limit)
    if "text" not in frame.columns:
        raise DataError("missing column", path=path, field="text")
    if "hadm_id" not in frame.columns:
        if require_id:
            raise DataError("missing column", path=path, field="hadm_id")
        frame = frame.assign(hadm_id=range(1, len(frame) + 1))
    if "solution" not in frame.columns:
        if "description" not in frame.columns:
            raise DataError("missing column (need solution or description)", path=path, field="solution")
        frame = add_solution(frame, load_ontology(), path=path)
    ids = [_plain(h) for h in frame["hadm_id"].tolist()]
    if len(set(map(str, ids))) != len(ids):
        raise DataError("repeated hadm_id (cases are keyed on it)", path=path, field="hadm_id")
    return [{"hadm_id": h, "text": t, "solution": s} for h, t, s in zip(ids, frame["text"], frame["solution"])]


def _plain(value: Any) -> Any:
    """numpy scalars → Python ints/strings, so that ids survive a JSON round trip unchanged."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def prompt_budget(backend: Any, params: SamplingParams, max_prompt_tokens: int | None) -> int | None:
    """The prompt token budget: ``max_prompt_tokens`` if given, else (for local models) the model's
    context length minus ``max_new_tokens``; None = no truncation."""
    if max_prompt_tokens is not None:
        return max_prompt_tokens
    config = getattr(getattr(backend, "model", None), "config", None)
    context = getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and context > params.max_new_tokens:
        return context - params.max_new_tokens
    return None


def case_messages(text: str, backend: Any, budget: int | None, tokenizer: Any = None) -> list[dict[str, str]]:
    """The chat prompt of one case, its course cut to ``budget`` tokens with ``tokenizer`` (default: the
    backend's own; a remote backend has none unless the caller gives one, and then courses go whole)."""
    from clinrl.drg.prompts import build_messages, truncate_course

    tokenizer = tokenizer if tokenizer is not None else getattr(backend, "tokenizer", None)
    if tokenizer is not None and budget is not None:
        text = truncate_course(text, tokenizer, budget)
    return build_messages(text)


def constrain_backend(backend: Any, ontology: Any = None) -> Callable[[], None]:
    """Restrict the backend's answers to v34 descriptions (trie processor for transformers-like backends
    with ``logits_processors``, guided regex for ones with ``guided_regex``); returns an undo function."""
    from clinrl.drg.constrained import answer_regex, transformers_constraint

    if hasattr(backend, "logits_processors"):
        old = backend.logits_processors
        constraint = transformers_constraint(ontology)
        backend.logits_processors = lambda tok: (list(old(tok)) if old else []) + constraint(tok)
        return lambda: setattr(backend, "logits_processors", old)
    if hasattr(backend, "guided_regex"):
        old_regex = backend.guided_regex
        backend.guided_regex = answer_regex(ontology)
        return lambda: setattr(backend, "guided_regex", old_regex)
    raise ClinrlError(f"the {getattr(backend, 'name', type(backend).__name__)} backend cannot constrain answers")


def _check_config(out: Path, config: dict[str, Any]) -> None:
    path = out / "eval_config.json"
    if path.is_file() and (out / GENERATIONS).is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), config[k]) for k in _SAMPLING_KEYS if old.get(k) != config[k]}
        if diff:
            shown = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in diff.items())
            raise ClinrlError(f"{out} holds generations made with other settings ({shown}); use a new --out")
    write_json_atomic(path, config)


def run_eval(
    backend: GenerationBackend,
    data: Any,
    params: SamplingParams,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    constrained: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    max_prompt_tokens: int | None = None,
    ontology: Any = None,
    ks: Sequence[int] | None = None,
    meta: dict[str, Any] | None = None,
    plots: bool = True,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Generate ``params.n`` completions for every case of ``data`` (first ``limit``) not yet in
    ``out_dir/generations.jsonl``, ``batch_size`` cases per backend call, then write and return the
    metrics (module docstring). ``meta`` (e.g. ``{"model": PATH, "sft_examples": N}``) is recorded.
    ``tokenizer`` cuts courses for a backend without one of its own (an endpoint)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ClinrlError(f"batch_size must be ≥ 1, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(data, limit)
    budget = prompt_budget(backend, params, max_prompt_tokens)
    config = {
        "n": params.n, "temperature": params.temperature, "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens, "seed": params.seed, "constrained": constrained,
        "max_prompt_tokens": budget, "backend": getattr(backend, "name", type(backend).__name__),
        "data": None if not isinstance(data, (str, Path)) else str(data), "limit": limit, "meta": meta or {},
    }
    _check_config(out, config)
    gen_path = out / GENERATIONS
    done: dict[str, dict[str, Any]] = {}
    if gen_path.is_file():
        cut_torn_line(gen_path)
        from clinrl.drg.metrics import read_generations

        done = {str(r.get("hadm_id")): r for r in read_generations(gen_path)}
    todo = [c for c in cases if str(c["hadm_id"]) not in done]
    reused = len(cases) - len(todo)
    undo = constrain_backend(backend, ontology) if constrained and todo else (lambda: None)
    try:
        with gen_path.open("a", encoding="utf-8") as fh, tqdm(
            total=len(todo), desc="drg eval", unit="case", disable=not progress
        ) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                prompts = [case_messages(c["text"], backend, budget, tokenizer) for c in batch]
                seed = None if params.seed is None else params.seed + reused + start
                outputs = backend.generate(prompts, params.with_(seed=seed))
                if len(outputs) != len(batch):
                    raise ClinrlError(f"the backend returned {len(outputs)} results for {len(batch)} prompts")
                for case, texts in zip(batch, outputs):
                    record = {"hadm_id": case["hadm_id"], "solution": case["solution"], "completions": list(texts)}
                    done[str(case["hadm_id"])] = record
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                bar.update(len(batch))
    finally:
        undo()
    selected = [done[str(c["hadm_id"])] for c in cases]
    metrics = score_generations(selected, ontology, ks)
    metrics["eval"] = {**config, "generated_now": len(todo), "reused": reused}
    write_json_atomic(out / "metrics.json", metrics)
    write_text_atomic(out / "summary.md", summary_markdown(metrics, title=f"DRG evaluation: {out.name}"))
    if plots:
        _plots(out, metrics, (meta or {}).get("model"))
    return metrics


def _plots(out: Path, metrics: dict[str, Any], model: Any) -> None:
    from clinrl.drg.plots import find_trainer_state, plot_cc_mcc_confusion, plot_training_curves

    plot_cc_mcc_confusion(metrics, out / "cc_mcc_confusion.png")
    state = find_trainer_state(model) if model else None
    if state is not None:
        try:
            plot_training_curves(state, out / "training_curves.png")
        except ClinrlError:
            pass  # a trainer state without any of the plotted series


def evaluate_prompts(
    backend: GenerationBackend,
    prompts: Sequence[Any],
    golds: Sequence[str],
    params: SamplingParams,
    *,
    ontology: Any = None,
    ks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """In-memory evaluation (no files): sample ``params.n`` completions per prompt and score them
    against the gold descriptions; returns the metrics dict."""
    outputs = backend.generate(list(prompts), params)
    records = [{"solution": g, "completions": list(t)} for g, t in zip(golds, outputs, strict=True)]
    return score_generations(records, ontology, ks)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_markdown(metrics: dict[str, Any], title: str = "DRG evaluation") -> str:
    """A short markdown report of a metrics dict."""
    n = metrics["n_samples"]
    ks = list(metrics["drg"]["maj@k"])
    pass_ks = [k for k in ks if k != "1"]  # Pass@1 has its own column
    lines = [
        f"# {title}",
        "",
        f"{metrics['n_cases']} cases × {n} samples. Figures in %.",
        "",
        "| target | " + " | ".join(["Pass@1"] + [f"Pass@{k}" for k in pass_ks] + [f"Maj@{k}" for k in ks]) + " |",
        "|---" * (2 + len(pass_ks) + len(ks)) + "|",
    ]
    for target in TARGETS:
        m = metrics[target]
        cells = [_pct(m["pass@1"])] + [_pct(m["pass@k"][k]) for k in pass_ks] + [_pct(m["maj@k"][k]) for k in ks]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    mix, errors = metrics["case_mix"], metrics["error_breakdown"]

    def weight(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines += [
        "",
        f"- format failures {_pct(metrics['format_failure_rate'])} %, invalid answers "
        f"{_pct(metrics['invalid_answer_rate'])} %, no answer {_pct(metrics['no_answer_rate'])} %",
        f"- macro-F1 {_pct(metrics['macro_f1'])} (samples), {_pct(metrics['macro_f1_maj'])} (majority vote)",
        f"- case mix: mean predicted weight {weight(mix['mean_pred_weight'])} vs true "
        f"{weight(mix['mean_true_weight'])}, mean |error| {weight(mix['mean_abs_weight_error'])} "
        f"({mix['n_samples']} samples)",
        f"- wrong DRGs ({errors['n_wrong']}): wrong principal {_pct(errors['wrong_principal'])} %, wrong CC/MCC "
        f"{_pct(errors['wrong_cc_mcc'])} %, both {_pct(errors['both'])} %",
        "",
        "| MDC | cases | DRG Pass@1 |",
        "|---|---|---|",
    ]
    for mdc, row in metrics["per_mdc"].items():
        lines.append(f"| {mdc} {row['name']} | {row['n_cases']} | {_pct(row['pass@1'])} |")
    return "\n".join(lines) + "\n"
