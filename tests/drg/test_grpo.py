"""GRPO wiring on a tiny model: dataset, rewards, trainer choice, cosine KL in a real run, resume."""

from __future__ import annotations

import json
import math

import pytest
from transformers import AutoTokenizer, TrainerCallback

from clinrl.config import RECIPES_DIR
from clinrl.drg.prompts import count_prompt_tokens, render_prompt
from clinrl.drg.train.grpo import build_rewards, build_rl_dataset, load_grpo_config, train_grpo
from clinrl.errors import ClinrlError
from tests.drg.tiny_training import MAX_PROMPT_TOKENS, StopAt, tiny_workspace


@pytest.fixture(scope="module")
def ws():
    return tiny_workspace()


@pytest.fixture(scope="module")
def tokenizer(ws):
    return AutoTokenizer.from_pretrained(ws.model)


def test_dataset_prompts_fit_budget_and_keep_solution(ws, tokenizer, tmp_path):
    cfg = load_grpo_config(RECIPES_DIR / "tiny" / "vanilla_dense.yaml", ws.grpo_overrides(tmp_path, limit=12))
    dataset, report = build_rl_dataset(cfg, tokenizer)
    assert report is None and len(dataset) == 12
    assert {"prompt", "solution", "hadm_id"} <= set(dataset.column_names)
    for row in dataset:
        assert row["prompt"][0]["role"] == "system"
        course = row["prompt"][1]["content"].split("Brief hospital course:\n", 1)[1]
        assert count_prompt_tokens(course, tokenizer) <= MAX_PROMPT_TOKENS


def test_curriculum_drops_hard_cases(ws, tokenizer, tmp_path):
    cfg = load_grpo_config(RECIPES_DIR / "tiny" / "drop_hard.yaml", ws.grpo_overrides(tmp_path, limit=12))
    dataset, report = build_rl_dataset(cfg, tokenizer)
    tags = {json.loads(line)["hadm_id"]: json.loads(line)["difficulty"] for line in ws.difficulty.open()}
    assert report["hard"] == 4 and len(dataset) == 8
    assert all(tags[h] != "hard" for h in dataset["hadm_id"])


def test_rewards_follow_recipe_order(ws, tmp_path):
    cfg = load_grpo_config(RECIPES_DIR / "tiny" / "cot_first.yaml", ws.grpo_overrides(tmp_path))
    names = [r.__name__ for r in build_rewards(cfg)]
    assert names == ["format", "accuracy_dense", "cot_first_penalty"]
    assert cfg.reward_weights == [1.0, 1.0, 1.0]


def test_invalid_combinations_are_recipe_errors(ws, tmp_path):
    with pytest.raises(ClinrlError, match="cosine needs training.beta"):
        load_grpo_config(RECIPES_DIR / "tiny" / "best.yaml", {**ws.grpo_overrides(tmp_path), "training.beta": 0.0})
    with pytest.raises(ClinrlError, match="reward_weights"):
        load_grpo_config(RECIPES_DIR / "tiny" / "best.yaml", {**ws.grpo_overrides(tmp_path), "reward_weights": "[1.0]"})
    with pytest.raises(ClinrlError, match="unknown"):
        load_grpo_config(RECIPES_DIR / "tiny" / "best.yaml", {**ws.grpo_overrides(tmp_path), "rewards": "format,nope"})


def test_cosine_kl_decays_beta_in_a_real_run(ws, tmp_path):
    cfg = load_grpo_config(
        RECIPES_DIR / "tiny" / "best.yaml", ws.grpo_overrides(tmp_path / "run", **{"training.max_steps": 4})
    )
    logged = []

    class Spy(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            logged.extend(h["kl_beta"] for h in state.log_history if "loss" in h)

    summary = train_grpo(cfg, callbacks=[Spy()])
    assert summary["global_step"] == 4
    beta0 = cfg.training["beta"]
    # the beta used during step t (t = 0..3 of T = 4) is beta0 * (1 + cos(pi t / 4)) / 2
    expected = [beta0 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert logged == pytest.approx(expected)
    assert summary["final_kl_beta"] == pytest.approx(expected[-1])


def test_resume_reaches_the_same_final_step(ws, tmp_path):
    out = tmp_path / "run"
    overrides = ws.grpo_overrides(
        out, **{"training.max_steps": 3, "training.save_strategy": "steps", "training.save_steps": 1}
    )
    cfg = load_grpo_config(RECIPES_DIR / "tiny" / "vanilla_dense.yaml", overrides)
    first = train_grpo(cfg, callbacks=[StopAt(2)])
    assert first["global_step"] == 2
    with pytest.raises(ClinrlError, match="--resume"):
        train_grpo(cfg)
    resumed = train_grpo(cfg, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert resumed["global_step"] == 3
    with pytest.raises(ClinrlError, match="no checkpoint"):
        train_grpo(
            load_grpo_config(RECIPES_DIR / "tiny" / "vanilla_dense.yaml", ws.grpo_overrides(tmp_path / "x")),
            resume=True,
        )


def test_render_prompt_is_what_trl_sees(ws, tokenizer, tmp_path):
    cfg = load_grpo_config(RECIPES_DIR / "tiny" / "vanilla_dense.yaml", ws.grpo_overrides(tmp_path, limit=2))
    dataset, _ = build_rl_dataset(cfg, tokenizer)
    text = tokenizer.apply_chat_template(dataset[0]["prompt"], tokenize=False, add_generation_prompt=True)
    course = dataset[0]["prompt"][1]["content"].split("Brief hospital course:\n", 1)[1]
    assert text == render_prompt(course, tokenizer)


def test_scoring_of_sampled_answers_pass1_majority_and_format():
    from clinrl.drg.eval.metrics import score_generations

    gold, other = "HEART FAILURE AND SHOCK WITH MCC", "HEART FAILURE AND SHOCK WITH CC"

    def c(answer):
        return f"<think>x</think><answer>{answer}</answer>"

    samples = [
        [c(gold), c(other), c(other), "no format " + gold],  # 1/4 right, majority wrong
        [c(gold), c(gold), c(other), c("NOT A DRG")],  # 2/4 right, majority right
    ]
    metrics = score_generations([{"solution": gold, "completions": s} for s in samples], ks=[4])
    assert metrics["drg"]["pass@1"] == pytest.approx(3 / 8)
    assert metrics["drg"]["maj@k"]["4"] == pytest.approx(0.5) and metrics["drg"]["pass@k"]["4"] == 1.0
    assert 1 - metrics["format_failure_rate"] == pytest.approx(7 / 8)
    assert (metrics["n_cases"], metrics["n_samples"]) == (2, 4)
