"""``clinrl drg grpo``: GRPO for DRG coding on TRL 1.16 (REFERENCE A, "GRPO" and the ablations).

The recipe (:class:`DRGGRPOConfig`) names the policy, the RL split, our rewards and their weights, the
KL schedule, LoRA, dynamic resampling and the difficulty curriculum; everything TRL itself handles —
loss type (grpo / dapo / dr_grpo / bnpo), advantage scaling (``scale_rewards: none`` = Dr. GRPO
advantage), β, G, lengths, vLLM — goes to ``GRPOConfig`` through the recipe's ``training:`` mapping. TRL
1.16's defaults differ from the study's TRL 0.15 (loss ``dapo`` not ``grpo``, β 0 not 0.04), so the
recipes set those explicitly. TRL 1.16 has no prompt-length cap, so prompts are cut here (the course,
never the instructions) to ``max_prompt_tokens``.

Dr. GRPO loss: TRL 1.16 divides the token sum by ``max_completion_length`` (10,240 in the recipes);
the study divided by the constant 1,024. ``dr_grpo_normalizer: 1024`` (top level of the recipe) makes
:class:`~clinrl.drg.train.sampling.ClinrlGRPOTrainer` divide by that constant instead, generation length
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clinrl.drg.ontology import load_ontology
from clinrl.drg.prompts import to_rl_rows
from clinrl.drg.rewards import available_rewards, get_reward
from clinrl.drg.train.difficulty import apply_curriculum, load_difficulty
from clinrl.errors import ClinrlError
from clinrl.training import GRPORecipe, grpo_inputs, load_trainer_config, read_split, train_and_save
from clinrl.training import run_from_cli as _run_from_cli

__all__ = [
    "CURRICULA",
    "SAMPLING_MODES",
    "DRGGRPOConfig",
    "build_rewards",
    "build_rl_dataset",
    "load_grpo_config",
    "train_grpo",
]

SAMPLING_MODES = ("off", "neutral", "positive", "filter")
CURRICULA = ("none", "drop_easy", "drop_hard", "drop_both", "easy_to_hard")


@dataclass(kw_only=True)
class DRGGRPOConfig(GRPORecipe):
    """A GRPO recipe: the common GRPO fields (:class:`clinrl.training.GRPORecipe`: rewards, weights, vLLM;
    ``training`` goes to ``trl.GRPOConfig``) plus the KL schedule, resampling and curriculum."""

    data: str
    name: str = "grpo"
    max_prompt_tokens: int | None = 4096
    truncation: Literal["head", "tail", "head_tail"] = "head"
    rewards: list[str] = field(default_factory=lambda: ["format", "accuracy_dense"])
    cot_first_tokens: int = 50
    kl_schedule: Literal["constant", "cosine"] = "constant"
    sampling_mode: Literal["off", "neutral", "positive", "filter"] = "off"
    max_resample_retries: int = 12
    resample_temperatures: list[float] = field(default_factory=lambda: [0.7, 0.8, 0.9, 1.0])
    curriculum: Literal["none", "drop_easy", "drop_hard", "drop_both", "easy_to_hard"] = "none"
    difficulty_file: str | None = None
    dr_grpo_normalizer: int | None = None  # the Dr. GRPO loss constant (study: 1024); None = TRL's

    def known_rewards(self) -> list[str]:
        return available_rewards()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.curriculum != "none" and not self.difficulty_file:
            raise ValueError(f"curriculum {self.curriculum!r} needs difficulty_file (from `clinrl drg difficulty`)")
        if self.kl_schedule == "cosine" and not float(self.training.get("beta", 0.0)) > 0:
            raise ValueError("kl_schedule cosine needs training.beta > 0 (the schedule decays from it)")
        if self.dr_grpo_normalizer is not None and self.training.get("loss_type") != "dr_grpo":
            raise ValueError("dr_grpo_normalizer needs training.loss_type: dr_grpo (it sets that loss's constant)")
        if self.dr_grpo_normalizer is not None and not self.dr_grpo_normalizer >= 1:
            raise ValueError(f"dr_grpo_normalizer must be at least 1, got {self.dr_grpo_normalizer}")
        if self.max_resample_retries < 0:
            raise ValueError("max_resample_retries must be >= 0")


def load_grpo_config(path: str | Path, overrides: Any = ()) -> DRGGRPOConfig:
    """Load a GRPO recipe with ``overrides`` (``--key value`` strings or a dotted-key mapping)."""
    return load_trainer_config(DRGGRPOConfig, path, overrides)


def build_rl_dataset(cfg: DRGGRPOConfig, tokenizer: Any) -> tuple[Any, dict[str, Any] | None]:
    """The RL split as a ``datasets.Dataset`` of ``{"prompt": messages, "solution", "hadm_id"?}``,
    prompts cut to ``max_prompt_tokens`` and the curriculum applied; plus the curriculum's report
    (counts per difficulty, kept rows; None without a curriculum)."""
    from datasets import Dataset

    frame = read_split(cfg.data, limit=cfg.limit)
    keep = [c for c in ("text", "solution", "hadm_id") if c in frame.columns]
    dataset = Dataset.from_pandas(frame[keep], preserve_index=False)
    dataset = dataset.map(
        lambda ex: to_rl_rows(
            ex, tokenizer=tokenizer, max_prompt_tokens=cfg.max_prompt_tokens, strategy=cfg.truncation
        ),
        remove_columns=["text"],
        desc="prompts",
    )
    if cfg.curriculum != "none":
        return apply_curriculum(dataset, load_difficulty(cfg.difficulty_file), cfg.curriculum)
    return dataset, None


def build_rewards(cfg: DRGGRPOConfig, tokenizer: Any = None) -> list:
    """Our reward callables, in recipe order (one shared ontology)."""

    ontology = load_ontology()
    options = {"cot_first_penalty": {"n_tokens": cfg.cot_first_tokens, "tokenizer": tokenizer}}
    return [get_reward(name, ontology=ontology, **options.get(name, {})) for name in cfg.rewards]


def _trainer(cfg: DRGGRPOConfig, args: Any, dataset: Any, tokenizer: Any, model: Any = None):
    """The trainer: the resampling trainer (``clinrl.drg.train.sampling``) when present, else TRL's."""
    common = dict(
        model=model if model is not None else cfg.model,
        reward_funcs=build_rewards(cfg, tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=cfg.lora.to_peft(),
    )
    try:
        from clinrl.drg.train.sampling import ClinrlGRPOTrainer, SamplingConfig  # lazy: pulls torch and TRL
    except ImportError:
        if cfg.sampling_mode != "off" or cfg.dr_grpo_normalizer is not None:
            raise ClinrlError(
                "sampling_mode and dr_grpo_normalizer need clinrl.drg.train.sampling, which is missing"
            ) from None
        from trl import GRPOTrainer

        return GRPOTrainer(**common)
    sampling = None
    if cfg.sampling_mode != "off":
        sampling = SamplingConfig(
            mode=cfg.sampling_mode, max_retries=cfg.max_resample_retries, temperatures=list(cfg.resample_temperatures)
        )
    return ClinrlGRPOTrainer(
        sampling=sampling,
        preserve_order=cfg.curriculum == "easy_to_hard",
        dr_grpo_normalizer=cfg.dr_grpo_normalizer,
        **common,
    )


def train_grpo(
    cfg: DRGGRPOConfig, *, resume: bool = False, model: Any = None, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """Run GRPO; save the policy, tokenizer and the resolved recipe to ``output_dir``; return a summary.

    ``model`` (an instance) replaces ``cfg.model`` as the policy; ``callbacks`` are added to the trainer.
    """
    from clinrl.drg.train.kl import CosineKLCallback  # lazy: pulls transformers

    # an easy_to_hard curriculum is the dataset's order: TRL must not shuffle it
    forced = {"shuffle_dataset": False} if cfg.curriculum == "easy_to_hard" else {}
    run = grpo_inputs(cfg, resume, build_rl_dataset, **forced)
    with cfg.rollout_engine(run.args):
        trainer = _trainer(cfg, run.args, run.dataset, run.tokenizer, model)
    for callback in callbacks:
        trainer.add_callback(callback)
    kl = CosineKLCallback(run.args.beta).attach(trainer) if cfg.kl_schedule == "cosine" else None
    return train_and_save(
        trainer, cfg, run.tokenizer, run.checkpoint, "grpo_summary.json",
        {"rows": len(run.dataset), "curriculum": run.report},
        lambda: {"final_kl_beta": kl.current if kl else run.args.beta},
    )  # fmt: skip


def run_from_cli(
    config: Path, overrides: Sequence[str], resume: bool, *, workdir: Path | None = None, report_to: str | None = None
) -> dict[str, Any]:
    """Entry for ``clinrl drg grpo``: check, load, train (:func:`clinrl.training.run_from_cli`)."""
    return _run_from_cli(DRGGRPOConfig, train_grpo, config, overrides, resume, workdir=workdir, report_to=report_to)
