"""Every recipe loads and validates; every tiny variant keeps its full recipe's algorithm and runs a
training step on CPU; the CLI lists recipes and launches one by name."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clinrl.cli import app
from clinrl.config import RECIPES_DIR, RecipeError, list_recipes, load_recipe
from clinrl.drg.train.grpo import DRGGRPOConfig, load_grpo_config, train_grpo
from clinrl.drg.train.sft import DRGSFTConfig, load_sft_config, train_sft
from tests.drg.tiny_training import tiny_workspace

NAMES = list_recipes()
FULL = [n for n in NAMES if not n.startswith("tiny/")]
TINY = [n for n in NAMES if n.startswith("tiny/")]
TINY_LOCAL = [n for n in TINY if not n.endswith("_vllm")]  # *_vllm need vLLM: tests/engines runs them
ABLATIONS = [
    "vanilla_dense",
    "resample_neutral",
    "resample_positive",
    "cot_first",
    "dapo_loss",
    "dr_grpo_loss",
    "dr_grpo_advantage",
    "no_kl",
    "cosine_kl",
    "strict_reward",
    "balanced_reward",
    "drop_easy",
    "drop_hard",
    "drop_both",
    "easy_to_hard",
    "best",
    "final",
]
ALGORITHM = ("rewards", "reward_weights", "kl_schedule", "sampling_mode", "curriculum", "cot_first_tokens")
TRL_ALGORITHM = ("loss_type", "beta", "scale_rewards", "temperature", "num_iterations", "epsilon")


def is_sft(name: str) -> bool:
    return name.split("/")[-1].startswith("sft")


def load(name: str, overrides=()):
    loader = load_sft_config if is_sft(name) else load_grpo_config
    return loader(RECIPES_DIR / f"{name}.yaml", overrides)


def test_every_study_configuration_has_a_full_and_a_tiny_recipe():
    for name in [*ABLATIONS, "sft", "sft_cold_start"]:
        assert name in FULL and f"tiny/{name}" in TINY
    # every tiny recipe mirrors a full one; `tiny/<name>_vllm` is <name> with colocated vLLM rollouts on a CPU
    assert {t.removeprefix("tiny/").removesuffix("_vllm") for t in TINY} == set(FULL)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_loads_and_validates(name):
    cfg = load(name)
    assert isinstance(cfg, DRGSFTConfig if is_sft(name) else DRGGRPOConfig)
    assert cfg.report_to == ["none"] and cfg.training["push_to_hub"] is False
    if not is_sft(name):
        # TRL 1.16's defaults differ from the study's TRL 0.15: every recipe sets these itself
        raw = load_recipe(RECIPES_DIR / f"{name}.yaml")["training"]
        assert {"loss_type", "beta", "scale_rewards", "num_generations", "learning_rate", "temperature"} <= set(raw)


@pytest.mark.parametrize("name", [n for n in FULL if not is_sft(n)])
def test_full_recipes_use_the_study_hyperparameters(name):
    trl = load(name).training
    assert trl["num_generations"] == 8 and trl["learning_rate"] == pytest.approx(3e-6)
    assert trl["temperature"] == 1.0 and trl["num_iterations"] == 1 and trl["num_train_epochs"] == 1
    assert trl["max_completion_length"] == 10240 and trl["use_vllm"] is True
    assert trl["per_device_train_batch_size"] * trl["gradient_accumulation_steps"] * 8 == 64 * 8  # 8 GPUs


def test_best_and_final_are_the_study_configs():
    best, final = load("best"), load("final")
    assert best.training["loss_type"] == "dapo" and best.rewards == ["format", "accuracy_strict"]
    assert best.kl_schedule == "cosine" and final.curriculum == "drop_hard"
    assert load("no_kl").training["beta"] == 0.0 and load("dr_grpo_advantage").training["scale_rewards"] == "none"
    assert load("sft").training["max_length"] == 12846 and load("sft_cold_start").training["num_train_epochs"] == 9


def test_dr_grpo_loss_recipe_divides_by_the_studys_constant():
    # TRL 1.16 would divide by max_completion_length (10,240); the study's Dr. GRPO constant was 1,024
    cfg = load("dr_grpo_loss")
    assert cfg.training["loss_type"] == "dr_grpo" and cfg.dr_grpo_normalizer == 1024
    assert load("tiny/dr_grpo_loss").dr_grpo_normalizer == 1024
    with pytest.raises(RecipeError, match="loss_type: dr_grpo"):
        load("dapo_loss", {"dr_grpo_normalizer": 1024})


@pytest.mark.parametrize("name", TINY)
def test_tiny_variant_keeps_the_algorithm(name):
    tiny, full = load(name), load(name.removeprefix("tiny/").removesuffix("_vllm"))
    if is_sft(name):
        assert tiny.training["learning_rate"] == full.training["learning_rate"]
        return
    for key in ALGORITHM:
        assert getattr(tiny, key) == getattr(full, key), key
    for key in TRL_ALGORITHM:
        assert tiny.training.get(key) == full.training.get(key), key


@pytest.mark.parametrize("name", TINY_LOCAL)
def test_tiny_variant_trains_a_step(name, tmp_path):
    ws = tiny_workspace()
    if is_sft(name):
        summary = train_sft(load(name, ws.sft_overrides(tmp_path, **{"training.max_steps": 1})))
    else:
        summary = train_grpo(load(name, ws.grpo_overrides(tmp_path)))
    assert summary["global_step"] == 1
    assert (tmp_path / "model.safetensors").is_file()


def test_cli_lists_and_launches_by_name(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["drg", "recipes"])
    assert listed.exit_code == 0 and "tiny/best" in listed.output
    ws = tiny_workspace()
    args = [f"--{k}={v}" for k, v in ws.grpo_overrides(tmp_path / "run").items()]
    result = runner.invoke(app, ["drg", "grpo", "--recipe", "tiny/best", *args])
    assert result.exit_code == 0, result.output
    line = result.output[result.output.rindex('{"recipe"') :].splitlines()[0]
    assert json.loads(line)["global_step"] == 1
    bad = runner.invoke(app, ["drg", "grpo", "--recipe", "tiny/best", "--training.no_such_key", "1"])
    assert bad.exit_code != 0 and "training.no_such_key" in str(bad.exception or bad.output)
