"""GRPO with dynamic resampling of degenerate groups and DAPO-style dynamic filtering (TRL 1.16).

:class:`ClinrlGRPOTrainer` is TRL's ``GRPOTrainer`` plus one keyword, ``sampling=SamplingConfig(...)``:

- ``neutral`` / ``positive`` (REFERENCE A, "dynamic resampling"): after a generation batch is generated
  and scored, every group whose rewards are all equal (``positive``: or that has no reward > 0) is
  regenerated — that prompt's ``G`` completions — at a temperature drawn from ``temperatures``, its
  rewards are **re-computed and re-checked**, and this repeats until the group qualifies or has had
  ``max_retries`` regenerations (then its last attempt is kept). The original implementation never
  re-checked the regenerated rewards; here every round re-scores and only still-degenerate groups go on.
- ``filter`` (DAPO dynamic sampling): zero-variance groups are dropped from the loss.

Hook: only ``_generate`` (the generation of one generation batch) is wrapped; the rest of
``_generate_and_score_completions`` — tensors, old/ref log-probs, advantages — runs unchanged on the
final completions. Rewards computed during resampling are handed to TRL's own ``_calculate_rewards``
call (a cache keyed on the completions list), so the final batch is not scored twice.

Filtering by masking, not oversampling: TRL 1.16 generates a fixed-size generation batch, splits it
evenly into ``steps_per_generation`` micro-batches and gathers equal-shaped tensors across processes,
so dropping rows or pulling extra prompts would need a second dataloader pull and ~1/kept-share more
generation. A zero-variance group already has zero advantage; it only adds KL gradient and dilutes
the loss normaliser. So ``filter`` zeroes those rows' advantages and their loss mask (through
``tool_mask``, which TRL multiplies into the completion mask; attention is untouched) and recomputes
``num_items_in_batch``. Zero extra generation; for the token-normalised losses (``dapo``, ``bnpo``,
``cispo``) this is exactly "train on the informative groups only". ``grpo``/``dr_grpo`` still divide by
the number of rows (masked rows count as zero), so their step is scaled by the kept share. The
effective batch shrinks in steps with many degenerate groups, where DAPO would keep it full (a batch
with no informative group gives a zero-gradient step).

Temperature: regenerations change only the *sampling* temperature (transformers ``generation_config``
and ``generation_kwargs``, or vLLM's sampling parameters); log-probabilities in the loss use the
trainer's ``temperature`` as usual, as in the study. With vLLM importance-sampling correction, the
ratio sees the temperature mismatch and truncates/masks accordingly.

Distributed: rewards are gathered, so every process sees every group and runs the same rounds;
each regenerates its own rows of the still-degenerate groups, padded with copies of its rows (results
discarded) to the largest count across processes, so every collective inside generation
(ZeRO-3/FSDP parameter gathers, TRL's metric gathers) is called equally often with equal shapes.
Limitation: vLLM *server* mode de-duplicates prompts as ``all_prompts[::G]``, so there each process's
batch must hold whole groups (``per_device_train_batch_size * steps_per_generation`` a multiple of
``num_generations``); the trainer refuses other shapes. Resampling runs only in training (never eval).
The temperature generator is not checkpointed: a resumed run draws a fresh (seeded) sequence.

Metrics (TRL's logs, averaged per logging step): ``resample/{frac_degenerate_initial, groups_resampled,
groups_fixed, groups_still_degenerate, rounds, attempts_mean, attempts_max, extra_completions,
extra_tokens, extra_cost_ratio, temperature_mean}`` and ``filter/{kept_groups_frac, dropped_groups}``.
TRL's ``completions/*`` length metrics describe the first-attempt generation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from trl import GRPOTrainer

from clinrl.drg.train.groups import TemperaturePicker, degenerate_groups, expand_groups, resample_until
from clinrl.errors import ClinrlError

__all__ = ["MODES", "RESAMPLE_MODES", "ClinrlGRPOTrainer", "SamplingConfig", "SamplingConfigError"]

MODES = ("off", "neutral", "positive", "filter")
RESAMPLE_MODES = ("neutral", "positive")


class SamplingConfigError(ClinrlError, ValueError):
    """An invalid :class:`SamplingConfig` value."""


@dataclass
class SamplingConfig:
    """Group-level sampling enhancements for :class:`ClinrlGRPOTrainer`.

    ``mode``: off | neutral | positive | filter. ``max_retries``: N_max regenerations per group.
    ``temperatures``: the set retries draw from, by ``temperature_schedule`` (random: seeded draw,
    ``seed`` defaults to the run's seed; cycle: in order). ``positive_threshold``: ``positive`` needs a
    reward above it. ``atol``: rewards closer than this count as equal. ``drop_unresolved``: also mask
    groups still degenerate after the cap out of the loss. ``log_metrics``: add the metrics to TRL's
    logs; ``log_path``: append one JSON line per generation batch (counts only, no text).
    """

    mode: Literal["off", "neutral", "positive", "filter"] = "off"
    max_retries: int = 12
    temperatures: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
    temperature_schedule: Literal["random", "cycle"] = "random"
    seed: int | None = None
    positive_threshold: float = 0.0
    atol: float = 1e-6
    drop_unresolved: bool = False
    log_metrics: bool = True
    log_path: str | None = None

    def __post_init__(self) -> None:
        self.temperatures = tuple(float(t) for t in self.temperatures)
        if self.mode not in MODES:
            raise SamplingConfigError(f"sampling mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise SamplingConfigError(f"max_retries must be a non-negative integer, got {self.max_retries!r}")
        if not self.temperatures or any(not t > 0 for t in self.temperatures):
            raise SamplingConfigError(f"temperatures must be positive and non-empty, got {self.temperatures}")
        if self.temperature_schedule not in ("random", "cycle"):
            raise SamplingConfigError(
                f"temperature_schedule must be random or cycle, got {self.temperature_schedule!r}"
            )
        if not self.atol >= 0:
            raise SamplingConfigError(f"atol must be >= 0, got {self.atol}")

    @property
    def resamples(self) -> bool:
        return self.mode in RESAMPLE_MODES

    @property
    def masks(self) -> bool:
        return self.mode == "filter" or (self.resamples and self.drop_unresolved)


# what GRPOTrainer._generate returns, in order
_GENERATE_OUTPUT = (
    "prompt_ids",
    "completion_ids",
    "tool_mask",
    "completions",
    "logprobs",
    "extra_fields",
    "images",
    "tool_images",
)


def _rows_of(fields: dict[str, Any], n: int) -> dict[str, Any]:
    """``fields`` with every per-row sequence (length ``n``) copied to a list that rows can be written into."""
    return {
        key: list(value) if isinstance(value, (list, tuple)) and len(value) == n else value
        for key, value in fields.items()
    }


def _splice(target: dict[str, Any], new: dict[str, Any], rows: list[int], n: int) -> None:
    """Write ``new``'s first ``len(rows)`` rows into ``target``'s per-row lists (length ``n``) at ``rows``."""
    for key, values in new.items():
        if isinstance(target.get(key), list) and len(target[key]) == n and values is not None:
            for j, i in enumerate(rows):
                target[key][i] = values[j]


def _check_dr_grpo_normalizer(value: int | None, loss_type: str) -> int | None:
    """``value`` if usable: a positive integer, and only with ``loss_type: dr_grpo`` (elsewhere it
    would silently do nothing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SamplingConfigError(f"dr_grpo_normalizer must be a positive integer, got {value!r}")
    if loss_type != "dr_grpo":
        raise SamplingConfigError(f"dr_grpo_normalizer needs training.loss_type dr_grpo, not {loss_type!r}")
    return value


class ClinrlGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with dynamic resampling / filtering (``sampling``), an optional fixed
    prompt order (``preserve_order=True``, e.g. an easy→hard curriculum; same as
    ``GRPOConfig(shuffle_dataset=False)``: TRL's RepeatSampler without shuffling, each prompt still
    repeated ``num_generations`` times) and an optional Dr. GRPO loss constant (``dr_grpo_normalizer``,
    the study's 1,024, instead of TRL's ``max_completion_length``)."""

    def __init__(
        self,
        *args: Any,
        sampling: SamplingConfig | None = None,
        preserve_order: bool = False,
        dr_grpo_normalizer: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.dr_grpo_normalizer = _check_dr_grpo_normalizer(dr_grpo_normalizer, self.loss_type)
        self.sampling = sampling or SamplingConfig()
        if preserve_order:
            self.shuffle_dataset = False
        seed = self.sampling.seed if self.sampling.seed is not None else self.args.seed
        self._temperature_picker = TemperaturePicker(
            self.sampling.temperatures, self.sampling.temperature_schedule, seed
        )
        self._clinrl_inputs: list[dict[str, Any]] | None = None
        self._clinrl_cache: tuple[list, torch.Tensor] | None = None
        self._clinrl_last_rewards: torch.Tensor | None = None
        self._check_layout()

    # ------------------------------------------------------------------ setup checks

    def _check_layout(self) -> None:
        if not self.sampling.resamples or not self.use_vllm or self.accelerator.num_processes == 1:
            return
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if self.vllm_mode == "server" and local % self.num_generations:
            raise SamplingConfigError(
                "dynamic resampling with vLLM server mode needs whole groups per process: "
                f"per_device_train_batch_size * steps_per_generation ({local}) must be a multiple of "
                f"num_generations ({self.num_generations})"
            )

    # ------------------------------------------------------------------ hooks

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL's loss; with ``dr_grpo_normalizer`` the ``dr_grpo`` token sum is divided by that constant.

        TRL 1.16 divides the Dr. GRPO token sum by ``batch rows × self.max_completion_length`` and reads
        that attribute nowhere else in the loss, so it is swapped for the constant while the loss is
        computed and restored at once: generation keeps its length cap, and the loss stays TRL's own
        code (masking, KL, importance weights and the accumulation scaling unchanged).
        """
        if self.dr_grpo_normalizer is None:
            return super()._compute_loss(model, inputs)
        generation_length = self.max_completion_length
        self.max_completion_length = self.dr_grpo_normalizer
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self.max_completion_length = generation_length

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._clinrl_inputs = inputs
        self._clinrl_last_rewards = None
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._clinrl_inputs = None
            self._clinrl_cache = None
        if self.model.training and self.sampling.masks and self._clinrl_last_rewards is not None:
            self._mask_groups(output)
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        cache, self._clinrl_cache = self._clinrl_cache, None
        if cache is not None and cache[0] is completions:
            rewards = cache[1]
        else:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._clinrl_last_rewards = rewards
        return rewards

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        if not (self.model.training and self.sampling.resamples and self._clinrl_inputs is not None):
            return out
        return self._resample(prompts, out)

    # ------------------------------------------------------------------ resampling

    def _total_rewards(self, rewards_per_func: torch.Tensor) -> list[float]:
        """TRL's combined reward per row (weighted sum; NaN where every function returned None)."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        total = (rewards_per_func * weights).nansum(dim=1)
        total[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return total.tolist()

    @contextmanager
    def _sampling_temperature(self, temperature: float) -> Iterator[None]:
        """Temporarily sample at ``temperature`` on whichever generation backend is in use."""
        targets: list[tuple[Any, str]] = []
        if getattr(self, "generation_config", None) is not None:
            targets.append((self.generation_config, "temperature"))
        if getattr(self, "vllm_generation", None) is not None:
            targets.append((self.vllm_generation, "temperature"))
        saved = [(obj, name, getattr(obj, name)) for obj, name in targets]
        kwargs = getattr(self, "generation_kwargs", None)
        saved_kwarg = kwargs.get("temperature") if isinstance(kwargs, dict) else None
        try:
            for obj, name in targets:
                setattr(obj, name, temperature)
            if isinstance(kwargs, dict):
                kwargs["temperature"] = temperature
            yield
        finally:
            for obj, name, value in saved:
                setattr(obj, name, value)
            if isinstance(kwargs, dict):
                kwargs["temperature"] = saved_kwarg

    def _padding_rows(self, local: list[int], target: int, n_local: int) -> list[int]:
        """Rows to add so this process generates ``target`` rows (whole groups when groups align)."""
        G = self.num_generations
        pool = range(G) if n_local % G == 0 else range(n_local)  # aligned: copies of the first local group
        return [pool[i % len(pool)] for i in range(target - len(local))]

    def _resample(self, prompts: list, out: tuple) -> tuple:
        G, mode = self.num_generations, self.sampling.mode
        n_local = len(prompts)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        offset = rank * n_local
        inputs = self._clinrl_inputs
        state = _rows_of(dict(zip(_GENERATE_OUTPUT, out)), n_local)
        state["extra_fields"] = _rows_of(dict(state["extra_fields"]), n_local)
        pending_logs = {k: list(v) for k, v in self._pending_extra_logs.items()}
        pending_metrics = {k: list(v) for k, v in self._pending_metrics.items()}

        def score() -> torch.Tensor:
            # only the last scoring's reward-function logs may reach TRL's tables, as in a normal step
            self._pending_extra_logs.clear()
            self._pending_extra_logs.update({k: list(v) for k, v in pending_logs.items()})
            self._pending_metrics.clear()
            self._pending_metrics.update({k: list(v) for k, v in pending_metrics.items()})
            return GRPOTrainer._calculate_rewards(self, inputs, prompts, state["completions"], state["completion_ids"])

        rewards_per_func = score()
        metrics = self._metrics["train"]
        snapshot = {k: len(v) for k, v in metrics.items()}
        extra_tokens = 0

        def regenerate(groups: list[int], temperature: float) -> list[list[float]]:
            nonlocal rewards_per_func, extra_tokens
            rows = {g * G + i for g in groups for i in range(G)}
            local = [r - offset for r in sorted(rows) if offset <= r < offset + n_local]
            counts = [sum(1 for r in rows if q * n_local <= r < (q + 1) * n_local) for q in range(world)]
            batch = local + self._padding_rows(local, max(counts), n_local)
            with self._sampling_temperature(temperature):
                new = GRPOTrainer._generate(self, [prompts[i] for i in batch])
            new = dict(zip(_GENERATE_OUTPUT, new))
            _splice(state, new, local, n_local)
            _splice(state["extra_fields"], new["extra_fields"], local, n_local)
            extra_tokens += sum(len(new["completion_ids"][j]) for j in range(len(local)))
            rewards_per_func = score()
            total = self._total_rewards(rewards_per_func)
            return [total[g * G : (g + 1) * G] for g in groups]

        result = resample_until(
            self._total_rewards(rewards_per_func),
            G,
            mode,
            regenerate,
            max_retries=self.sampling.max_retries,
            temperature=self._temperature_picker,
            atol=self.sampling.atol,
            positive_threshold=self.sampling.positive_threshold,
        )
        # TRL's completion metrics keep describing the first attempt; retries are counted below
        for key in list(metrics):
            if key not in snapshot:
                del metrics[key]
            else:
                del metrics[key][snapshot[key] :]
        metrics["num_tokens"] = [self.state.num_input_tokens_seen]
        if world > 1:
            count = torch.tensor([extra_tokens], device=self.accelerator.device)
            extra_tokens = int(self.accelerator.gather(count).sum())
        self._log_resampling(result, extra_tokens)
        if not state["extra_fields"]:  # a rollout_func's extra fields join the inputs later: score again
            self._clinrl_cache = (state["completions"], rewards_per_func)
        return tuple(state[name] for name in _GENERATE_OUTPUT)

    def _log_resampling(self, result, extra_tokens: int) -> None:
        values = result.metrics()
        values["extra_tokens"] = float(extra_tokens)
        values["temperature_mean"] = sum(result.temperatures) / len(result.temperatures) if result.temperatures else 0.0
        if self.sampling.log_metrics:
            for name in (
                "frac_degenerate_initial",
                "groups_resampled",
                "groups_fixed",
                "groups_still_degenerate",
                "rounds",
                "attempts_mean",
                "attempts_max",
                "extra_completions",
                "extra_tokens",
                "extra_cost_ratio",
                "temperature_mean",
            ):
                self._metrics["train"][f"resample/{name}"].append(values[name])
        if self.sampling.log_path and self.accelerator.is_main_process:
            record = {
                "step": self.state.global_step,
                "mode": self.sampling.mode,
                "retries": result.retries,
                "temperatures": result.temperatures,
                "still_degenerate": result.still_degenerate,
                **{k: values[k] for k in ("groups", "groups_resampled", "groups_fixed", "extra_completions")},
                "extra_tokens": extra_tokens,
            }
            path = Path(self.sampling.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ filtering

    def _mask_groups(self, output: dict[str, Any]) -> None:
        """Drop degenerate groups from the loss: zero advantages and loss mask, recount tokens."""
        criterion = self.sampling.mode  # filter: zero variance; resample modes: their own rule
        flags = degenerate_groups(
            self._total_rewards(self._clinrl_last_rewards),
            self.num_generations,
            criterion,
            atol=self.sampling.atol,
            positive_threshold=self.sampling.positive_threshold,
        )
        n_local = output["advantages"].shape[0]
        start = self.accelerator.process_index * n_local
        rows = expand_groups(flags, self.num_generations)[start : start + n_local]
        drop = torch.tensor(rows, dtype=torch.bool, device=output["advantages"].device)
        output["advantages"] = output["advantages"].masked_fill(drop, 0.0)
        completion_mask = output["completion_mask"]
        loss_mask = output.get("tool_mask")
        if loss_mask is None:
            loss_mask = torch.ones_like(completion_mask)
        loss_mask = loss_mask * (~drop).unsqueeze(1).to(loss_mask.dtype)
        output["tool_mask"] = loss_mask
        output["num_items_in_batch"] = self.accelerator.gather((completion_mask * loss_mask).sum()).sum()
        if self.sampling.log_metrics:
            kept = len(flags) - sum(flags)
            self._metrics["train"]["filter/kept_groups_frac"].append(kept / max(len(flags), 1))
            self._metrics["train"]["filter/dropped_groups"].append(float(sum(flags)))
