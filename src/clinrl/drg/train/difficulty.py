"""Difficulty tags and curricula (REFERENCE A: drop easy / hard / both, easy→hard).

The study's definitions (REFERENCE A, "Enhancements ablated"): a case is *easy* when all ``k``
sampled completions are correct, *hard* when all are wrong **and** the group's rewards have zero
variance (GRPO learns nothing from it), else *mixed*. Correct means an exact match (the accuracy
reward pays its exact-match score). The variance is that of the training reward of the baseline run
the tags stand for: ``format`` + ``accuracy_<scheme>`` (dense by default, the ablations' baseline).
A group with no exact match but unequal rewards — e.g. ``[0, 0, 0, 0, 0, 0, -1.5, -2.0]`` — still
carries a learning signal, so it is *mixed*, and ``drop_hard`` keeps it.

:func:`tag_dataset` samples with ``transformers`` ``generate`` (CPU or GPU, batched), writing one JSON
line per case ``{hadm_id, difficulty, n_correct, k, rewards}``; it appends and flushes per batch, so
an interrupted run resumes where it stopped (cases already in the file are skipped).
:func:`apply_curriculum` then filters or orders a training set by those tags.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clinrl.drg.prep.cases import case_key, read_cases
from clinrl.drg.prompts import render_prompt, truncate_course
from clinrl.drg.rewards import EXACT, get_reward
from clinrl.errors import ClinrlError, DataError, check_limit
from clinrl.io import cut_torn_line, read_jsonl, write_json_atomic
from clinrl.llm.base import SamplingOptions
from clinrl.llm.loading import load_causal_lm
from clinrl.registry import Registry

__all__ = [
    "CURRICULA",
    "DIFFICULTIES",
    "Curriculum",
    "DifficultyConfig",
    "apply_curriculum",
    "curriculum_preserves_order",
    "difficulty_of",
    "load_difficulty",
    "summarize",
    "tag_dataset",
]

DIFFICULTIES = ("easy", "mixed", "hard")


def difficulty_of(rewards: Sequence[float], correct: Sequence[bool]) -> str:
    """The tag of one group of samples: ``rewards`` are their training rewards, ``correct`` whether
    each is an exact match. ``easy`` when every sample is correct; ``hard`` when none is and every
    reward is the same (zero variance); else ``mixed``."""
    if len(rewards) != len(correct) or not rewards:
        raise ValueError(f"need one reward per sample and at least one sample, got {len(rewards)} and {len(correct)}")
    if all(correct):
        return "easy"
    if not any(correct) and max(rewards) == min(rewards):
        return "hard"
    return "mixed"


# --------------------------------------------------------------------------- reading tags


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a tag file; a torn last line (interrupted write) is ignored."""
    records = []
    for number, record in read_jsonl(path, torn_tail=True):
        for name in ("hadm_id", "difficulty"):
            if name not in record:
                raise DataError("missing field", path=path, row=number, field=name)
        if record["difficulty"] not in DIFFICULTIES:
            raise DataError(
                f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {record['difficulty']!r}",
                path=path,
                row=number,
                field="difficulty",
            )
        records.append(record)
    return records


def load_difficulty(path: str | Path) -> dict[Any, str]:
    """``{hadm_id: "easy" | "mixed" | "hard"}`` from a tag file (the last line wins for a repeated id)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("difficulty file not found", path=path)
    return {case_key(r["hadm_id"]): r["difficulty"] for r in _read_records(path)}


# --------------------------------------------------------------------------- curricula


@dataclass(frozen=True)
class Curriculum:
    """Which tags to drop, and whether to order easy → mixed (and untagged) → hard."""

    drop: frozenset[str] = frozenset()
    ordered: bool = False


CURRICULA: Registry[Curriculum] = Registry("curriculum", {
    "none": Curriculum(),
    "drop_easy": Curriculum(frozenset({"easy"})),
    "drop_hard": Curriculum(frozenset({"hard"})),
    "drop_both": Curriculum(frozenset({"easy", "hard"})),
    "easy_to_hard": Curriculum(ordered=True),
})  # fmt: skip

_RANK = {"easy": 0, "mixed": 1, None: 1, "hard": 2}


def curriculum_preserves_order(mode: str) -> bool:
    """True when the curriculum's row order is the point (the GRPO dataloader must not shuffle)."""
    return _curriculum(mode).ordered


def _curriculum(mode: str) -> Curriculum:
    return CURRICULA[mode]


def apply_curriculum(
    dataset: Any, tags: Mapping[Any, str], mode: str, *, id_field: str = "hadm_id"
) -> tuple[Any, dict[str, Any]]:
    """Filter or order ``dataset`` (a ``datasets.Dataset`` or a pandas DataFrame) by difficulty tags.

    Modes: none | drop_easy | drop_hard | drop_both | easy_to_hard (easy, then mixed and untagged
    cases in their original order, then hard; stable within each band). Untagged cases are always
    kept and counted. Returns ``(dataset, report)``; ``report["shuffle"]`` is False when the order
    must survive the trainer's sampler (pass ``preserve_order=True`` / ``shuffle_dataset=False``).
    """
    curriculum = _curriculum(mode)
    columns = list(dataset.columns) if hasattr(dataset, "iloc") else list(dataset.column_names)
    if id_field not in columns:
        raise DataError(f"the dataset has no {id_field!r} column to match difficulty tags on", field=id_field)
    ids = dataset[id_field].tolist() if hasattr(dataset, "iloc") else list(dataset[id_field])
    labels = [tags.get(case_key(i)) for i in ids]
    counts = Counter(label or "untagged" for label in labels)
    keep = [i for i, label in enumerate(labels) if label not in curriculum.drop]
    if curriculum.ordered:
        keep.sort(key=lambda i: _RANK[labels[i]])  # stable: original order within each band
    if hasattr(dataset, "iloc"):
        result = dataset.iloc[keep].reset_index(drop=True)
    else:
        result = dataset.select(keep)
    report = {
        "mode": mode,
        "input": len(ids),
        **{name: counts.get(name, 0) for name in (*DIFFICULTIES, "untagged")},
        "dropped": {name: counts.get(name, 0) for name in sorted(curriculum.drop)},
        "kept": len(keep),
        "order": "easy, mixed+untagged, hard" if curriculum.ordered else "unchanged",
        "shuffle": not curriculum.ordered,
        "unused_tags": len(set(tags) - {case_key(i) for i in ids}),
    }
    return result, report


# --------------------------------------------------------------------------- tagging with a model


@dataclass(frozen=True)
class DifficultyConfig(SamplingOptions):
    """Sampling for :func:`tag_dataset`: ``k`` completions per case at ``temperature``/``top_p``,
    ``batch_size`` cases per ``generate`` call (``batch_size * k`` sequences), the course cut to fit
    ``max_prompt_tokens``; ``limit`` caps the cases of this run (after skipping tagged ones)."""

    temperature: float = 1.0
    max_new_tokens: int = 512
    k: int = 8
    batch_size: int = 4
    max_prompt_tokens: int = 2048
    limit: int | None = None
    reward: str = "accuracy_dense"  # with ``format``, the training reward whose group variance counts

    def validate(self) -> None:
        """The checks beyond :class:`SamplingOptions`'s: the tags need sampling, so temperature 0 is refused."""
        for name in ("k", "batch_size", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ClinrlError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ClinrlError(f"temperature must be positive, got {self.temperature}")
        check_limit(self.limit)


def _sample(model: Any, tokenizer: Any, prompts: list[str], config: DifficultyConfig) -> list[list[str]]:
    """``k`` decoded completions for each prompt (one batched ``generate`` call)."""
    import torch

    templated = bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not templated)
    enc = {name: tensor.to(model.device) for name, tensor in enc.items() if name in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            num_return_sequences=config.k,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [texts[i * config.k : (i + 1) * config.k] for i in range(len(prompts))]


def summarize(path: str | Path) -> dict[str, Any]:
    """Counts over a tag file: cases, easy/mixed/hard, the k used."""
    records = _read_records(Path(path)) if Path(path).is_file() else []
    latest = {case_key(r["hadm_id"]): r for r in records}
    counts = Counter(r["difficulty"] for r in latest.values())
    return {
        "cases": len(latest),
        **{name: counts.get(name, 0) for name in DIFFICULTIES},
        "k": sorted({r.get("k") for r in latest.values() if r.get("k") is not None}),
    }


def _load_model(model_path: str | Path) -> tuple[Any, Any]:
    model, tokenizer = load_causal_lm(model_path)  # bfloat16 on CUDA, float32 on CPU; clear errors
    tokenizer.padding_side = "left"
    return model, tokenizer


def tag_dataset(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    config: DifficultyConfig = DifficultyConfig(),
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Tag every case of ``data`` not yet in ``out`` and return a summary; also writes
    ``<out>.summary.json``. Resumable: rerun with the same arguments to continue."""
    import torch
    from tqdm import tqdm

    config.validate()
    out = Path(out)
    done: set[Any] = set()
    if out.is_file():
        cut_torn_line(out)
        previous = _read_records(out)
        ks = {r.get("k") for r in previous}
        if ks - {config.k}:
            raise ClinrlError(f"{out} holds tags made with k={sorted(ks, key=str)}; use --k {ks.pop()} or a new --out")
        if any("rewards" not in r for r in previous):  # written before "hard" needed zero reward variance
            raise ClinrlError(f"{out} holds tags without rewards (an older rule for 'hard'); use a new --out")
        done = {case_key(r["hadm_id"]) for r in previous}
    all_cases = read_cases(data)
    cases = [c for c in all_cases if c["hadm_id"] not in done]
    skipped = len(all_cases) - len(cases)
    if config.limit is not None:
        cases = cases[: config.limit]
    fmt, reward = get_reward("format"), get_reward(config.reward)
    torch.manual_seed(config.seed)
    model, tokenizer = _load_model(model_path) if cases else (None, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Counter()
    with (
        out.open("a", encoding="utf-8") as fh,
        tqdm(total=len(cases), desc="drg difficulty", unit="case", disable=not progress) as bar,
    ):
        for start in range(0, len(cases), config.batch_size):
            batch = cases[start : start + config.batch_size]
            prompts = [
                render_prompt(truncate_course(c["text"], tokenizer, config.max_prompt_tokens), tokenizer) for c in batch
            ]
            samples = _sample(model, tokenizer, prompts, config)
            for case, completions in zip(batch, samples):
                scores = reward(completions, [case["solution"]] * len(completions))
                rewards = [a + f for a, f in zip(scores, fmt(completions))]
                correct = [s >= EXACT for s in scores]
                tag = difficulty_of(rewards, correct)
                new[tag] += 1
                record = {"hadm_id": case["hadm_id"], "difficulty": tag, "n_correct": sum(correct), "k": config.k,
                          "rewards": rewards}  # fmt: skip
                fh.write(json.dumps(record) + "\n")
            fh.flush()
            bar.update(len(batch))
    summary = {
        **summarize(out),
        "tagged_now": sum(new.values()),
        "tagged_now_by_difficulty": {name: new.get(name, 0) for name in DIFFICULTIES},
        "skipped_already_tagged": skipped,
        "model": str(model_path),
        "data": str(data),
        "config": asdict(config),
    }
    write_json_atomic(out.with_name(out.name + ".summary.json"), summary)
    return summary
