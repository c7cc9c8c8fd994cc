"""Benchmark: a model-free lexical reference for step-level error detection on the dev verification tasks.

The rule reads the dialogue but has no model: a header or step is suspect in proportion to how many of its
content words the dialogue never uses (:func:`clinrl.prm.encode.unsupported_words`: stop words and generic
note words skipped, number words matched to digits, plural 's' ignored). Its P(+) is ``1 / (1 + count)``
(:func:`clinrl.prm.lexical.lexical_p_plus`; the whole rule, every slot, is ``clinrl prm eval-selection
--scorer lexical``, which this benchmark's header/step figures match).
Step AUROC of this rule is the bar a verifier must clear to show it learnt more than word overlap (the CPU
PRM is also *given* these words as input, see ``mark_unsupported`` in :mod:`clinrl.prm.encode`).

Per ``Data_source`` it prints the rule's step AUROC and header AUROC, and — with ``--model`` — the PRM's
AUROC on exactly the same slots (each note scored independently), side by side. Gold selection by the rule
(mean of ln P(+) over headers and steps; a tie with the gold is a miss) is printed too. JSON last:
``{"sources": {source: {"n_step_slots", "lexical_step_auroc", "lexical_header_auroc",
"lexical_selection_pct", "model_step_auroc"?, "model_header_auroc"?}}, "model": path | null}``.

    .venv/bin/python benchmarks/prm_lexical_reference.py [--model runs/prm/cpu_minilm] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from typing import Any


def content_slots(note: Any) -> list[tuple[str, int, float, bool]]:
    """(kind, slot index, lexical P(+), is error) for every header and step of ``note``."""
    from clinrl.prm.lexical import lexical_p_plus
    from clinrl.prm.score import slot_layout

    out = []
    for index, slot in enumerate(slot_layout(note)):
        if slot["kind"] == "problem":
            text = note.problems[slot["problem"]].header
        elif slot["kind"] == "step":
            text = note.problems[slot["problem"]].steps[slot["step"]].text
        else:
            continue
        out.append((slot["kind"], index, lexical_p_plus(text, note.dialogue), slot["label"] == "-"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="PRM data folder (default: the bundled dev data)")
    parser.add_argument("--model", default=None, help="a trained PRM folder to compare on the same slots")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --model")
    args = parser.parse_args()
    from clinrl.prm.evaluate import auroc, load_dev_cases, pick

    cases, dropped = load_dev_cases(args.data)
    scorer = None
    if args.model:
        import torch

        from clinrl.prm.score import load_scorer

        torch.set_num_threads(args.threads)
        scorer = load_scorer(args.model)

    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    picked: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        model_scores = scorer.score_notes(case.candidates) if scorer is not None else None
        note_scores = []
        for i, note in enumerate(case.candidates):
            slots = content_slots(note)
            note_scores.append(sum(math.log(p) for _, _, p, _ in slots) / max(len(slots), 1))
            model_p = {s.index: s.p_plus for s in model_scores[i].slots} if model_scores is not None else {}
            for kind, index, p, is_error in slots:
                r = rows[case.data_source]
                r[f"{kind}_error"].append(is_error)
                r[f"{kind}_lexical"].append(1 - p)
                if model_p:
                    r[f"{kind}_model"].append(1 - model_p[index])
        picked[case.data_source].append(pick(note_scores) == case.target)

    report: dict[str, Any] = {}
    for source, r in rows.items():
        entry = {
            "n_step_slots": len(r["step_error"]),
            "lexical_step_auroc": auroc(r["step_lexical"], r["step_error"]),
            "lexical_header_auroc": auroc(r["problem_lexical"], r["problem_error"]),
            "lexical_selection_pct": 100 * sum(picked[source]) / len(picked[source]),
        }
        if scorer is not None:
            entry["model_step_auroc"] = auroc(r["step_model"], r["step_error"])
            entry["model_header_auroc"] = auroc(r["problem_model"], r["problem_error"])
        report[source] = entry
        print(source, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
    print(json.dumps({"sources": report, "model": args.model, "dropped": dropped}))


if __name__ == "__main__":
    main()
