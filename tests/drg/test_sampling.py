"""Dynamic resampling and filtering: the pure group logic on scripted rewards, then a real
ClinrlGRPOTrainer on a tiny random model (CPU, 1 step)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.train.groups import TemperaturePicker, degenerate_groups, expand_groups, resample_until
from clinrl.drg.train.sampling import SamplingConfig, SamplingConfigError

torch.set_num_threads(1)

# --------------------------------------------------------------------------- pure group logic


def test_degenerate_groups_by_mode():
    rewards = [1.0, 1.0, 0.0, 2.0, -2.0, -1.5, 0.0, 0.0]  # G=2: const+, varied, varied but <= 0, const 0
    assert degenerate_groups(rewards, 2, "neutral") == [True, False, False, True]
    assert degenerate_groups(rewards, 2, "filter") == [True, False, False, True]
    assert degenerate_groups(rewards, 2, "positive") == [True, False, True, True]
    assert degenerate_groups(rewards, 2, "positive", positive_threshold=1.5) == [True, False, True, True]
    assert degenerate_groups([0.0, 1e-9, 0.0, 1e-3], 2, "neutral") == [True, False]
    assert expand_groups([True, False], 3) == [True, True, True, False, False, False]


def test_degenerate_groups_ignores_unscorable_rewards():
    nan = math.nan
    assert degenerate_groups([nan, 1.0, 1.0, 0.0, nan, nan, nan, 2.0, 1.0], 3, "neutral") == [True, True, False]
    with pytest.raises(ValueError, match="groups of"):
        degenerate_groups([1.0, 2.0, 3.0], 2, "neutral")
    with pytest.raises(ValueError, match="unknown mode"):
        degenerate_groups([1.0, 2.0], 2, "bogus")


class Script:
    """A regenerate callback that plays back scripted rewards per group and records every call."""

    def __init__(self, plays: dict[int, list[list[float]]]):
        self.plays = {g: list(seq) for g, seq in plays.items()}
        self.calls: list[tuple[list[int], float]] = []

    def __call__(self, groups, temperature):
        self.calls.append((list(groups), temperature))
        return [self.plays[g].pop(0) for g in groups]


def test_resample_until_rechecks_every_regeneration_and_stops_at_the_cap():
    # group 0 is fine; group 1 stays degenerate once, then varies; group 2 never varies (cap 3)
    rewards = [0.0, 2.0, 1.0, 1.0, 0.0, 0.0]
    script = Script({1: [[0.5, 0.5], [0.0, 2.0]], 2: [[0.0, 0.0]] * 3})
    result = resample_until(rewards, 2, "neutral", script, max_retries=3)
    assert [groups for groups, _ in script.calls] == [[1, 2], [1, 2], [2]]
    assert result.retries == [0, 2, 3]
    assert result.rewards == [0.0, 2.0, 0.0, 2.0, 0.0, 0.0]  # group 0 untouched, group 2 keeps its last attempt
    assert result.initially_degenerate == [1, 2]
    assert result.still_degenerate == [2]
    assert result.fixed == [1] and result.resampled == [1, 2]
    assert result.rounds == 3 and result.extra_completions == 5 * 2
    metrics = result.metrics()
    assert metrics["groups_still_degenerate"] == 1 and metrics["attempts_max"] == 3
    assert metrics["attempts_mean"] == pytest.approx(2.5)
    assert metrics["extra_cost_ratio"] == pytest.approx(10 / 6)


def test_positive_mode_also_needs_a_reward_above_zero():
    rewards = [-2.0, 0.0, 2.0, 0.0]  # group 0 varies but nothing is positive
    assert resample_until(rewards, 2, "neutral", Script({}), max_retries=5).retries == [0, 0]
    script = Script({0: [[-1.5, 0.0], [2.0, 2.0], [0.0, 1.5]]})
    result = resample_until(rewards, 2, "positive", script, max_retries=5)
    assert result.retries == [3, 0]  # [-1.5, 0] no positive; [2, 2] no variance; [0, 1.5] qualifies
    assert result.rewards[:2] == [0.0, 1.5] and result.still_degenerate == []


def test_zero_retries_never_regenerates():
    script = Script({})
    result = resample_until([1.0, 1.0], 2, "neutral", script, max_retries=0)
    assert script.calls == [] and result.still_degenerate == [0] and result.extra_completions == 0


def test_regenerate_must_return_one_group_per_request():
    with pytest.raises(ValueError, match="returned 0 groups"):
        resample_until([1.0, 1.0], 2, "neutral", lambda groups, t: [], max_retries=2)
    with pytest.raises(ValueError, match="3 rewards"):
        resample_until([1.0, 1.0], 2, "neutral", lambda groups, t: [[0.0, 1.0, 2.0]], max_retries=2)


def test_temperatures_cycle_or_draw_from_the_set():
    temps = (0.7, 0.8, 0.9, 1.0)
    script = Script({0: [[0.0, 0.0]] * 6})
    resample_until([0.0, 0.0], 2, "neutral", script, max_retries=6, temperature=TemperaturePicker(temps, "cycle"))
    assert [t for _, t in script.calls] == [0.7, 0.8, 0.9, 1.0, 0.7, 0.8]
    picker_a, picker_b = TemperaturePicker(temps, "random", seed=3), TemperaturePicker(temps, "random", seed=3)
    a, b = [picker_a() for _ in range(50)], [picker_b() for _ in range(50)]
    assert a == b and set(a) == set(temps)  # seeded (the same on every process) and drawn from the whole set
    assert a != [TemperaturePicker(temps, "random", seed=4)() for _ in range(50)]
    with pytest.raises(ValueError):
        TemperaturePicker((), "cycle")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda g: st.tuples(
            st.just(g),
            st.lists(st.lists(st.sampled_from([-2.0, 0.0, 1.5, 2.0]), min_size=g, max_size=g), min_size=1, max_size=5),
            st.lists(st.lists(st.sampled_from([-2.0, 0.0, 2.0]), min_size=g, max_size=g), min_size=0, max_size=8),
        )
    ),
    st.sampled_from(["neutral", "positive"]),
    st.integers(0, 4),
)
def test_resample_until_properties(data, mode, max_retries):
    g, groups, pool = data
    rewards = [v for group in groups for v in group]
    feed = iter(pool * 50 or [[0.0] * g] * 50)

    def regenerate(requested, temperature):
        return [next(feed) for _ in requested]

    result = resample_until(rewards, g, mode, regenerate, max_retries=max_retries)
    flags = degenerate_groups(result.rewards, g, mode)
    initial = degenerate_groups(rewards, g, mode)
    for index, bad in enumerate(initial):
        if not bad:  # untouched
            assert result.retries[index] == 0 and result.rewards[index * g : (index + 1) * g] == groups[index]
        assert result.retries[index] <= max_retries
        assert flags[index] == (index in result.still_degenerate)
        if flags[index] and bad:
            assert result.retries[index] == max_retries  # only the cap leaves a group degenerate
    assert result.extra_completions == sum(result.retries) * g


def test_sampling_config_validates():
    assert SamplingConfig(mode="positive", temperatures=[0.7, 1.0]).temperatures == (0.7, 1.0)
    for bad in ({"mode": "sometimes"}, {"max_retries": -1}, {"temperatures": ()}, {"temperatures": (0.0,)}):
        with pytest.raises(SamplingConfigError):
            SamplingConfig(**bad)


# --------------------------------------------------------------------------- the trainer, for real


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.helpers.models import build_smallest_lm

    return build_smallest_lm(tmp_path_factory.mktemp("tiny_policy"))


def _dataset(n: int = 4):
    from datasets import Dataset

    return Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"case {i}: heart failure"}] for i in range(n)], "case": [*range(n)]}
    )


def _trainer(model_dir, out_dir, reward, sampling=None, dataset=None, **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from clinrl.drg.train.sampling import ClinrlGRPOTrainer

    preserve_order = overrides.pop("preserve_order", False)
    dr_grpo_normalizer = overrides.pop("dr_grpo_normalizer", None)
    args = dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        max_steps=1,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-5,
        beta=0.0,
        seed=0,
        disable_tqdm=True,
    )
    args.update(overrides)
    return ClinrlGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        reward_funcs=reward,
        args=GRPOConfig(**args),
        train_dataset=dataset if dataset is not None else _dataset(),
        sampling=sampling,
        preserve_order=preserve_order,
        dr_grpo_normalizer=dr_grpo_normalizer,
    )


class ScriptedReward:
    """Rewards played per call (the whole local batch each time); records what it was shown."""

    __name__ = "scripted"

    def __init__(self, plays):
        self.plays = list(plays)
        self.seen: list[list[str]] = []

    def __call__(self, completions, case, **kwargs):
        self.seen.append([c[-1]["content"] for c in completions])
        self.cases = list(case)
        play = self.plays[min(len(self.seen), len(self.plays)) - 1]
        return list(play)


def _logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def test_trainer_resamples_degenerate_groups_and_logs_it(tiny_model_dir, tmp_path):
    # call 1: both groups flat; call 2: group 0 varies, group 1 still flat; call 3: group 1 varies
    reward = ScriptedReward([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 2.0]])
    log_path = tmp_path / "resample.jsonl"
    sampling = SamplingConfig(mode="neutral", max_retries=5, temperatures=(0.7, 0.9), log_path=str(log_path))
    trainer = _trainer(tiny_model_dir, tmp_path / "run", reward, sampling)
    trainer.train()

    assert len(reward.seen) == 3  # base + 2 retry rounds; the final batch was not scored a 4th time
    first, second, third = reward.seen
    assert reward.cases[0] == reward.cases[1] and reward.cases[2] == reward.cases[3]
    assert second[:2] != first[:2] and second[2:] != first[2:]  # both groups were regenerated
    assert third[:2] == second[:2]  # group 0 qualified in round 1 and was left alone
    assert _logged(trainer, "resample/rounds") == [2.0]
    assert _logged(trainer, "resample/groups_resampled") == [2.0]
    assert _logged(trainer, "resample/groups_fixed") == [2.0]
    assert _logged(trainer, "resample/groups_still_degenerate") == [0.0]
    assert _logged(trainer, "resample/extra_completions") == [6.0]  # (1 + 2) retries x G=2
    assert _logged(trainer, "resample/extra_tokens")[0] > 0
    assert _logged(trainer, "frac_reward_zero_std") == [0.0]  # TRL's advantages saw the final rewards
    record = json.loads(log_path.read_text().splitlines()[0])
    assert record["retries"] == [1, 2] and set(record["temperatures"]) <= {0.7, 0.9}


def test_trainer_stops_at_the_cap_and_logs_the_leftovers(tiny_model_dir, tmp_path):
    reward = ScriptedReward([[1.0, 1.0, 1.0, 1.0]])
    sampling = SamplingConfig(mode="positive", max_retries=3, drop_unresolved=True)
    trainer = _trainer(tiny_model_dir, tmp_path / "run", reward, sampling)
    trainer.train()
    assert len(reward.seen) == 1 + 3
    assert _logged(trainer, "filter/dropped_groups") == [2.0]  # drop_unresolved: the leftovers leave the loss
    assert _logged(trainer, "resample/groups_still_degenerate") == [2.0]
    assert _logged(trainer, "resample/attempts_max") == [3.0]
    assert _logged(trainer, "resample/extra_cost_ratio") == [pytest.approx(3.0)]


def test_sampling_temperature_is_applied_and_restored(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path / "run", ScriptedReward([[0.0] * 4]), SamplingConfig(mode="neutral"))
    base = trainer.generation_config.temperature
    with trainer._sampling_temperature(0.7):
        assert trainer.generation_config.temperature == 0.7 and trainer.generation_kwargs["temperature"] == 0.7
    assert trainer.generation_config.temperature == base and trainer.generation_kwargs["temperature"] == base


def test_filter_masks_exactly_the_zero_variance_groups(tiny_model_dir, tmp_path):
    reward = ScriptedReward([[1.0, 0.0, 0.5, 0.5]])  # group 0 informative, group 1 flat
    trainer = _trainer(tiny_model_dir, tmp_path / "run", reward, SamplingConfig(mode="filter"))
    trainer.model.train()
    data = _dataset(2)
    out = trainer._generate_and_score_completions([data[0], data[0], data[1], data[1]])
    assert len(reward.seen) == 1
    assert out["tool_mask"].sum(dim=1).gt(0).tolist() == [True, True, False, False]
    assert out["advantages"][2:].abs().sum().item() == 0.0 and out["advantages"][:2].abs().sum().item() > 0
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"][:2].sum())
    assert trainer._metrics["train"]["filter/kept_groups_frac"] == [0.5]


def test_preserved_order_survives_the_trainer_sampler(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from clinrl.drg.train.difficulty import apply_curriculum

    data = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"c{i}"}] for i in range(6)], "hadm_id": [10, 11, 12, 13, 14, 15]}
    )
    tags = {10: "hard", 11: "easy", 12: "mixed", 13: "hard", 14: "easy"}  # 15 untagged
    ordered, report = apply_curriculum(data, tags, "easy_to_hard")
    assert report["shuffle"] is False
    expected = [11, 14, 12, 15, 10, 13]
    assert ordered["hadm_id"] == expected

    def walk(trainer):
        return [row["hadm_id"] for batch in trainer.get_train_dataloader() for row in batch]

    reward = ScriptedReward([[0.0] * 4])
    kept = walk(_trainer(tiny_model_dir, tmp_path / "a", reward, dataset=ordered, preserve_order=True))
    assert kept == [i for i in expected for _ in range(2)]  # each prompt G times, curriculum order intact
    shuffled = walk(_trainer(tiny_model_dir, tmp_path / "b", reward, dataset=ordered))
    assert sorted(shuffled) == sorted(kept) and shuffled != kept


def test_dr_grpo_normalizer_divides_the_token_sum_by_the_constant(tiny_model_dir, tmp_path):
    # TRL 1.16 divides the Dr. GRPO token sum by rows x max_completion_length; the study used 1,024.
    reward = ScriptedReward([[1.0, 0.0, 2.0, -1.5]])
    trainer = _trainer(
        tiny_model_dir, tmp_path / "run", reward, loss_type="dr_grpo", max_completion_length=6, dr_grpo_normalizer=1024
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    data = _dataset(2)
    batch = trainer._generate_and_score_completions([data[0], data[0], data[1], data[1]])
    batch["advantages"] = torch.tensor([1.0, 0.5, -0.25, 2.0])  # constructed: a non-zero token sum
    batch["completion_mask"][0, 3:] = 0  # a shorter completion: only its tokens count
    # on-policy, beta 0: per-token loss = -advantage (ratio 1), so the token sum is -Σ advantage x length
    token_sum = -(batch["advantages"] * batch["completion_mask"].sum(dim=1)).sum()
    assert token_sum.abs().item() > 0
    loss = trainer._compute_loss(trainer.model, batch)
    assert loss.item() == pytest.approx(token_sum.item() / (4 * 1024), rel=1e-5)
    assert trainer.max_completion_length == 6  # generation keeps its own cap
    trainer.dr_grpo_normalizer = None
    assert trainer._compute_loss(trainer.model, batch).item() == pytest.approx(token_sum.item() / (4 * 6), rel=1e-5)


def test_dr_grpo_normalizer_needs_the_dr_grpo_loss(tiny_model_dir, tmp_path):
    with pytest.raises(SamplingConfigError, match="dr_grpo"):
        _trainer(tiny_model_dir, tmp_path / "run", ScriptedReward([[0.0] * 4]), dr_grpo_normalizer=1024)
