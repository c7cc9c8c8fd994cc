"""Benchmark: a generative verifier (a judge folder, ``clinrl prm judge-init``) on the dev verification tasks
and the A-Prefer dev preference task — the study's comparison (Gemini-Pro 1.5: 93.8 % gold selection).

It scores every dev case with the judge (each note on its own; answers cached in the judge folder, so an
interrupted run resumes and a rerun asks nothing) and prints, per ``Data_source``, gold-selection accuracy
in percent and step-level AUROC, then the preference accuracy. JSON last: ``{"judge": {config},
"aggregate", "sources": {source: {"selection_pct", "correct", "total", "auroc_steps", "auroc_all"}},
"preference_pct", "stats": {requests, cached, no_verdict, slots}}``.

    clinrl prm judge-init --out runs/prm/judge --endpoint http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
    .venv/bin/python benchmarks/prm_judge.py --judge runs/prm/judge [--limit 5] [--aggregate mean]

Needs a capable served or local instruct model to mean anything (a tiny random model gives noise). The
endpoint receives the dev dialogues and notes (synthetic and MTS-Dialog-derived data, see
src/clinrl/data/prm/README.md); never point a judge at a hosted API with credentialed data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", required=True, help="a judge folder (clinrl prm judge-init)")
    parser.add_argument("--data", default=None, help="PRM data folder (default: the bundled dev data)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases of each Data_source")
    parser.add_argument("--aggregate", default=None, help="note score (default: the judge's, mean)")
    parser.add_argument("--no-preference", action="store_true", help="skip the A-Prefer dev task")
    args = parser.parse_args()
    from clinrl.prm.build import resolve_tokens
    from clinrl.prm.evaluate import (
        evaluate_preference,
        evaluate_selection,
        group_cases,
        limit_cases,
        load_preference_cases,
    )
    from clinrl.prm.judge import load_judge
    from clinrl.prm.schema import load_notes

    if args.data is None:
        from clinrl.prm import demo_data_dir

        args.data = str(demo_data_dir())
    data = Path(args.data)
    gold, errors = (load_notes(data / f"verification_dev_{k}.json.gz") for k in ("gold", "error"))
    cases, dropped = group_cases(gold, errors)
    if args.limit is not None:
        cases = limit_cases(cases, args.limit)
    judge = load_judge(args.judge)
    try:
        report = evaluate_selection(cases, "judge", model=judge, aggregate=args.aggregate, dropped=dropped)
        preference = None
        if not args.no_preference:
            pref_cases, _ = load_preference_cases(data / "a_prefer_dev.csv", data / "a_prefer_dev_labels.csv",
                                                  resolve_tokens("llama3")[1])  # fmt: skip
            if args.limit is not None:
                pref_cases = pref_cases[: args.limit]
            preference = evaluate_preference(pref_cases, "judge", model=judge, aggregate=args.aggregate)
    finally:
        judge.close()
    sources = {}
    for name, result in [*report.sources.items(), ("all", report.overall)]:
        d = result.to_dict()
        det = d.get("detection") or {}
        sources[name] = {"selection_pct": None if d["accuracy"] is None else round(100 * d["accuracy"], 1),
                         "correct": d["correct"], "total": d["total"], "auroc_steps": det.get("auroc_steps"),
                         "auroc_all": det.get("auroc_all")}  # fmt: skip
        print(f"{name:12s} selection {sources[name]['selection_pct']} % ({d['correct']:g}/{d['total']}), "
              f"step AUROC {det.get('auroc_steps')}")  # fmt: skip
    pref_pct = None if preference is None or preference["accuracy"] is None else round(100 * preference["accuracy"], 1)
    if preference is not None:
        print(f"A-Prefer dev: {pref_pct} % ({preference['correct']:g}/{preference['total']})")
    print(json.dumps({"judge": judge.config.to_dict(), "aggregate": report.aggregate, "sources": sources,
                      "preference_pct": pref_pct, "stats": dict(judge.stats)}))  # fmt: skip


if __name__ == "__main__":
    main()
