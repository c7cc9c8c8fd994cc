"""Benchmark: the dev table of note verifiers — reference rules, trained CPU verifiers (several seeds), judges.

Every verifier scores each candidate note of the dev verification tasks on its own (A_Validate 20 cases,
Dialogue_G 80) through :func:`clinrl.prm.evaluate.evaluate_selection`, the code behind
``clinrl prm eval-selection``. Per ``Data_source`` it reports gold selection, step AUROC, the ProcessBench
earliest-error F1 and the recall of factual inaccuracies at 5 % false alarms (per slot group, see
:mod:`clinrl.prm.evaluate`), and the calibration error of P(+):

- rules: ``random`` (its exact expectation), ``length`` (longest note), ``lexical`` (the word-overlap rule,
  :mod:`clinrl.prm.lexical`);
- ``--model DIR`` (repeatable): trained PRMs, e.g. the CPU default trained with several seeds; with two or
  more, a ``mean`` row (and the min–max spread) is added;
- ``--judge DIR`` (repeatable): judge folders (``clinrl prm judge-init``), scored the same way — the study's
  comparison (Gemini-Pro 1.5: 93.8 % gold selection). Answers are cached in the folder, so an interrupted run
  resumes and a rerun asks nothing. Needs a capable served or local instruct model to mean anything; the
  endpoint receives the dev dialogues and notes (never point a judge at a hosted API with credentialed data).

Each verifier also picks the physician-preferred note on the A-Prefer dev cases (``prefer``, 10 cases).
Scoring seconds per verifier are reported (the CPU budget: 100 dev cases in ≤ 5 min). JSON last:
``{"rows": {name: {"seconds", "prefer", "sources": {source: {figures}}}}, "spread": {source: {figure:
[min, max]}}}`` (fractions).

    .venv/bin/python benchmarks/prm_verifiers.py --model runs/prm/cpu_minilm [--model runs/prm/seed1 …]
    .venv/bin/python benchmarks/prm_verifiers.py --judge runs/prm/judge --limit 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

FIGURES = ("gold", "auroc_steps", "pb_f1", "factual_recall", "ece")


def figures(source: dict[str, Any]) -> dict[str, float | None]:
    """The table's figures of one ``Data_source`` of an eval-selection report (fractions)."""
    det = source.get("detection") or {}
    fa = det.get("at_false_alarm", {}).get("by_error_type", {}).get("Factual Inaccuracy", {})
    return {
        "gold": source["accuracy"],
        "auroc_steps": det.get("auroc_steps"),
        "pb_f1": det.get("processbench", {}).get("at_false_alarm", {}).get("f1"),
        "factual_recall": fa.get("recall"),
        "ece": det.get("calibration", {}).get("ece_all"),
    }


def evaluate(cases: list, prefer: list, scorer_name: str, model: Any = None) -> dict[str, Any]:
    """One row: the figures per source, the A-Prefer dev accuracy and the seconds the selection took."""
    from clinrl.prm.evaluate import evaluate_preference, evaluate_selection

    start = time.monotonic()
    report = evaluate_selection(cases, scorer_name, model=model).to_dict()
    seconds = round(time.monotonic() - start, 1)
    preferred = evaluate_preference(prefer, scorer_name, model=model)["accuracy"]
    return {"sources": {name: figures(src) for name, src in report["sources"].items()}, "seconds": seconds,
            "prefer": preferred}  # fmt: skip


def mean_rows(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mean of several rows' figures per source, and their [min, max]."""
    mean: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for source in rows[0]:
        mean[source], spread[source] = {}, {}
        for fig in FIGURES:
            values = [r[source][fig] for r in rows if r[source][fig] is not None]
            mean[source][fig] = sum(values) / len(values) if values else None
            spread[source][fig] = [min(values), max(values)] if values else None
    return mean, spread


def _cell(value: float | None, fig: str) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}" if fig in ("gold", "factual_recall") else f"{value:.3f}"


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    sources = list(next(iter(rows.values()))["sources"])
    head = " | ".join(f"{f} ({'/'.join(s[:3] for s in sources)})" for f in FIGURES)
    print(f"| verifier | {head} | A-Prefer | s |")
    print("|---" * (len(FIGURES) + 3) + "|")
    for name, row in rows.items():
        cells = [" / ".join(_cell(row["sources"][s][f], f) for s in sources) for f in FIGURES]
        prefer = _cell(row.get("prefer"), "gold")
        print(f"| {name} | " + " | ".join(cells) + f" | {prefer} | {row.get('seconds', '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="PRM data folder (default: the bundled dev data)")
    parser.add_argument("--model", action="append", default=[], help="a trained PRM folder (repeatable)")
    parser.add_argument("--judge", action="append", default=[], help="a judge folder (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for models")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases of each task and source")
    args = parser.parse_args()
    from clinrl.prm import demo_data_dir
    from clinrl.prm.build import resolve_tokens
    from clinrl.prm.evaluate import limit_cases, load_dev_cases, load_preference_cases
    from clinrl.prm.lexical import LexicalScorer
    from clinrl.prm.score import load_scorer

    data = Path(args.data) if args.data else demo_data_dir()
    cases, _ = load_dev_cases(data)
    tokens = resolve_tokens("llama3")[1]
    prefer, _ = load_preference_cases(data / "a_prefer_dev.csv", data / "a_prefer_dev_labels.csv", tokens)
    if args.limit is not None:
        cases, prefer = limit_cases(cases, args.limit), prefer[: args.limit]
    rows: dict[str, dict[str, Any]] = {rule: evaluate(cases, prefer, rule) for rule in ("random", "length")}
    rows["lexical"] = evaluate(cases, prefer, "lexical", LexicalScorer())
    if args.model:
        import torch

        torch.set_num_threads(args.threads)
    for path in args.model:
        rows[f"model {path}"] = evaluate(cases, prefer, "prm", load_scorer(path))
    spread = None
    if len(args.model) >= 2:
        mean, spread = mean_rows([rows[f"model {p}"]["sources"] for p in args.model])
        preferred = [rows[f"model {p}"]["prefer"] for p in args.model]
        rows[f"mean of {len(args.model)} models"] = {"sources": mean, "prefer": sum(preferred) / len(preferred)}
    for path in args.judge:
        scorer = load_scorer(path)
        try:
            rows[f"judge {path}"] = evaluate(cases, prefer, "judge", scorer)
        finally:
            scorer.close()
    print_table(rows)
    print(json.dumps({"rows": rows, "spread": spread}))


if __name__ == "__main__":
    main()
