"""KL-coefficient schedules for GRPO (REFERENCE A): constant β, or cosine decay β_t = β·½(1+cos(πt/T)).

TRL 1.16's GRPOTrainer reads ``self.beta`` both when it scores a batch (reference log-probs are computed
only while ``beta != 0``) and in ``compute_loss`` (the KL term is added only while ``beta != 0``), so
setting ``trainer.beta`` at the start of each optimizer step changes the loss. The reference model is
created at init only when β > 0 (or not at all with a PEFT policy, whose adapter is switched off
instead): a decaying schedule therefore needs β₀ > 0, and since β only falls, a batch scored with
β = 0 is never trained with β > 0.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

__all__ = ["KL_SCHEDULES", "CosineKLCallback", "cosine_beta"]

KL_SCHEDULES = ("constant", "cosine")


def cosine_beta(beta: float, step: int, total: int) -> float:
    """β·½(1+cos(π·step/total)), with ``step`` clipped to [0, total]: β at 0, β/2 halfway, 0 at the end."""
    if total <= 0:
        return beta
    t = min(max(step, 0), total)
    return beta * 0.5 * (1.0 + math.cos(math.pi * t / total))


class CosineKLCallback(TrainerCallback):
    """Sets ``trainer.beta`` to :func:`cosine_beta` at every step begin (T = the run's ``max_steps``)
    and adds the current value to the logs as ``kl_beta``.

    Bind it to the trainer after construction: ``trainer.add_callback(cb); cb.trainer = trainer``
    (:meth:`attach` does both).
    """

    def __init__(self, beta: float):
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta0 = beta
        self.trainer: Any = None
        self.current = beta

    def attach(self, trainer: Any) -> CosineKLCallback:
        """Register with ``trainer`` and remember it."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def _update(self, state: Any) -> None:
        self.current = cosine_beta(self.beta0, state.global_step, state.max_steps)
        if self.trainer is not None:
            self.trainer.beta = self.current

    def on_train_begin(self, args, state, control, **kwargs):
        self._update(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self._update(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            logs["kl_beta"] = self.current
        if state.log_history:
            state.log_history[-1].setdefault("kl_beta", self.current)
