"""Model and dataset cards (clinrl.cards): named splits for ``datasets.load_dataset``, the data's licence
read from what clinrl wrote, no note text, and hub pushes refused (private by default, never public for
MIMIC-IV data). No network: only the refusal and the TrainingArguments clinrl builds are checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from clinrl.cards import MARKER, HubPushError, data_kind, model_card
from clinrl.config import RECIPES_DIR
from clinrl.errors import ClinrlError

GRPO_RECIPE = RECIPES_DIR / "tiny" / "best.yaml"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A synthetic ``drg prepare`` folder and its ``drg split`` (120 notes, ~1 s), plus a copy of both that
    looks like real MIMIC-IV output (no synth manifest beside the raw notes, no recorded kind)."""
    from clinrl.drg.prep.mimic import prepare
    from clinrl.drg.prep.split import SplitConfig, split_prepared
    from clinrl.drg.synth.generate import write_synthetic

    root = tmp_path_factory.mktemp("cards")
    write_synthetic(root / "raw", 120, seed=1, classes=4, progress=False)
    prepare(root / "raw" / "discharge.csv.gz", root / "raw" / "drgcodes.csv.gz", root / "prep", progress=False)
    split_prepared(root / "prep" / "train.parquet", root / "split", SplitConfig(sft_ratio=0.5, seed=1), progress=False)
    mimic = root / "mimic"
    shutil.copytree(root / "prep", mimic / "prep")
    report = json.loads((mimic / "prep" / "prepare_report.json").read_text())
    report.pop("data_kind")
    report["discharge"]["path"] = str(root / "elsewhere" / "discharge.csv.gz")
    (mimic / "prep" / "prepare_report.json").write_text(json.dumps(report))
    split_prepared(
        mimic / "prep" / "train.parquet", mimic / "split", SplitConfig(sft_ratio=0.5, seed=1), progress=False
    )
    return root


def test_load_dataset_returns_the_named_splits_with_their_rows(folders):
    import datasets

    for folder, splits in (("prep", ("train", "test")), ("split", ("sft", "rl"))):
        loaded = datasets.load_dataset(str(folders / folder))
        assert sorted(loaded) == sorted(splits)
        for split in splits:
            assert loaded[split].num_rows == len(pd.read_parquet(folders / folder / f"{split}.parquet")) > 0
        card = (folders / folder / "README.md").read_text()
        assert MARKER in card and "SYNTHETIC" in card and "PhysioNet" not in card
        texts = pd.read_parquet(folders / folder / f"{splits[0]}.parquet")["text"]
        assert not any(t[:60] in card for t in texts)  # counts only, no note text


def test_data_kind_follows_what_clinrl_wrote(folders, tmp_path):
    assert data_kind(folders / "split" / "rl.parquet") == "synthetic"
    assert data_kind(folders / "prep" / "train.parquet") == "synthetic"
    assert data_kind(folders / "mimic" / "prep" / "train.parquet") == "mimic-iv"
    assert data_kind(folders / "mimic" / "split" / "sft.parquet") == "mimic-iv"
    assert "PhysioNet Credentialed" in (folders / "mimic" / "split" / "README.md").read_text()
    loose = tmp_path / "cases.parquet"
    pd.DataFrame({"text": ["x"], "solution": ["y"]}).to_parquet(loose)
    assert data_kind(loose) == "unknown" and data_kind("demo") == "prm-clinic"


def _grpo(folders, tmp_path, data: Path, **extra):
    from clinrl.drg.train.grpo import load_grpo_config

    overrides = {"model": "Qwen/unused", "data": str(data), "output_dir": str(tmp_path / "out"),
                 "training.push_to_hub": True, "training.hub_model_id": "someone/drg", **extra}  # fmt: skip
    return load_grpo_config(GRPO_RECIPE, overrides)


def test_hub_push_is_private_by_default_and_public_needs_the_data_to_allow_it(folders, tmp_path):
    cfg = _grpo(folders, tmp_path, folders / "split" / "rl.parquet")
    assert cfg.grpo_arguments().hub_private_repo is True  # what the Trainer passes to create_repo(private=…)
    public = {"training.hub_private_repo": False}
    with pytest.raises(HubPushError) as err:
        _grpo(folders, tmp_path, folders / "split" / "rl.parquet", **public)
    assert "data_allows_public_release" in str(err.value) and "\n" not in str(err.value)
    allowed = _grpo(folders, tmp_path, folders / "split" / "rl.parquet", data_allows_public_release=True, **public)
    assert allowed.grpo_arguments().hub_private_repo is False
    for data in (folders / "mimic" / "split" / "rl.parquet",):  # MIMIC-IV: never public, whatever the recipe says
        with pytest.raises(HubPushError, match="MIMIC-IV") as err:
            _grpo(folders, tmp_path, data, data_allows_public_release=True, **public)
        assert "\n" not in str(err.value)


def test_cli_refuses_a_public_push_in_one_line(folders, tmp_path, capsys):
    from clinrl.cli import main

    args = ["drg", "grpo", "--config", str(GRPO_RECIPE), "--data", str(folders / "mimic" / "split" / "rl.parquet"),
            "--output_dir", str(tmp_path / "o"), "--training.push_to_hub", "true", "--training.hub_private_repo", "false"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: refusing a public hub repository") and "\n" not in err
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_model_card_sections_metrics_and_redaction(folders):
    config = {"model": "Qwen/Qwen2.5-7B-Instruct", "data": str(folders / "mimic" / "split" / "sft.parquet"),
              "traces": "runs/traces.jsonl", "knowledge": True, "max_prompt_tokens": 4096, "truncation": "head",
              "trl": {"learning_rate": 1e-5, "hub_token": "hf_SECRET"}}  # fmt: skip
    history = [{"step": 1, "loss": 2.5, "epoch": 0.5}, {"step": 2, "loss": 1.25}, {"step": 2, "train_loss": 1.8}]
    card = model_card("drg-sft", config, history, out="runs/sft")
    front = card.split("---")[1]
    assert "base_model: Qwen/Qwen2.5-7B-Instruct" in front and "license: other" in front
    assert "physionet-credentialed-health-data-1.5.0" in front and "Do not publish this model" in card
    for section in ("## Base model", "## Training data and licence", "## Prompt format", "## Recipe", "## Final metrics",
                    "## How to evaluate"):  # fmt: skip
        assert section in card
    assert "| loss | 1.25 |" in card and "| train_loss | 1.8 |" in card and "hf_SECRET" not in card
    assert "max_prompt_tokens: 4096" in card
    assert "clinrl drg eval --model runs/sft" in card and "fine-tuned version of" not in card
    with pytest.raises(ClinrlError, match="no model card"):
        from clinrl.cards import write_model_card

        write_model_card(folders, object())
