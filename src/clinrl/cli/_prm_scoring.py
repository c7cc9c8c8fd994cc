"""The PRM scoring options, defined once for every command that loads a PRM to score notes (``prm score``,
``prm best-of-n``, ``prm eval-selection``, ``prm eval-preference``).

A command declares a parameter ``scoring: ScoringOptions`` and is decorated with :func:`scoring_options`;
the decorator replaces that parameter with the options below (how P(+) is read, the batch size, and the
vLLM engine's settings) and hands the command one :class:`ScoringOptions`, whose :meth:`~ScoringOptions.load`
builds the scorer and :meth:`~ScoringOptions.scorer` lends it for a ``with`` block. ``--model`` is not part of the block: it is required in some commands and optional (only
for ``--scorer prm/orm``) in others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import typer

from clinrl.cli._common import Dtype, PRMBackend, option_block

__all__ = ["Context", "Probability", "ScoringOptions", "scoring_options"]

Probability = Literal["full", "binary"]
Context = Literal["placeholder", "plus", "greedy"]


@dataclass(frozen=True)
class ScoringOptions:
    """How a PRM scores: ``probability``/``context``/``batch_size`` (:class:`clinrl.prm.score.ScoreConfig`),
    ``backend``, and the vLLM engine's settings (ignored by the transformers backend)."""

    probability: Probability = "full"
    context: Context = "placeholder"
    batch_size: int = 8
    backend: PRMBackend = "transformers"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    dtype: Dtype = "auto"
    enforce_eager: bool = False
    max_model_len: Optional[int] = None

    def engine(self) -> dict[str, Any]:
        """The vLLM engine keywords (``None`` values left to vLLM's defaults)."""
        engine = {"tensor_parallel_size": self.tensor_parallel_size, "dtype": self.dtype,
                  "gpu_memory_utilization": self.gpu_memory_utilization, "enforce_eager": self.enforce_eager,
                  "max_model_len": self.max_model_len}  # fmt: skip
        return {k: v for k, v in engine.items() if v is not None}

    def load(self, model: Path, *, fast: bool = True) -> Any:
        """The reference scorer (transformers) or :class:`clinrl.prm.vllm_score.VLLMPRMScorer`, or for a judge
        folder its :class:`clinrl.prm.judge.JudgeScorer` (these options do not apply to it); ``fast=False``
        is the one-note-at-a-time reference procedure (``prm score --no-fast``). Commands use :meth:`scorer`, which also stops it."""
        from clinrl.prm.judge import is_judge_folder
        from clinrl.prm.score import ScoreConfig, load_scorer  # torch/transformers: loaded only to score

        config = ScoreConfig(self.probability, self.context, fast=fast, batch_size=self.batch_size)
        if self.backend == "transformers" or is_judge_folder(model):  # a judge folder holds its own settings
            return load_scorer(model, config)
        from clinrl.prm.vllm_score import VLLMPRMScorer  # vllm: only with --backend vllm

        return VLLMPRMScorer(model, config, **self.engine())

    @contextlib.contextmanager
    def scorer(self, model: Optional[Path], *, fast: bool = True) -> Iterator[Any]:
        """The scorer of ``model`` (None without a model: a reference rule scores) for a ``with`` block; a vLLM
        engine is stopped at its end, also after an error, so that its worker processes do not outlive the
        command (a transformers scorer has nothing to stop)."""
        loaded = self.load(model, fast=fast) if model is not None else None
        try:
            yield loaded
        finally:
            close = getattr(loaded, "close", None)
            if close is not None:
                close()


# name -> (annotation, typer option), shown in their own help panel.
_PANEL = "PRM scoring"
_OPTIONS: dict[str, tuple[Any, Any]] = {
    "probability": (Probability, typer.Option("full", "--probability", help="full: softmax over the vocabulary (the study); binary: over {+, -} only.", rich_help_panel=_PANEL)),
    "context": (Context, typer.Option("placeholder", "--context", help="Label slots at inference: placeholder (the study), plus, or greedy (feed predicted labels).", rich_help_panel=_PANEL)),
    "batch_size": (int, typer.Option(8, "--batch-size", min=1, help="Note continuations per forward pass.", rich_help_panel=_PANEL)),
    "backend": (PRMBackend, typer.Option("transformers", "--backend", help="vllm: causal-LM PRMs on GPUs, prefix-cached, same P(+).", rich_help_panel=_PANEL)),
    "tensor_parallel_size": (int, typer.Option(1, "--tensor-parallel-size", min=1, help="vllm: GPUs one engine spans.", rich_help_panel=_PANEL)),
    "gpu_memory_utilization": (float, typer.Option(0.85, "--gpu-memory-utilization", min=0.01, max=1.0, help="vllm: memory share it takes.", rich_help_panel=_PANEL)),
    "dtype": (Dtype, typer.Option("auto", "--dtype", help="vllm: weights' dtype.", rich_help_panel=_PANEL)),
    "enforce_eager": (bool, typer.Option(False, "--enforce-eager", help="vllm: no graph capture (faster start, slower scoring).", rich_help_panel=_PANEL)),
    "max_model_len": (Optional[int], typer.Option(None, "--max-model-len", min=16, help="vllm: context length (default: the model's).", rich_help_panel=_PANEL)),
}  # fmt: skip


def scoring_options(func: Callable[..., Any]) -> Any:
    """Give ``func`` the PRM scoring options in place of its ``scoring: ScoringOptions`` parameter."""
    return option_block(func, "scoring", _OPTIONS, ScoringOptions)
