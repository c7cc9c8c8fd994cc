"""``clinrl drg sft``: the SFT cold start / knowledge infusion (REFERENCE A, "SFT") on TRL 1.16.

Rows are prompt–completion pairs in TRL's conversational format, built with
:func:`clinrl.drg.prompts.to_sft_rows` — the same system prompt as GRPO and inference. Completions are
distilled reasoning traces when a traces file is given (JSONL ``{"hadm_id", "explanation"}``, joined on
``hadm_id``; traces containing a ``<think>``/``<answer>`` tag are dropped and counted), else answer-only
targets; plus the 28 MS-DRG knowledge rows (optional). The loss covers completions only, and
``max_length`` is set explicitly: TRL's default of 1024 would silently cut notes, so rows longer than it
are counted and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from clinrl.drg.prompts import to_sft_rows
from clinrl.drg.train.knowledge import knowledge_rows
from clinrl.errors import DataError
from clinrl.io import read_jsonl
from clinrl.llm.loading import load_tokenizer
from clinrl.training import TRLRecipe, load_trainer_config, read_split, resume_checkpoint, train_and_save
from clinrl.training import run_from_cli as _run_from_cli

__all__ = ["DRGSFTConfig", "build_sft_dataset", "count_too_long", "load_sft_config", "read_traces", "train_sft"]

log = logging.getLogger(__name__)

TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@dataclass(kw_only=True)
class DRGSFTConfig(TRLRecipe):
    """An SFT recipe: the common trainer fields (:class:`clinrl.training.TRLRecipe`; ``training`` goes to
    ``trl.SFTConfig``) plus the SFT rows' options. ``training.max_length`` is required: TRL's default of 1024
    would silently cut notes."""

    TRAINING_CLASS: ClassVar[str] = "trl.SFTConfig"
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {"completion_only_loss": True}

    data: str
    name: str = "sft"
    traces: str | None = None
    knowledge: bool = True
    max_prompt_tokens: int | None = None
    truncation: Literal["head", "tail", "head_tail"] = "head"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.training.get("max_length") is None:
            raise ValueError(
                "training.max_length must be set to a number (TRL's default of 1024 would cut notes, "
                "and without a cap TRL cannot report cut rows)"
            )


def load_sft_config(path: str | Path, overrides: Any = ()) -> DRGSFTConfig:
    """Load an SFT recipe with ``overrides`` (``--key value`` strings or a dotted-key mapping)."""
    return load_trainer_config(DRGSFTConfig, path, overrides)


def read_traces(path: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    """``hadm_id`` → explanation from a JSONL file, and counts (``rows``, ``dropped_tags``, ``duplicates``).

    A malformed line or a record without ``hadm_id``/``explanation`` raises DataError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    traces: dict[str, str] = {}
    counts = {"rows": 0, "dropped_tags": 0, "duplicates": 0}
    for lineno, record in read_jsonl(path):
        for key in ("hadm_id", "explanation"):
            if key not in record:
                raise DataError("missing", path=path, row=lineno, field=key)
        if not isinstance(record["explanation"], str):
            raise DataError("must be a string", path=path, row=lineno, field="explanation")
        counts["rows"] += 1
        if any(tag in record["explanation"] for tag in TAGS):
            counts["dropped_tags"] += 1
            continue
        key = str(record["hadm_id"])
        counts["duplicates"] += key in traces
        traces[key] = record["explanation"]
    return traces, counts


def build_sft_dataset(cfg: DRGSFTConfig, tokenizer: Any) -> tuple[Any, dict[str, int]]:
    """The SFT rows as a ``datasets.Dataset`` of ``{"prompt", "completion"}`` messages, and counts."""
    from datasets import Dataset

    frame = read_split(cfg.data, limit=cfg.limit)
    counts: dict[str, int] = {"cases": len(frame)}
    explanations = [None] * len(frame)
    if cfg.traces:
        if "hadm_id" not in frame.columns:
            raise DataError("traces need a hadm_id column to join on", path=cfg.data)
        traces, trace_counts = read_traces(cfg.traces)
        counts.update({f"traces_{k}": v for k, v in trace_counts.items()})
        explanations = [traces.get(str(h)) for h in frame["hadm_id"]]
        counts["cases_with_trace"] = sum(e is not None for e in explanations)
        counts["cases_answer_only"] = len(frame) - counts["cases_with_trace"]
    rows = []
    for text, solution, explanation in zip(frame["text"], frame["solution"], explanations):
        example = {"text": text, "solution": solution, "explanation": explanation}
        rows.append(
            to_sft_rows(example, tokenizer=tokenizer, max_prompt_tokens=cfg.max_prompt_tokens, strategy=cfg.truncation)
        )
    if cfg.knowledge:
        knowledge = knowledge_rows()
        rows.extend(knowledge)
        counts["knowledge_rows"] = len(knowledge)
    return Dataset.from_list(rows), counts


def count_too_long(dataset: Any, tokenizer: Any, max_length: int) -> dict[str, int]:
    """Rows longer than ``max_length`` tokens (TRL cuts their end) and, among them, rows whose prompt
    alone reaches it (nothing of the completion is left, so TRL drops them from training)."""
    counts = {"rows_longer_than_max_length": 0, "rows_prompt_fills_max_length": 0}
    for row in dataset:
        total = _n_tokens(tokenizer, row["prompt"] + row["completion"])
        if total > max_length:
            counts["rows_longer_than_max_length"] += 1
            counts["rows_prompt_fills_max_length"] += _n_tokens(tokenizer, row["prompt"], prompt=True) >= max_length
    return counts


def _n_tokens(tokenizer: Any, messages: list[dict[str, str]], prompt: bool = False) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def train_sft(cfg: DRGSFTConfig, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run SFT; save the model, tokenizer and resolved recipe to ``output_dir``; return a summary
    (``callbacks`` are added to the trainer)."""
    from trl import SFTTrainer

    checkpoint = resume_checkpoint(cfg.output_dir, resume)
    tokenizer = load_tokenizer(cfg.model)
    dataset, counts = build_sft_dataset(cfg, tokenizer)
    max_length = cfg.training["max_length"]
    counts["rows"] = len(dataset)
    counts.update(count_too_long(dataset, tokenizer, max_length))
    if counts["rows_longer_than_max_length"]:
        log.warning(
            "%d of %d SFT rows are longer than max_length=%d tokens and will be cut (%d of them lose the whole "
            "completion and are dropped by TRL)",
            counts["rows_longer_than_max_length"],
            len(dataset),
            max_length,
            counts["rows_prompt_fills_max_length"],
        )
    if counts.get("traces_dropped_tags"):
        log.warning("dropped %d traces that contain <think>/<answer> tags", counts["traces_dropped_tags"])
    args = cfg.training_arguments()
    trainer = SFTTrainer(
        model=cfg.model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=cfg.lora.to_peft(),
        callbacks=list(callbacks) or None,
    )
    return train_and_save(trainer, cfg, tokenizer, checkpoint, "sft_summary.json", counts)


def run_from_cli(
    config: Path, overrides: Sequence[str], resume: bool, *, workdir: Path | None = None, report_to: str | None = None
) -> dict[str, Any]:
    """Entry for ``clinrl drg sft``: check, load, train (:func:`clinrl.training.run_from_cli`)."""
    return _run_from_cli(DRGSFTConfig, train_sft, config, overrides, resume, workdir=workdir, report_to=report_to)
