"""The DRG half of the demo: synthetic MIMIC-shaped notes → ``prepare`` (exclusion flow) → split → SFT of
a tiny local model → evaluation → GRPO with the best recipe → evaluation again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinrl.config import resolve_recipe
from clinrl.demo.config import DemoConfig
from clinrl.demo.workspace import build_tiny_workspace, grpo_overrides, partly_trained_stop, sft_overrides, tiny_prompts
from clinrl.drg.eval.evaluate import run_eval
from clinrl.drg.ontology import load_ontology
from clinrl.drg.rewards import get_reward
from clinrl.drg.train.grpo import load_grpo_config, train_grpo
from clinrl.drg.train.sft import load_sft_config, train_sft
from clinrl.io import write_json_atomic
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.llm.loading import load_tokenizer

Section = Callable[[str], None]


def run_drg(out: Path, cfg: DemoConfig, section: Section, console: Any) -> dict[str, Any]:
    """Run every DRG stage under ``out``; return the summary (flow, split, rewards, training, metrics)."""
    from clinrl.drg.prep.mimic import print_summary  # lazy: pulls pandas

    section("DRG 1/5  synthetic MIMIC-IV-shaped notes → prepare (hospital course, v34 labels, exclusion flow)")
    ws = build_tiny_workspace(out, n_notes=cfg.n_notes, classes=cfg.classes, seed=cfg.seed, quiet=False)
    flow = json.loads((ws.prepared / "flow.json").read_text())
    prep_report = json.loads((ws.prepared / "prepare_report.json").read_text())
    print_summary(flow, prep_report, ws.prepared)
    split = json.loads((ws.split / "split_report.json").read_text())
    section("DRG 2/5  GRPO rewards on example answers")
    rewards = reward_examples(ws.prepared / "test.parquet", console)

    section("DRG 3/5  SFT of a tiny random-init Qwen2 (stops when partly trained)")
    sft = _sft(out, ws, cfg)
    section("DRG 4/5  evaluation of the SFT policy")
    before = _evaluate(ws, Path(sft["output_dir"]), out / "eval_sft", cfg)
    section(f"DRG 5/5  GRPO ({cfg.grpo_recipe}) and evaluation of the RL policy")
    grpo = _grpo(out, ws, Path(sft["output_dir"]), cfg)
    after = _evaluate(ws, Path(grpo["output_dir"]), out / "eval_grpo", cfg)
    return {
        "flow": flow,
        "prepare": {k: prep_report.get(k) for k in ("seconds", "notes_per_second") if k in prep_report},
        "split": {k: split.get(k) for k in ("sft", "rl")},
        "rewards": rewards,
        "sft": sft,
        "grpo": grpo,
        "eval": {"sft": before, "grpo": after},
        "paths": {
            "sft": sft["output_dir"],
            "grpo": grpo["output_dir"],
            "eval_sft": str(out / "eval_sft"),
            "eval_grpo": str(out / "eval_grpo"),
        },
    }


def _sft(out: Path, ws: Any, cfg: DemoConfig) -> dict[str, Any]:
    sft_dir = out / "sft"
    summary_file = sft_dir / "sft_summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text())
    shutil.rmtree(sft_dir, ignore_errors=True)
    tokenizer = load_tokenizer(ws.model)
    dev_prompts, dev_golds = tiny_prompts(
        ws.split / "rl.parquet", tokenizer, cfg.max_prompt_tokens, tail=cfg.sft_dev_cases
    )
    stop = partly_trained_stop(
        ws.model,
        dev_prompts,
        dev_golds,
        every=cfg.sft_eval_every,
        target=cfg.sft_target,
        max_new_tokens=cfg.completion_tokens,
    )
    recipe = load_sft_config(
        resolve_recipe("tiny/sft"),
        sft_overrides(
            ws,
            sft_dir,
            max_prompt_tokens=cfg.max_prompt_tokens,
            max_steps=cfg.sft_max_steps,
            logging_steps=cfg.logging_steps,
            seed=cfg.seed,
        ),
    )
    summary = train_sft(recipe, callbacks=[stop])
    summary["dev_history"] = stop.history
    write_json_atomic(summary_file, summary)
    return summary


def _grpo(out: Path, ws: Any, sft_dir: Path, cfg: DemoConfig) -> dict[str, Any]:
    grpo_dir = out / "grpo"
    summary_file = grpo_dir / "grpo_summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text())
    shutil.rmtree(grpo_dir, ignore_errors=True)
    overrides = grpo_overrides(
        ws,
        sft_dir,
        grpo_dir,
        max_prompt_tokens=cfg.max_prompt_tokens,
        max_steps=cfg.grpo_steps,
        batch_size=cfg.grpo_batch,
        completion_tokens=cfg.completion_tokens,
        logging_steps=max(1, cfg.logging_steps // 2),
        seed=cfg.seed,
    )
    recipe = load_grpo_config(resolve_recipe(cfg.grpo_recipe), {**overrides, "difficulty_file": None})
    return train_grpo(recipe)


def _evaluate(ws: Any, model_dir: Path, out: Path, cfg: DemoConfig) -> dict[str, Any]:
    backend = TransformersBackend.from_path(str(model_dir), device="cpu", batch_size=32, progress=True)
    params = SamplingParams(
        n=cfg.n_samples, temperature=0.6, top_p=0.95, max_new_tokens=cfg.completion_tokens + 8, seed=cfg.seed
    )
    return run_eval(
        backend,
        ws.prepared / "test.parquet",
        params,
        out,
        limit=cfg.n_test,
        batch_size=32,
        max_prompt_tokens=cfg.max_prompt_tokens,
        meta={"model": str(model_dir)},
    )


def reward_examples(test_parquet: Path, console: Any) -> list[dict[str, Any]]:
    """The GRPO rewards of a few hand-made answers against one real gold label (a table)."""
    import pandas as pd
    from rich.table import Table

    onto = load_ontology()
    gold = onto.find(pd.read_parquet(test_parquet, columns=["description"])["description"].iloc[0])
    sibling = next((d for d in onto if d.principal == gold.principal and d.code != gold.code), None)
    other = next(d for d in onto if d.principal != gold.principal and d.cc_mcc == gold.cc_mcc)

    def answer(text: str) -> str:
        return (
            f"<think>The course describes the principal condition and its complications.</think><answer>{text}</answer>"
        )

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
