"""``clinrl notes grpo``: GRPO for Assessment & Plan generation with a PRM as the reward (TRL 1.16).

The recipe (:class:`NotesGRPOConfig`) names the policy, the PRM, the gold-note file whose dialogues are the
prompts (split train/held-out by case, :mod:`clinrl.notes.dialogues`; only the train side is used), the
rewards with their weights, the PRM aggregation and the guards (:mod:`clinrl.notes.rewards`). Everything
TRL handles — G, loss type, β, lengths, vLLM — goes to ``trl.GRPOConfig`` through ``training:``, as in
:mod:`clinrl.drg.train.grpo`. Besides the model, ``output_dir`` receives ``dialogue_split.json`` (the split report
and the case ids on each side, no text) and ``grpo_summary.json`` (with the PRM reward's counters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrl.io import write_json_atomic
from clinrl.notes.dialogues import load_dialogues, rl_rows, split_dialogues
from clinrl.notes.rewards import REWARDS, GuardConfig, build_reward
from clinrl.prm.score import AGGREGATES, ScoreConfig
from clinrl.training import GRPORecipe, grpo_inputs, load_trainer_config, train_and_save
from clinrl.training import run_from_cli as _run_from_cli

__all__ = ["NotesGRPOConfig", "build_notes_dataset", "build_rewards", "load_notes_grpo_config", "train_notes_grpo"]

SPLIT_FILE = "dialogue_split.json"


@dataclass(kw_only=True)
class NotesGRPOConfig(GRPORecipe):
    """A note-generation GRPO recipe: the common GRPO fields (:class:`clinrl.training.GRPORecipe`: rewards,
    weights, vLLM; ``training`` goes to ``trl.GRPOConfig``) plus the PRM, the dialogue split and guards."""

    prm: str
    name: str = "notes_grpo"
    data: str = "demo"  # gold-note file (PRM-Clinic JSON); "demo" = the bundled one
    held_out_fraction: float = 0.1
    split_seed: int = 0
    max_dialogue_tokens: int | None = 2048  # the policy's prompt; rewards see the whole dialogue
    rewards: list[str] = field(default_factory=lambda: ["prm", "format", "completeness", "guard"])
    aggregate: str | None = None  # PRM note score: sum_log | mean | min | last (None: the PRM's own default)
    prm_fast: bool = True  # shared-prefix fast path (causal-LM PRMs)
    prm_batch_size: int = 8
    guards: GuardConfig = field(default_factory=GuardConfig)

    def known_rewards(self) -> tuple[str, ...]:
        return REWARDS

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.rewards)) != len(self.rewards):  # each is a named column of the logs (prm, guard …)
            raise ValueError("rewards: each reward may appear once")
        if self.aggregate is not None and self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")


def load_notes_grpo_config(path: str | Path, overrides: Any = ()) -> NotesGRPOConfig:
    """Load a notes GRPO recipe with ``overrides`` (``--key value`` strings or a dotted-key mapping)."""
    return load_trainer_config(NotesGRPOConfig, path, overrides)


def build_notes_dataset(cfg: NotesGRPOConfig, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    """The training dialogues as a ``datasets.Dataset`` (:func:`clinrl.notes.dialogues.rl_rows`) and the split
    report (plus ``rows`` and ``dialogues_cut``) with the case ids of each side."""
    from datasets import Dataset

    cases, skipped = load_dialogues(cfg.data)
    split = split_dialogues(cases, cfg.held_out_fraction, cfg.split_seed, skipped)
    train = split.train[: cfg.limit] if cfg.limit is not None else split.train
    rows, cut = rl_rows(train, tokenizer, cfg.max_dialogue_tokens)
    report = {
        **split.report, "rows": len(rows), "dialogues_cut": cut,
        "train_case_ids": [c.case_id for c in split.train], "held_out_case_ids": [c.case_id for c in split.held_out],
    }  # fmt: skip
    return Dataset.from_list(rows), report


def build_rewards(cfg: NotesGRPOConfig) -> list:
    """The reward callables in recipe order; the PRM is loaded here, once."""
    score = ScoreConfig(fast=cfg.prm_fast, batch_size=cfg.prm_batch_size)
    return [
        build_reward(name, prm=cfg.prm, aggregate=cfg.aggregate, guards=cfg.guards, score_config=score)
        for name in cfg.rewards
    ]


def train_notes_grpo(
    cfg: NotesGRPOConfig, *, resume: bool = False, model: Any = None, callbacks: Sequence[Any] = ()
) -> dict[str, Any]:
    """Run GRPO; save the policy, tokenizer, recipe, split report and summary to ``output_dir``.

    ``model`` (an instance) replaces ``cfg.model`` as the policy; ``callbacks`` are added to the trainer.
    """
    from trl import GRPOTrainer

    run = grpo_inputs(cfg, resume, build_notes_dataset)  # first: a refused hub push fails before the PRM loads
    rewards = build_rewards(cfg)
    with cfg.rollout_engine(run.args):
        trainer = GRPOTrainer(
            model=model if model is not None else cfg.model, reward_funcs=rewards, args=run.args,
            train_dataset=run.dataset, processing_class=run.tokenizer, peft_config=cfg.lora.to_peft(),
            callbacks=list(callbacks) or None,
        )  # fmt: skip
    if trainer.is_world_process_zero():
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(cfg.output_dir) / SPLIT_FILE, run.report)
    prm = next((r for r in rewards if getattr(r, "__name__", "") == "prm"), None)
    fields = {k: run.report[k] for k in ("rows", "dialogues_cut", "train", "held_out")}
    return train_and_save(
        trainer, cfg, run.tokenizer, run.checkpoint, "grpo_summary.json", fields,
        lambda: {"prm_reward": dict(prm.stats) if prm is not None else None,
                 "aggregate": prm.aggregate if prm is not None else None},
    )  # fmt: skip


def run_from_cli(
    config: Path, overrides: Sequence[str], resume: bool, *, workdir: Path | None = None, report_to: str | None = None
) -> dict[str, Any]:
    """Entry for ``clinrl notes grpo``: check, load, train (:func:`clinrl.training.run_from_cli`)."""
    return _run_from_cli(
        NotesGRPOConfig, train_notes_grpo, config, overrides, resume, workdir=workdir, report_to=report_to
    )
