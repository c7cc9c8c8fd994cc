"""Notes GRPO wiring: the recipes load, a tiny 2-step run end to end (policy + PRM reward), the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinrl.errors import ClinrlError
from clinrl.notes.grpo import build_notes_dataset, load_notes_grpo_config, train_notes_grpo
from tests.helpers.tokenizers import make_tiny_tokenizer
from tests.notes.tiny_models import tiny_policy_dir, tiny_prm_dir

RECIPES = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "recipes" / "notes"


def overrides(out, **extra) -> dict:
    return {
        "model": str(tiny_policy_dir()), "prm": str(tiny_prm_dir()), "output_dir": str(out), "limit": 4,
        "max_dialogue_tokens": 48, "training.max_steps": 2, "training.num_generations": 2,
        "training.per_device_train_batch_size": 2, "training.max_completion_length": 12, "training.disable_tqdm": True, **extra,
    }  # fmt: skip


def test_study_and_tiny_recipes_load():
    study = load_notes_grpo_config(RECIPES / "grpo_prm.yaml")
    assert study.rewards == ["prm", "format", "completeness", "guard"] and study.aggregate == "mean"
    assert study.training["use_vllm"] is True and study.report_to == ["none"]
    tiny = load_notes_grpo_config(RECIPES / "tiny" / "grpo_prm.yaml")
    assert tiny.training["use_cpu"] is True and tiny.rewards == study.rewards
    from dataclasses import replace

    assert replace(tiny.guards, min_step_ratio=0.3, floor_margin=1.0) == study.guards  # only these two differ


def test_invalid_recipes_are_errors(tmp_path):
    path = RECIPES / "tiny" / "grpo_prm.yaml"
    for bad, match in (({"rewards": "prm,length"}, "unknown"), ({"aggregate": "median"}, "aggregate"),
                       ({"reward_weights": "[1.0]"}, "reward_weights"), ({"guards.copy_ngram": 1}, "copy_ngram"),
                       ({"guards.nope": 1}, "unknown key")):  # fmt: skip
        with pytest.raises(ClinrlError, match=match):
            load_notes_grpo_config(path, {**overrides(tmp_path), **bad})


def test_dataset_holds_train_dialogues_only(tmp_path):
    cfg = load_notes_grpo_config(RECIPES / "tiny" / "grpo_prm.yaml", overrides(tmp_path, limit=40))
    dataset, report = build_notes_dataset(cfg, make_tiny_tokenizer())
    assert len(dataset) == report["rows"] == 40 and report["train"] == len(report["train_case_ids"]) > 1000
    assert dataset["case_id"] == report["train_case_ids"][:40]
    assert not set(dataset["case_id"]) & set(report["held_out_case_ids"])
    assert {"prompt", "dialogue", "ref_problems", "ref_steps", "ref_words", "ref_headers"} <= set(dataset.column_names)


def test_tiny_grpo_two_steps_end_to_end(tmp_path):
    out = tmp_path / "run"
    cfg = load_notes_grpo_config(RECIPES / "tiny" / "grpo_prm.yaml", overrides(out))
    summary = train_notes_grpo(cfg)
    assert summary["global_step"] == 2 and summary["rows"] == 4
    counts = summary["prm_reward"]
    assert counts["scored"] + counts["floored"] == 2 * 2  # steps x completions per step
    assert (out / "model.safetensors").is_file() and (out / "grpo_summary.json").is_file()
    split = json.loads((out / "dialogue_split.json").read_text())
    assert not set(split["train_case_ids"]) & set(split["held_out_case_ids"])


def test_cli_runs_and_reports_user_errors(tmp_path, capsys):
    from clinrl.cli import main

    with pytest.raises(SystemExit) as err:
        main(["notes", "grpo", "--config", str(RECIPES / "tiny" / "grpo_prm.yaml"), "--aggregate", "median"])
    assert err.value.code == 2
    out = tmp_path / "split.json"
    main(["notes", "split", "--out", str(out), "--held-out-fraction", "0.2"])
    report = json.loads(out.read_text())
    assert report["held_out"] == len(report["held_out_case_ids"]) and report["held_out_fraction"] == 0.2
