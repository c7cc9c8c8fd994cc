"""``clinrl demo``: the data side of both systems, end to end, on built-in data (CPU, about a minute).

DRG: synthetic MIMIC-shaped files → ``prepare`` (exclusion flow) → stratified SFT/RL split → the GRPO
rewards on example answers. PRM: the bundled PRM-Clinic dev data → label check of the real error samples →
rule-based error synthesis compared with the real errors → the PRM training set.
Model training and evaluation steps join this demo as their issues land.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from clinrl.io import write_json_atomic

console = Console(stderr=True)


def _section(title: str) -> None:
    console.rule(f"[bold]{title}")


def _drg(out: Path, n_notes: int, seed: int) -> dict[str, Any]:
    from clinrl.drg.mimic import prepare, print_summary
    from clinrl.drg.split import SplitConfig, split_prepared
    from clinrl.drg.synth import write_synthetic

    _section("DRG 1/4  synthetic MIMIC-IV-shaped notes")
    raw = out / "drg" / "raw"
    write_synthetic(raw, n_notes, seed=seed, classes=20)
    _section("DRG 2/4  prepare: hospital course, v34 labels, exclusion flow, subject-level split")
    prepared = out / "drg" / "prepared"
    flow = prepare(raw / "discharge.csv.gz", raw / "drgcodes.csv.gz", prepared, seed=seed)
    print_summary(flow, json.loads((prepared / "prepare_report.json").read_text()), prepared)
    _section("DRG 3/4  split the training side into SFT and RL sets")
    split = split_prepared(prepared / "train.parquet", out / "drg" / "splits", SplitConfig(sft_ratio=0.5))
    _section("DRG 4/4  GRPO rewards on example answers")
    rewards = _reward_examples(prepared / "test.parquet")
    return {"flow": flow, "split": {k: split[k] for k in ("sft", "rl")}, "rewards": rewards}


def _reward_examples(test_parquet: Path) -> list[dict[str, Any]]:
    import pandas as pd

    from clinrl.drg.ontology import load_ontology
    from clinrl.drg.rewards import get_reward

    onto = load_ontology()
    gold = onto.find(pd.read_parquet(test_parquet, columns=["description"])["description"].iloc[0])
    sibling = next((d for d in onto if d.principal == gold.principal and d.code != gold.code), None)
    other = next(d for d in onto if d.principal != gold.principal and d.cc_mcc == gold.cc_mcc)

    def answer(text: str) -> str:
        return f"<think>The course describes the principal condition and its complications.</think><answer>{text}</answer>"

    cases = [
        ("exact answer, other case and spacing", answer("  " + gold.description.lower() + " ")),
        ("same base DRG, wrong CC/MCC", answer(sibling.description) if sibling else None),
        ("same CC/MCC, wrong base DRG", answer(other.description)),
        ("a substring of the gold only", answer(gold.principal)),
        ("no think block", f"<answer>{gold.description}</answer>"),
    ]
    names = ["format", "accuracy_strict", "accuracy_dense", "accuracy_balanced"]
    funcs = [get_reward(n) for n in names]
    table = Table(title=f"Rewards against the gold {gold.description!r}")
    table.add_column("completion")
    for n in names:
        table.add_column(n, justify="right")
    rows = []
    for label, text in cases:
        if text is None:
            continue
        scores = [f([text], solution=[gold.description])[0] for f in funcs]
        table.add_row(label, *(f"{s:+.1f}" for s in scores))
        rows.append({"case": label, **dict(zip(names, scores))})
    console.print(table)
    return rows


def _prm(out: Path, seed: int) -> dict[str, Any]:
    from clinrl.prm import demo_data_dir
    from clinrl.prm.build import build_prm_dataset
    from clinrl.prm.compare import compare_error_sets, comparison_table
    from clinrl.prm.errors import synthesize
    from clinrl.prm.labels import check_label_consistency
    from clinrl.prm.notes import load_notes, save_notes

    data = demo_data_dir()
    _section("PRM 1/3  label check of the real dev error samples")
    gold = load_notes(data / "verification_dev_gold.json.gz")
    real = load_notes(data / "verification_dev_error.json.gz")
    real_report = check_label_consistency(real, gold=gold)
    console.print(real_report.summary())
    _section("PRM 2/3  rule-based error synthesis vs the real error samples")
    train_gold = load_notes(data / "prm_clinic_gold.json.gz")
    synthetic = synthesize(gold, 8, seed=seed, pool=train_gold).notes
    save_notes(synthetic, out / "prm" / "synthetic_dev_errors.json.gz")
    synth_report = check_label_consistency(synthetic, gold=gold)
    console.print(synth_report.summary())
    comparison = compare_error_sets(synthetic, real, synthetic_gold=gold, real_gold=gold)
    console.print(comparison_table(comparison))
    _section("PRM 3/3  PRM training set: training gold notes + 2 synthetic error samples each")
    build = build_prm_dataset(
        [data / "prm_clinic_gold.json.gz"], out / "prm" / "train_set", synthesize=2, seed=seed, tokens="new"
    )
    return {
        "real_label_check": real_report.to_dict(),
        "synthetic_label_check": {"samples": len(synthetic), "ok": synth_report.ok},
        "build": build.to_dict(),
    }


def run_demo(out: str | Path = "runs/demo", *, n_notes: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Run the demo into ``out`` and write ``out/summary.json``; returns the summary."""
    out = Path(out)
    summary = {"drg": _drg(out, n_notes, seed), "prm": _prm(out, seed)}
    write_json_atomic(out / "summary.json", summary)
    _section("done")
    flow = summary["drg"]["flow"]
    console.print(
        f"DRG: {flow['notes_read']} notes read, {flow['kept']} kept in {flow['n_classes']} classes "
        f"(train {flow['train']}, test {flow['test']}).\n"
        f"PRM: real dev labels consistent except {summary['prm']['real_label_check']['n_mismatches']} "
        f"known label-noise positions; {summary['prm']['synthetic_label_check']['samples']} synthetic samples, "
        f"label-consistent: {summary['prm']['synthetic_label_check']['ok']}.\n"
        f"Everything is under {out}/ (summary.json)."
    )
    return summary
