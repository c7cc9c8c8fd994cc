"""A CPU-sized DRG workspace: synthetic MIMIC-shaped notes → ``prepare`` → SFT/RL split → a byte-level
BPE tokenizer trained on the notes → a random-init 3-layer, 128-wide Qwen2. Used by the demo, the
learnability benchmark and the ``drg/tiny/*`` recipes (``runs/tiny-drg`` under the root:
``clinrl drg tiny-workspace --workdir ROOT``).

Also :func:`partly_trained_stop`, an SFT callback that stops once a quick dev Pass@1 reaches a target,
so that RL starts from a policy with room to improve (as the study's 1 % cold start does).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrl.drg.eval.evaluate import evaluate_prompts
from clinrl.drg.ontology import load_ontology
from clinrl.drg.prompts import (
    MS_DRG_PRIMER,
    QUESTION,
    SYSTEM_PROMPT,
    build_messages,
    format_completion,
    truncate_course,
)
from clinrl.drg.synth.generate import write_synthetic
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer

__all__ = [
    "TINY_DRG",
    "TinyWorkspace",
    "build_tiny_workspace",
    "grpo_overrides",
    "partly_trained_stop",
    "sft_overrides",
    "tiny_prompts",
]


TINY_DRG = "runs/tiny-drg"  # where the recipes/drg/tiny recipes look, relative to the root (clinrl.config.run_root)


@dataclass(frozen=True)
class TinyWorkspace:
    """Paths of a built workspace."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "prep"

    @property
    def split(self) -> Path:
        return self.root / "split"

    @property
    def model(self) -> Path:
        return self.root / "model"


def build_tiny_workspace(
    out: str | Path,
    *,
    n_notes: int = 2400,
    classes: int = 19,
    seed: int = 0,
    test_size: float = 0.12,
    quiet: bool = True,
) -> TinyWorkspace:
    """Create (idempotently) data, split, tokenizer and random-init model under ``out``."""
    import pandas as pd

    from clinrl.drg.prep.mimic import prepare  # lazy: pulls pandas
    from clinrl.drg.prep.split import SplitConfig, split_prepared  # lazy: pulls pandas

    ws = TinyWorkspace(Path(out))
    if not (ws.split / "rl.parquet").is_file():
        write_synthetic(ws.raw, n_notes, seed=seed, classes=classes, progress=not quiet)
        prepare(
            ws.raw / "discharge.csv.gz",
            ws.raw / "drgcodes.csv.gz",
            ws.prepared,
            test_size=test_size,
            progress=not quiet,
        )
        split_prepared(ws.prepared / "train.parquet", ws.split, SplitConfig(sft_ratio=0.5, seed=seed))
    if not (ws.model / "config.json").is_file():
        train = pd.read_parquet(ws.prepared / "train.parquet", columns=["text", "description"])
        texts = list(train["text"])
        texts += [format_completion(d) for d in train["description"].str.upper().unique()] * 20
        # The fixed instruction texts (system prompt, MS-DRG primer, question) become one token each: the
        # prompt text is unchanged, but a tiny model no longer spends ~200 positions on boilerplate.
        tokenizer = train_tokenizer(
            texts, vocab_size=4096, extra_special_tokens=[SYSTEM_PROMPT, MS_DRG_PRIMER, QUESTION]
        )
        build_tiny_model(
            tokenizer, TinyModelConfig(arch="qwen2", hidden_size=128, num_layers=3, seed=seed), out=ws.model
        )
    return ws


def tiny_prompts(
    parquet: str | Path, tokenizer: Any, max_prompt_tokens: int, *, head: int | None = None, tail: int | None = None
) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Chat prompts (course truncated to fit) and gold descriptions of a prepared/split parquet."""
    import pandas as pd

    frame = pd.read_parquet(parquet)
    gold_col = "solution" if "solution" in frame.columns else "description"
    if head is not None:
        frame = frame.head(head)
    if tail is not None:
        frame = frame.tail(tail)
    onto = load_ontology()
    prompts = [build_messages(truncate_course(t, tokenizer, max_prompt_tokens)) for t in frame["text"]]
    return prompts, [onto.find(d).description for d in frame[gold_col]]


def sft_overrides(
    ws: TinyWorkspace,
    output_dir: str | Path,
    *,
    max_prompt_tokens: int,
    max_steps: int,
    learning_rate: float = 2e-3,
    logging_steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Overrides of the ``tiny/sft`` recipe for a workspace: answer-only SFT, batch 16, constant lr, no saves."""
    return {
        "model": str(ws.model), "data": str(ws.split / "sft.parquet"), "output_dir": str(output_dir),
        "limit": None, "max_prompt_tokens": max_prompt_tokens,
        "training.max_length": max_prompt_tokens + 64, "training.max_steps": max_steps,
        "training.learning_rate": learning_rate, "training.per_device_train_batch_size": 16, "training.save_strategy": "no",
        "training.lr_scheduler_type": "constant", "training.logging_steps": logging_steps, "seed": seed,
    }  # fmt: skip


def grpo_overrides(
    ws: TinyWorkspace,
    policy: str | Path,
    output_dir: str | Path,
    *,
    max_prompt_tokens: int,
    max_steps: int,
    batch_size: int = 16,
    completion_tokens: int = 48,
    learning_rate: float = 3e-5,
    temperature: float = 0.8,
    logging_steps: int = 25,
    seed: int = 0,
) -> dict[str, Any]:
    """Overrides of a ``tiny/*`` GRPO recipe for a workspace: ``batch_size`` completions per step in groups
    of 8 (the tiny policy's answer-only format is ~35 tokens), constant lr after a 5 % warm-up, no saves."""
    return {
        "model": str(policy), "data": str(ws.split / "rl.parquet"), "output_dir": str(output_dir),
        "limit": None, "max_prompt_tokens": max_prompt_tokens,
        "training.max_steps": max_steps, "training.save_strategy": "no", "training.logging_steps": logging_steps, "seed": seed,
        "training.num_generations": 8, "training.per_device_train_batch_size": batch_size,
        "training.max_completion_length": completion_tokens, "training.learning_rate": learning_rate,
        "training.temperature": temperature, "training.lr_scheduler_type": "constant_with_warmup", "training.warmup_steps": 0.05,
    }  # fmt: skip


def partly_trained_stop(
    model_dir: str | Path,
    prompts: Sequence[Any],
    golds: Sequence[str],
    *,
    every: int,
    target: float,
    max_new_tokens: int = 48,
):
    """A ``TrainerCallback``: every ``every`` steps a quick dev Pass@1 (2 samples); stop at ``target``.

    The callback's ``history`` holds ``(step, pass@1)`` pairs.
    """
    from transformers import AutoTokenizer, TrainerCallback

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    class _Stop(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[tuple[int, float]] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every:
                return
            backend = TransformersBackend(model, tokenizer, batch_size=32)
            params = SamplingParams(
                n=2, temperature=0.6, top_p=0.95, max_new_tokens=max_new_tokens, seed=state.global_step
            )
            model.eval()
            pass1 = evaluate_prompts(backend, prompts, golds, params)["drg"]["pass@1"]
            model.train()
            self.history.append((state.global_step, round(pass1, 3)))
            print(
                json.dumps({"sft_step": state.global_step, "dev_pass@1": round(pass1, 3)}), file=sys.stderr, flush=True
            )
            if pass1 >= target:
                control.should_training_stop = True

    return _Stop()
