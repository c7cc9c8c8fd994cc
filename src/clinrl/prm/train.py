"""Train a process-supervised (or outcome) reward model for clinical notes: ``clinrl prm train``.

Two heads (:class:`PRMTrainConfig` ``head``):

* ``causal-lm`` — the study's PRM: the true-label PRM string, ``[BOS] … [EOS]``, no chat template, trained
  with ``loss_mode`` ``vanilla`` (LM loss on every token), ``special_token`` (mean CE on the '+'/'-' targets
  plus mean CE on the structural tokens) or ``score_token_only`` (mean CE on '+'/'-' only); ``notes_only``
  masks the prompt and dialogue out of the loss. ``objective: orm`` trains the end-of-note label only (the
  other label slots hold the placeholder, so the label cannot be copied from them).
* ``token-classification`` — an encoder with a 2-way head (0 '-', 1 '+') at the structural tokens of
  placeholder-rendered windows (:mod:`clinrl.prm.encode`); CE over the label slots, optionally class-weighted.

Data: ``train_data`` (a ``clinrl prm build`` folder or its ``data.parquet``) and/or gold note files (``data``) plus
``synthesize`` rule-based error samples per gold note.

The loop is transformers' ``Trainer`` (``PRMTrainer``: the losses above as ``compute_loss``), so DDP, FSDP2,
DeepSpeed ZeRO-3 (``accelerate launch``), gradient checkpointing, mixed precision, evaluation during training
(``eval_notes``), tracking (``report_to``), the ``training:`` arguments, checkpoint rotation and ``--resume`` (transformers' own
``checkpoint-N`` with ``trainer_state.json``) come from the library, as for SFT and GRPO. The final model is
saved consolidated (:func:`clinrl.training.save_full_model`) to ``output_dir`` with ``clinrl_prm.json``
(:mod:`clinrl.prm.model`, written last), ``trainer_state.json`` (log history) and ``train_report.json``
(counts, losses, timings; no note text).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from clinrl import cards
from clinrl.errors import ClinrlError, DataError
from clinrl.io import atomic_path, write_json_atomic
from clinrl.llm.hub import local_files_only, resolve_model
from clinrl.llm.loading import ensure_pad_token, weight_load_errors
from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer
from clinrl.prm import demo_data_dir
from clinrl.prm.build import DATA_FILE, TOKENS_FILE
from clinrl.prm.build import REPORT_FILE as BUILD_REPORT
from clinrl.prm.encode import (
    GROUP_LABEL,
    GROUP_NONE,
    GROUP_STRUCTURAL,
    LOSS_MODES,
    EncodeSettings,
    PRMInputError,
    causal_targets,
    classification_targets,
    encode_causal,
    encode_windows,
    note_slot_labels,
)
from clinrl.prm.format import PRMFormatError, SpecialTokens, TokenIds, parse_prm_string
from clinrl.prm.model import PRMMeta, prepare_tokens, resolve_model_path, write_prm_files
from clinrl.prm.schema import Note, load_notes
from clinrl.prm.synth.inject import synthesize_errors
from clinrl.training import TrainerRecipe, resume_checkpoint, run_from_cli, save_full_model

__all__ = [
    "PRMTrainConfig",
    "TrainResult",
    "causal_loss",
    "encode_examples",
    "load_training_notes",
    "prm_loss",
    "train_prm",
]

STATE_FILE = "trainer_state.json"
REPORT_FILE = "train_report.json"
DEMO_GOLD = "demo"  # alias in ``data``: the bundled prm_clinic_gold.json.gz
TINY_PREFIX = "tiny:"  # model "tiny:qwen2" / "tiny:llama": a random-init tiny causal LM


# Keys of PRM recipes before the common trainer schema (clinrl.training): a recipe that still sets one gets a
# one-line error naming the new key.
_MOVED_TO_TRAINING = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "warmup_steps", "lr_scheduler_type", "weight_decay", "max_grad_norm", "bf16", "gradient_checkpointing",
    "save_steps", "save_total_limit", "logging_steps", "eval_steps",
)  # fmt: skip


@dataclass(kw_only=True)
class PRMTrainConfig(TrainerRecipe):
    """Everything a PRM training run needs (a recipe under recipes/prm/ sets these fields): the common trainer
    fields (:class:`clinrl.training.TrainerRecipe`; ``training`` goes to ``transformers.TrainingArguments``,
    ``model`` is a folder, hub name, ``minilm`` or ``tiny:qwen2``, ``data`` the gold note files) plus the
    PRM's own."""

    TRAINING_CLASS: ClassVar[str] = "transformers.TrainingArguments"
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 3e-5, "num_train_epochs": 1.0, "per_device_train_batch_size": 4, "warmup_steps": 50,
        "save_steps": 200, "save_total_limit": 2, "logging_steps": 10,
    }  # fmt: skip
    RENAMED: ClassVar[dict[str, str]] = {
        "model_name_or_path": "model", "gold": "data", **{k: f"training.{k}" for k in _MOVED_TO_TRAINING},
    }  # fmt: skip

    model: str = "minilm"  # "minilm": the packaged MiniLM encoder; "tiny:qwen2": a tiny random LM
    data: list[str] = field(default_factory=list)  # gold note files ("demo" = bundled gold notes)
    name: str = "prm"
    head: Literal["causal-lm", "token-classification"] = "token-classification"
    objective: Literal["prm", "orm"] = "prm"
    loss_mode: Literal["vanilla", "special_token", "score_token_only"] = "special_token"
    notes_only: bool = False  # causal-lm: prompt and dialogue out of the loss
    tokens: str = "auto"  # auto | llama3 | new | path to a special-token JSON file
    # data
    train_data: str | None = None  # `clinrl prm build` folder or its data.parquet (labels as they are)
    synthesize: int = 0  # synthetic error samples per gold note
    synth_seed: int = 0
    max_notes: int | None = None  # random subset of the training notes (after synthesis)
    # inputs
    max_length: int = 4096
    dialogue_max_tokens: int | None = None
    note_fraction: float = 0.45
    line_max_tokens: int = 64
    mark_unsupported: int = 0  # token-classification: list note words the dialogue lacks (0 = off)
    mark_quantities: bool = False  # with mark_unsupported: also quantities (number + unit) the dialogue lacks
    evidence: Literal["problem", "item"] = "problem"  # token-classification: dialogue lines per problem / per item
    score_aggregate: Optional[str] = None  # default note-score aggregation stored with the model (None: study's)
    # optimisation (the rest is under training:)
    class_weight: Literal["none", "sqrt", "balanced"] = "none"  # token-classification: weigh '-' up
    # bookkeeping
    eval_notes: list[str] = field(default_factory=list)  # note files for an evaluation loss during training
    num_threads: int | None = None  # torch CPU threads
    accelerate_config: str | None = None  # documentation only: launch with `accelerate launch --config_file <this>`
    progress: bool = True
    # model "tiny:…" only: shape of the random-init model and its tokenizer
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_vocab_size: int = 2048
    tiny_tokenizer_notes: int = 200  # the first N training notes train the BPE tokenizer

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_mode not in LOSS_MODES:
            raise ClinrlError(f"loss_mode must be one of {', '.join(LOSS_MODES)}, got {self.loss_mode!r}")
        if self.notes_only and self.head != "causal-lm":
            raise ClinrlError("notes_only applies to head causal-lm only (encoders train the label slots only)")
        if self.train_data is None and not self.data:
            raise ClinrlError(
                "no training data: set train_data (a `clinrl prm build` output) or data (gold notes, + synthesize)"
            )
        if not 0 < self.note_fraction < 1:
            raise ClinrlError(f"note_fraction must be in (0, 1), got {self.note_fraction}")
        learning_rate = self.training.get("learning_rate")
        if isinstance(learning_rate, (int, float)) and not learning_rate > 0:  # the optimiser would refuse it late
            raise ClinrlError(f"training.learning_rate must be > 0, got {learning_rate}")

    @property
    def settings(self) -> EncodeSettings:
        return EncodeSettings(self.head, self.max_length, self.dialogue_max_tokens, self.note_fraction,
                              self.line_max_tokens, self.mark_unsupported, self.mark_quantities, self.evidence)  # fmt: skip


@dataclass
class TrainResult:
    """What a run did (also written as ``train_report.json``)."""

    output_dir: str
    steps: int
    notes: int
    examples: int
    dropped: dict[str, int]
    label_counts: dict[str, int]
    losses: list[tuple[int, float]]
    seconds: float
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ data
def _gold_paths(gold: Sequence[str]) -> list[Path]:
    return [demo_data_dir() / "prm_clinic_gold.json.gz" if g == DEMO_GOLD else Path(g) for g in gold]


def _read_parquet_notes(path: str | Path) -> list[Note]:
    """Notes (with labels) from a ``clinrl prm build`` output; each row's labels checked against ``labels``."""
    import pandas as pd

    path = Path(path)
    folder, data = (path, path / DATA_FILE) if path.is_dir() else (path.parent, path)
    if not data.is_file():
        raise DataError("not found (expected a `clinrl prm build` output)", path=data)
    tokens = (
        SpecialTokens.from_json(folder / TOKENS_FILE) if (folder / TOKENS_FILE).is_file() else SpecialTokens.llama3()
    )
    eos = None
    if (folder / BUILD_REPORT).is_file():
        eos = json.loads((folder / BUILD_REPORT).read_text(encoding="utf-8")).get("settings", {}).get("eos")
    frame = pd.read_parquet(data)
    for column in ("text", "labels"):
        if column not in frame.columns:
            raise DataError(f"missing column {column!r}", path=data)
    notes = []
    for row, (text, labels) in enumerate(zip(frame["text"], frame["labels"]), start=1):
        try:
            note = parse_prm_string(text, tokens, eos=eos)
        except PRMFormatError as err:
            raise DataError(str(err), path=data, row=row, field="text") from None
        if "".join(note_slot_labels(note)) != labels:
            raise DataError("labels do not match the labels in the PRM string", path=data, row=row, field="labels")
        notes.append(note)
    return notes


def load_training_notes(config: PRMTrainConfig) -> list[Note]:
    """The training notes: parsed ``train_data`` rows, gold notes, then ``synthesize`` error samples per gold
    note; a random ``max_notes`` subset when set. Never reads verification data unless a path says so."""

    notes: list[Note] = []
    if config.train_data:
        notes += _read_parquet_notes(config.train_data)
    gold: list[Note] = []
    for path in _gold_paths(config.data):
        gold += [n for n in load_notes(path) if not n.is_error_sample]
    notes += gold
    if config.synthesize:
        notes += synthesize_errors(gold, config.synthesize, seed=config.synth_seed, pool=gold)
    if config.max_notes is not None and len(notes) > config.max_notes:
        notes = random.Random(config.seed).sample(notes, config.max_notes)
    if not notes:
        raise ClinrlError("no training notes")
    return notes


def encode_examples(
    notes: Sequence[Note], tokenizer: Any, tokens: SpecialTokens, ids: TokenIds, config: PRMTrainConfig
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Training examples (``input_ids``, ``targets``, optional ``token_type_ids``) and drop counts.

    causal-lm: ``targets`` are loss groups per target position (:func:`clinrl.prm.encode.causal_targets`);
    token-classification: class targets per position (:func:`clinrl.prm.encode.classification_targets`).
    A note too long for ``max_length`` without its dialogue is dropped and counted.
    """
    orm = config.objective == "orm"
    examples: list[dict[str, list[int]]] = []
    dropped: dict[str, int] = {}
    for note in notes:
        try:
            if config.head == "causal-lm":
                window = encode_causal(note, note.dialogue, tokenizer, tokens, ids, config.settings,
                                       labels="true", orm=orm, add_eos=True)  # fmt: skip
                groups = causal_targets(window, ids, config.loss_mode, notes_only=config.notes_only, orm=orm)
                examples.append({"input_ids": window.input_ids, "targets": groups})
            else:
                labels = note_slot_labels(note)
                for window in encode_windows(note, note.dialogue, tokenizer, tokens, ids, config.settings):
                    targets = classification_targets(window, labels, orm=orm)
                    if any(t != -100 for t in targets):
                        examples.append({"input_ids": window.input_ids, "targets": targets,
                                         "token_type_ids": window.token_type_ids or []})  # fmt: skip
        except PRMInputError:
            dropped["too_long"] = dropped.get("too_long", 0) + 1
        except PRMFormatError:
            dropped["unrenderable"] = dropped.get("unrenderable", 0) + 1
    return examples, dropped


def _collate(batch: list[dict[str, list[int]]], pad_id: int, ignore: int) -> dict[str, Any]:
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    n_targets = max(len(b["targets"]) for b in batch)
    out = {
        "input_ids": torch.full((len(batch), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(batch), width), dtype=torch.long),
        "targets": torch.full((len(batch), n_targets), ignore, dtype=torch.long),
    }
    with_types = bool(batch[0].get("token_type_ids"))
    if with_types:
        out["token_type_ids"] = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        out["input_ids"][i, :n] = torch.tensor(b["input_ids"])
        out["attention_mask"][i, :n] = 1
        out["targets"][i, : len(b["targets"])] = torch.tensor(b["targets"])
        if with_types:
            out["token_type_ids"][i, :n] = torch.tensor(b["token_type_ids"])
    return out


# ------------------------------------------------------------------------------------------------ losses
def causal_loss(logits: Any, input_ids: Any, groups: Any, loss_mode: str) -> Any:
    """The causal-LM PRM loss. ``groups[b, t]`` is the loss group of predicting ``input_ids[b, t+1]`` from
    position t. ``vanilla``: one mean CE over all trained targets; ``special_token``: mean CE over the
    label targets plus mean CE over the structural targets; ``score_token_only``: mean CE over the labels."""
    import torch.nn.functional as F

    width = groups.shape[1]
    pred = logits[:, :width]
    target = input_ids[:, 1 : width + 1]
    trained = groups != GROUP_NONE
    if loss_mode == "vanilla":
        parts = [trained]
    else:
        parts = [groups == GROUP_LABEL] + ([groups == GROUP_STRUCTURAL] if loss_mode == "special_token" else [])
    total = pred.new_zeros(())
    for mask in parts:
        if mask.any():
            total = total + F.cross_entropy(pred[mask].float(), target[mask])
    if not trained.any():
        total = total + pred.sum() * 0.0  # keep the graph (and the gradient all-reduce) alive
    return total


def _class_weights(examples: list[dict[str, list[int]]], scheme: str) -> list[float] | None:
    if scheme == "none":
        return None
    plus = sum(t == 1 for e in examples for t in e["targets"])
    minus = sum(t == 0 for e in examples for t in e["targets"])
    if not plus or not minus:
        return None
    ratio = plus / minus
    w_minus = math.sqrt(ratio) if scheme == "sqrt" else ratio
    return [w_minus, 1.0]


# ------------------------------------------------------------------------------------------------ models
def _tiny_model(arch: str, notes: Sequence[Note], out: Path, config: PRMTrainConfig) -> str:
    """Build a random-init causal LM (``tiny:qwen2`` / ``tiny:llama``, shaped by the ``tiny_*`` fields) with a
    byte-level BPE tokenizer trained on the training notes, saved under ``out``; no download."""

    if arch not in ("qwen2", "llama"):
        raise ClinrlError(f"unknown tiny model {arch!r}: use tiny:qwen2 or tiny:llama")
    if config.tiny_hidden_size % config.tiny_heads:
        raise ClinrlError(
            f"tiny_hidden_size {config.tiny_hidden_size} is not a multiple of tiny_heads {config.tiny_heads}"
        )
    tokenizer = train_tokenizer(_tokenizer_texts(notes, config), vocab_size=config.tiny_vocab_size)
    shape = TinyModelConfig(
        arch=arch, hidden_size=config.tiny_hidden_size, num_layers=config.tiny_layers, num_heads=config.tiny_heads,
        num_kv_heads=max(1, config.tiny_heads // 2), intermediate_size=2 * config.tiny_hidden_size,
        max_position_embeddings=max(4096, config.max_length),
    )  # fmt: skip
    build_tiny_model(tokenizer, shape, out=out)
    return str(out)


def _tokenizer_texts(notes: Sequence[Note], config: PRMTrainConfig) -> list[str]:
    """What a tiny model's tokenizer is trained on: dialogue and text of the first ``tiny_tokenizer_notes``."""
    return [n.dialogue + "\n" + n.text() for n in notes[: config.tiny_tokenizer_notes]]


def _load_base(config: PRMTrainConfig, path: str):
    """The base model (float32 master weights), its tokenizer with a pad token and the PRM special tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = resolve_model(path)  # a missing folder fails here, before any hub request
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" load report is expected here
    try:
        offline = local_files_only()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        # float32 master weights; bf16 is autocast by accelerate (or handled by DeepSpeed's bf16 config)
        if config.head == "causal-lm":
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=offline)
        else:
            model = AutoModelForTokenClassification.from_pretrained(
                path,
                num_labels=2,
                id2label={0: "-", 1: "+"},
                label2id={"-": 0, "+": 1},
                dtype=torch.float32,
                local_files_only=offline,
            )
    except weight_load_errors() as err:
        detail = " ".join(str(err).split())[:200]
        raise ClinrlError(f"cannot load model {config.model!r} ({type(err).__name__}: {detail})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    ensure_pad_token(tokenizer)
    tokens, ids = prepare_tokens(tokenizer, model, config.tokens)
    _embedding_not_a_wrap_unit(model)
    return model, tokenizer, tokens, ids


def _embedding_not_a_wrap_unit(model: Any) -> None:
    """Drop from ``model._no_split_modules`` the classes that hold the input embedding (BERT/MiniLM's
    ``BertEmbeddings``). accelerate's FSDP2 wrapping shards every such class as a unit and then shards the
    input embedding again on its own, which fails on the already-sharded weight ("value was None when it
    should not be" in DeviceMesh); without the entry the embedding gets its own unit once. No effect on
    decoder LMs, whose lists name the decoder layers only."""
    names = getattr(model, "_no_split_modules", None)
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not names or embedding is None:
        return
    holders = {
        type(m).__name__ for m in model.modules() if m is not embedding and any(c is embedding for c in m.modules())
    }
    kept = [n for n in names if n not in holders]
    if len(kept) != len(names):
        model._no_split_modules = type(names)(kept) if isinstance(names, (set, list)) else kept


# ------------------------------------------------------------------------------------------------ training
class _Examples:
    """The encoded examples as a map-style dataset (the Trainer samples, shards and skips batches by index)."""

    def __init__(self, examples: list[dict[str, list[int]]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.examples[index]


def _trainer_class():
    """:class:`PRMTrainer`, built on first use so that importing this module does not import transformers."""
    from transformers import Trainer

    class PRMTrainer(Trainer):
        """transformers' ``Trainer`` with the PRM losses as ``compute_loss``: :func:`causal_loss` for the
        causal-LM head, (optionally class-weighted) CE over the label slots for the encoder head.

        Both losses are means over their own targets, so the Trainer must divide them by the accumulation
        steps itself (``model_accepts_loss_kwargs = False``; otherwise it expects a model-side sum over
        ``num_items_in_batch``): the same arithmetic as an accumulated mean loss."""

        def __init__(self, *args: Any, loss_mode: str, causal: bool, ce_weight: list[float] | None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self.prm_loss_mode, self.prm_causal, self.prm_ce_weight = loss_mode, causal, ce_weight

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ):
            inputs = dict(inputs)
            targets = inputs.pop("targets")
            outputs = model(**inputs)
            loss = prm_loss(outputs.logits, inputs["input_ids"], targets, self.prm_causal, self.prm_loss_mode,
                            self.prm_ce_weight)  # fmt: skip
            return (loss, outputs) if return_outputs else loss

    return PRMTrainer


def prm_loss(
    logits: Any, input_ids: Any, targets: Any, causal: bool, loss_mode: str, ce_weight: Sequence[float] | None = None
) -> Any:
    """The training loss of one batch: :func:`causal_loss` (causal-LM head) or the mean CE over the label
    slots (``targets != -100``) of the 2-way head, weighted per class when ``ce_weight`` is given."""
    import torch
    import torch.nn.functional as F

    if causal:
        return causal_loss(logits, input_ids, targets, loss_mode)
    mask = targets != -100
    weight = torch.tensor(list(ce_weight), device=logits.device) if ce_weight else None
    return F.cross_entropy(logits[mask].float(), targets[mask], weight=weight)


def _training_args(config: PRMTrainConfig, has_eval: bool) -> Any:
    """``TrainingArguments`` for a PRM recipe (optimiser, schedule, checkpoints, logging, tracking, precision).
    Building them also sets up the process group and, under ``accelerate launch`` with DeepSpeed ZeRO-3,
    the zero.Init context in which the base model is then loaded sharded."""
    import torch

    cuda = torch.cuda.is_available()
    t = config.training
    save_steps, save_limit = t.get("save_steps", 500), t.get("save_total_limit")
    derived = {
        "per_device_eval_batch_size": t.get("per_device_eval_batch_size", t.get("per_device_train_batch_size", 8)),
        "bf16": bool(t.get("bf16")) and cuda,  # a bf16 recipe still runs (in float32) on a CPU
        "dataloader_pin_memory": cuda, "use_cpu": bool(t.get("use_cpu")) or not cuda,
        "save_strategy": t.get("save_strategy", "steps" if save_steps > 0 else "no"),  # save_steps 0: no checkpoints
        "save_steps": max(save_steps, 1), "save_total_limit": save_limit if save_limit and save_limit > 0 else None,
        "eval_strategy": "steps" if has_eval else "no", "eval_steps": t.get("eval_steps") or t.get("logging_steps", 500),
        "disable_tqdm": t.get("disable_tqdm", not config.progress), "remove_unused_columns": False,
        "label_names": ["targets"], "dataloader_num_workers": 0,
    }  # fmt: skip
    return config.training_arguments(**derived)


TINY_DONE = ".clinrl_complete"  # written last into a tiny base-model folder: what it was built from
TINY_WAIT_S = 900.0


def _base_model_path(config: PRMTrainConfig, notes: Sequence[Note]) -> str:
    """The base model folder; a ``tiny:`` model is built by the first process into ``output_dir/base_model``
    (kept when one built from the same settings and notes is there: ``--resume`` goes on with its model).

    The other processes wait for the folder's completion mark naming the same inputs, without a collective:
    before the Trainer exists no distributed state is safe to use here — ``accelerate.PartialState()`` takes a
    CPU launch for one process (every rank then believed it was the first, built the model into the same
    folder at once and could read it half written: the engine tier's intermittent hang), and the run's
    ``TrainingArguments`` under ZeRO-3 partition every model built after them (rank 0 then waits in a broadcast
    the others never join). Built in a temporary folder and renamed, so a reader never sees it half written."""
    path = resolve_model_path(config.model)
    if not path.startswith(TINY_PREFIX):
        return path
    folder = Path(config.output_dir) / "base_model"
    arch = path[len(TINY_PREFIX) :]
    built_from = _tiny_fingerprint(arch, notes, config)
    if _mark(folder) == built_from:
        return str(folder)
    if int(os.environ.get("RANK", "0")) == 0:
        _build_tiny_base(arch, notes, folder, config, built_from)
    else:
        _wait_for_mark(folder, built_from, TINY_WAIT_S)
    return str(folder)


def _tiny_fingerprint(arch: str, notes: Sequence[Note], config: PRMTrainConfig) -> str:
    """A hash of what :func:`_tiny_model` builds from: the architecture, the ``tiny_*`` shape, ``max_length``
    and the tokenizer's training texts (the same on every process: the notes are drawn with the run's seed)."""
    h = hashlib.sha256(f"{arch}|{config.tiny_hidden_size}|{config.tiny_layers}|{config.tiny_heads}|"
                       f"{config.tiny_vocab_size}|{config.max_length}".encode())  # fmt: skip
    for text in _tokenizer_texts(notes, config):
        h.update(text.encode())
    return h.hexdigest()


def _mark(folder: Path) -> str | None:
    try:
        return (folder / TINY_DONE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _build_tiny_base(arch: str, notes: Sequence[Note], folder: Path, config: PRMTrainConfig, built_from: str) -> None:
    """:func:`_tiny_model` into a temporary folder beside ``folder``, marked, then renamed to it (an older or
    half-built folder there is replaced)."""
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _tiny_model(arch, notes, tmp, config)
    (tmp / TINY_DONE).write_text(built_from + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _wait_for_mark(folder: Path, built_from: str, timeout_s: float) -> None:
    """Poll until ``folder`` is marked as built from ``built_from``; a one-line error after ``timeout_s`` (the
    first process failed or is stuck: its own error, or the launcher's, says why)."""
    deadline = time.monotonic() + timeout_s
    while _mark(folder) != built_from:
        if time.monotonic() > deadline:
            raise ClinrlError(
                f"waited {timeout_s:.0f} s for the first process to build the tiny base model in {folder}"
            )
        time.sleep(0.2)


def _log_losses(log_history: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(e["step"]), round(float(e["loss"]), 5)) for e in log_history if "loss" in e and "step" in e]


def train_prm(config: PRMTrainConfig, *, resume: bool = False) -> TrainResult:
    """Train a PRM/ORM as ``config`` says, with transformers' ``Trainer`` (:func:`_trainer_class`); resume
    from the last complete ``checkpoint-N`` in ``output_dir`` when asked. Runs the same under one process,
    DDP, FSDP2 or DeepSpeed ZeRO-3 (``accelerate launch``); the final model is saved consolidated."""
    import torch
    from transformers import set_seed

    started = time.monotonic()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    checkpoint = resume_checkpoint(out, resume)
    set_seed(config.seed)
    notes = load_training_notes(config)
    base = _base_model_path(config, notes)  # before the TrainingArguments: see there
    eval_notes = _eval_notes(config)
    args = _training_args(config, has_eval=bool(eval_notes))
    set_seed(config.seed)  # every process initialises new weights (head, added tokens) identically
    model, tokenizer, tokens, ids = _load_base(config, base)
    examples, dropped = encode_examples(notes, tokenizer, tokens, ids, config)
    if not examples:
        raise ClinrlError(f"no training examples left (dropped: {dropped})")
    eval_examples = encode_examples(eval_notes, tokenizer, tokens, ids, config)[0] if eval_notes else None
    causal = config.head == "causal-lm"
    ignore = GROUP_NONE if causal else -100
    pad_id = tokenizer.pad_token_id
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=_Examples(examples),
        eval_dataset=_Examples(eval_examples) if eval_examples else None,
        data_collator=lambda b: _collate(b, pad_id, ignore),
        loss_mode=config.loss_mode, causal=causal,
        ce_weight=_class_weights(examples, config.class_weight) if not causal else None,
    )  # fmt: skip
    cards.install(trainer, config)
    trainer.train(resume_from_checkpoint=checkpoint)
    save_full_model(trainer, out)
    meta = PRMMeta(
        head=config.head, objective=config.objective, tokens=tokens, loss_mode=config.loss_mode,
        notes_only=config.notes_only, max_length=config.max_length, dialogue_max_tokens=config.dialogue_max_tokens,
        base_model=config.model, note_fraction=config.note_fraction,
        line_max_tokens=config.line_max_tokens, mark_unsupported=config.mark_unsupported,
        mark_quantities=config.mark_quantities, evidence=config.evidence,
        score_aggregate=config.score_aggregate,
    )  # fmt: skip
    result = TrainResult(
        output_dir=str(out), steps=trainer.state.global_step, notes=len(notes), examples=len(examples),
        dropped=dropped, label_counts=_label_counts(examples, causal), losses=_log_losses(trainer.state.log_history),
        seconds=round(time.monotonic() - started, 1), resumed_from=checkpoint,
    )  # fmt: skip
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        with atomic_path(out / STATE_FILE) as tmp:  # the log history (loss, eval loss) for curves
            trainer.state.save_to_json(str(tmp))
        write_json_atomic(out / REPORT_FILE, {**result.to_dict(), "config": asdict(config)})
        cards.write_model_card(out, config, trainer.state.log_history)
        write_prm_files(out, meta)  # last: its presence marks a complete PRM folder
    return result


def _eval_notes(config: PRMTrainConfig) -> list[Note]:
    """Notes for the evaluation loss during training (``eval_notes`` files, labels as they are)."""
    notes: list[Note] = []
    for path in _gold_paths(config.eval_notes):
        notes += load_notes(path)
    return notes


def _label_counts(examples: list[dict[str, list[int]]], causal: bool) -> dict[str, int]:
    if causal:
        return {"label_targets": sum(t == GROUP_LABEL for e in examples for t in e["targets"])}
    return {
        "+": sum(t == 1 for e in examples for t in e["targets"]),
        "-": sum(t == 0 for e in examples for t in e["targets"]),
    }


def train_from_recipe(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    resume: bool = False,
    workdir: str | Path | None = None,
    report_to: str | None = None,
) -> TrainResult:
    """Load recipe ``path`` (with ``--key value`` overrides) and train (:func:`clinrl.training.run_from_cli`:
    relative paths against ``workdir`` > ``$CLINRL_HOME`` > the current folder; ``report_to`` None keeps the
    recipe's tracker)."""

    return run_from_cli(PRMTrainConfig, train_prm, path, overrides, resume, workdir=workdir, report_to=report_to)
