"""The PRM half of the demo: label check of the real dev errors → rule-based error synthesis compared with
them → the CPU PRM (MiniLM) trained on gold notes + synthesized errors → gold selection and step-level error
detection on the dev verification tasks (beside the reference rules) → A-Prefer dev accuracy → a Best-of-N
example with per-step scores. All data is the bundled PRM-Clinic dev data (public, MIT)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinrl.config import RECIPES_DIR
from clinrl.demo.config import DemoConfig
from clinrl.prm import demo_data_dir
from clinrl.prm.build import resolve_tokens
from clinrl.prm.evaluate import (
    evaluate_preference,
    evaluate_selection,
    group_cases,
    limit_cases,
    load_preference_cases,
    selection_table,
)
from clinrl.prm.schema import load_notes, save_notes
from clinrl.prm.score import ScoreConfig, load_scorer
from clinrl.prm.select import best_of_n, item_text, ranking_table
from clinrl.prm.synth.compare import compare_error_sets, comparison_table
from clinrl.prm.synth.inject import synthesize
from clinrl.prm.synth.labels import check_label_consistency
from clinrl.prm.train import train_from_recipe

Section = Callable[[str], None]
REFERENCE_RULES = ("medoid", "random", "length")
PREFERENCE_RULES = ("random", "first", "length")


def run_prm(out: Path, cfg: DemoConfig, section: Section, console: Any) -> dict[str, Any]:
    """Run every PRM stage under ``out``; return the summary."""

    data = demo_data_dir()
    section("PRM 1/5  label check of the real dev error samples")
    gold = load_notes(data / "verification_dev_gold.json.gz")
    real = load_notes(data / "verification_dev_error.json.gz")
    real_report = check_label_consistency(real, gold=gold)
    console.print(real_report.summary())
    section("PRM 2/5  rule-based error synthesis vs the real error samples")
    train_gold = load_notes(data / "prm_clinic_gold.json.gz")
    synthetic = synthesize(gold, 8, seed=cfg.seed, pool=train_gold).notes
    save_notes(synthetic, out / "synthetic_dev_errors.json.gz")
    synth_report = check_label_consistency(synthetic, gold=gold)
    console.print(synth_report.summary())
    comparison = compare_error_sets(synthetic, real, synthetic_gold=gold, real_gold=gold)
    console.print(comparison_table(comparison))

    section(f"PRM 3/5  train the CPU PRM ({cfg.prm_recipe}, {cfg.prm_notes} gold + synthesized notes)")
    train = _train(out, cfg)
    section("PRM 4/5  dev verification tasks: gold selection + step-level error detection (independent scoring)")
    scorer = _scorer(out / "model")
    selection = _selection(gold, real, scorer, cfg, console)
    preference = _preference(data, scorer)
    section("PRM 5/5  Best-of-N on one dev case, with per-step scores")
    example = _best_of_n_example(gold, real, scorer, console)
    return {
        "real_label_check": real_report.to_dict(),
        "synthetic_label_check": {"samples": len(synthetic), "ok": synth_report.ok},
        "train": train,
        "selection": selection,
        "preference": preference,
        "best_of_n": example,
        "model": str(out / "model"),
    }


def _train(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    import json

    model = out / "model"
    report = model / "train_report.json"
    if (model / "clinrl_prm.json").is_file() and report.is_file():
        return json.loads(report.read_text())
    overrides = [
        "--output_dir",
        str(model),
        "--max_notes",
        str(cfg.prm_notes),
        "--num_threads",
        str(cfg.prm_threads),
        "--seed",
        str(42 + cfg.seed),
    ]
    resume = any(model.glob("checkpoint-*"))  # an interrupted demo continues where it stopped
    return train_from_recipe(RECIPES_DIR.parent / cfg.prm_recipe, overrides, resume=resume).to_dict()


def _scorer(model: Path) -> Any:
    return load_scorer(model, ScoreConfig(batch_size=16))


def _selection(gold: Any, errors: Any, scorer: Any, cfg: DemoConfig, console: Any) -> dict[str, Any]:
    from tqdm import tqdm

    cases, dropped = group_cases(gold, errors)
    if cfg.prm_eval_limit is not None:
        cases = limit_cases(cases, cfg.prm_eval_limit)
    reports = {}
    for name in (*REFERENCE_RULES, "prm"):
        with tqdm(total=len(cases), desc=f"eval {name}", leave=False) as bar:
            report = evaluate_selection(
                cases, name, model=scorer if name == "prm" else None, dropped=dropped, progress=bar.update
            )
        console.print(selection_table(report))
        reports[name] = report.to_dict()
    return reports


def _preference(data: Path, scorer: Any) -> dict[str, Any]:
    cases, dropped = load_preference_cases(
        data / "a_prefer_dev.csv", data / "a_prefer_dev_labels.csv", resolve_tokens("llama3")[1]
    )
    results = {
        name: evaluate_preference(cases, name, model=scorer if name == "prm" else None)
        for name in (*PREFERENCE_RULES, "prm")
    }
    return {"dropped": dropped, "cases": len(cases), **results}


def _best_of_n_example(gold: Any, errors: Any, scorer: Any, console: Any) -> dict[str, Any]:
    """Rank the gold and error samples of the first Dialogue-G case; keep texts for the report's step view
    (public demo data only — real notes are never written into a report unless asked)."""

    cases, _ = group_cases(gold, errors)
    case = next((c for c in cases if c.data_source.startswith("Dialogue")), cases[0])
    names = [("gold" if i == case.target else f"error sample {i}") for i in range(len(case.candidates))]
    ranking = best_of_n(case.candidates[0].dialogue, case.candidates, scorer, names=names)
    console.print(ranking_table(ranking))
    entries = []
    for entry in ranking.entries:
        items = _items_with_scores(entry.note, entry.scored)
        entries.append({"rank": entry.rank, "name": entry.name, "score": entry.score, "items": items})
    return {
        "case_id": case.case_id,
        "source": case.data_source,
        "aggregate": ranking.aggregate,
        "gold_rank": next(e["rank"] for e in entries if e["name"] == "gold"),
        "ranking": entries,
    }


def _items_with_scores(note: Any, scored: Any) -> list[dict[str, Any]]:
    """The note's problem headers and steps in order, each with its P(+) and stored label."""

    out = []
    for slot in scored.slots:
        if slot.kind not in ("problem", "step"):
            continue
        out.append({"kind": slot.kind, "text": item_text(note, slot), "p_plus": slot.p_plus, "label": slot.label})
    return out
