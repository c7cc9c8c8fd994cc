"""Per-slot P(+) from a causal-LM PRM: the reference procedure, the shared-prefix fast path, greedy labels.

All three return, for each sequence, a float32 tensor of P(+) at the given *structural-token* positions
(the label is predicted there, the label token follows). ``readout`` picks the probability space:

- ``"full"`` — softmax over the whole vocabulary, read at '+' (the study);
- ``"binary"`` — softmax over the two logits {'+', '-'} only.

The fast path runs the shared prompt+dialogue prefix once, copies its KV cache into a batch of note
continuations (right-padded, with an attention mask over prefix + continuation and explicit position ids),
and applies the LM head only at the structural-token positions. It gives the reference scores up to float
rounding (checked to 1e-4 in the tests and the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from clinrl.registry import Registry

__all__ = [
    "READOUTS",
    "Readout",
    "expand_cache",
    "fast_slot_probs",
    "greedy_slot_probs",
    "prefix_cache",
    "reference_slot_probs",
    "split_prefix",
]

Readout = Literal["full", "binary"]


def _full(logits: torch.Tensor, plus: int, minus: int) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)[:, plus]


def _binary(logits: torch.Tensor, plus: int, minus: int) -> torch.Tensor:
    return torch.softmax(logits.float()[:, [plus, minus]], dim=-1)[:, 0]


READOUTS: Registry[Callable[[torch.Tensor, int, int], torch.Tensor]] = Registry(
    "readout", {"full": _full, "binary": _binary}
)


def split_prefix(full: Sequence[Sequence[int]], prefix: Sequence[int]) -> list[bool]:
    """For each tokenised full string, whether it starts with exactly the tokens of the prefix alone
    (False where BPE merged across the boundary: that sequence must take the reference path)."""
    n = len(prefix)
    return [len(ids) > n and list(ids[:n]) == list(prefix) for ids in full]


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _cache_kwarg(model: Any) -> str:
    """The keyword under which the base model takes (and the name under which it returns) the KV cache:
    ``cache`` from transformers 5.2x, ``past_key_values`` before (5.19, the engine tier's pin). An unknown
    keyword would be swallowed by ``**kwargs`` and the cache silently ignored, so it is looked up."""
    import inspect

    params = inspect.signature(model.base_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _base(model: Any, cache: Any = None, **inputs: Any) -> Any:
    """``model.base_model(**inputs, use_cache=True)`` with ``cache`` passed under this version's keyword."""
    extra = {_cache_kwarg(model): cache} if cache is not None else {}
    return model.base_model(**inputs, **extra, use_cache=True)


def _returned_cache(model: Any, out: Any) -> Any:
    return getattr(out, _cache_kwarg(model))


def _probs(model: Any, hidden: torch.Tensor, ids: tuple[int, int], readout: str) -> torch.Tensor:
    logits = model.get_output_embeddings()(hidden)
    return READOUTS[readout](logits, *ids)


@torch.inference_mode()
def reference_slot_probs(
    model: Any, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], ids: tuple[int, int],
    readout: str = "full",
) -> list[torch.Tensor]:  # fmt: skip
    """The straightforward procedure: one sequence at a time, full logits at every position, then index."""
    device = _device(model)
    out = []
    for seq, pos in zip(sequences, positions):
        logits = model(input_ids=torch.tensor([list(seq)], device=device)).logits[0]
        out.append(READOUTS[readout](logits[list(pos)], *ids).cpu())
    return out


def expand_cache(cache: Any, batch: int, config: Any) -> Any:
    """A fresh DynamicCache with ``cache``'s (batch-1) keys/values repeated ``batch`` times (``cache`` untouched)."""
    from transformers import DynamicCache

    data = [(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1)) for layer in cache.layers]
    return DynamicCache(data, config=config)


@torch.inference_mode()
def prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """Run the shared prefix once (batch 1); returns its KV cache."""
    out = _base(model, input_ids=torch.tensor([list(prefix)], device=_device(model)))
    return _returned_cache(model, out)


@torch.inference_mode()
def fast_slot_probs(
    model: Any,
    prefix: Sequence[int],
    continuations: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    ids: tuple[int, int],
    readout: str = "full",
    *,
    batch_size: int = 8,
    pad_id: int = 0,
) -> list[torch.Tensor]:
    """P(+) for notes sharing ``prefix``: the prefix once, continuations batched, LM head only at ``positions``.

    ``positions[i]`` index into ``prefix + continuations[i]`` (all at or after ``len(prefix)``).
    """
    device = _device(model)
    n_prefix = len(prefix)
    cache = prefix_cache(model, prefix)
    out: list[torch.Tensor | None] = [None] * len(continuations)
    order = sorted(range(len(continuations)), key=lambda i: -len(continuations[i]))  # little padding per batch
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(continuations[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), n_prefix + width), dtype=torch.long)
        mask[:, :n_prefix] = 1
        for row, i in enumerate(chunk):
            input_ids[row, : len(continuations[i])] = torch.tensor(list(continuations[i]))
            mask[row, n_prefix : n_prefix + len(continuations[i])] = 1
        position_ids = (torch.arange(width) + n_prefix).unsqueeze(0).expand(len(chunk), -1)
        hidden = _base(
            model, expand_cache(cache, len(chunk), model.config), input_ids=input_ids.to(device),
            attention_mask=mask.to(device), position_ids=position_ids.to(device),
        ).last_hidden_state  # fmt: skip
        rows = torch.tensor([row for row, i in enumerate(chunk) for _ in positions[i]], dtype=torch.long)
        cols = torch.tensor([p - n_prefix for i in chunk for p in positions[i]], dtype=torch.long)
        if (cols < 0).any():
            raise ValueError("a slot position lies inside the shared prefix")
        probs = _probs(model, hidden[rows.to(device), cols.to(device)], ids, readout).cpu()
        sizes = [len(positions[i]) for i in chunk]
        for i, part in zip(chunk, torch.split(probs, sizes)):
            out[i] = part
    return out  # type: ignore[return-value]


@torch.inference_mode()
def greedy_slot_probs(
    model: Any,
    sequence: Sequence[int],
    positions: Sequence[int],
    ids: tuple[int, int],
    readout: str = "full",
    *,
    prefix_cache: tuple[Any, int] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Greedy label context: slot by slot, feed the predicted label ('+' if P(+) ≥ P(-)) into the label slot.

    Each segment (label, text, next structural token) is run once on the growing KV cache. ``prefix_cache``
    = (batch-1 cache of ``sequence[:n]``, n) skips the shared prefix. Returns P(+) per slot and the labels fed.
    """
    from transformers import DynamicCache

    device = _device(model)
    plus, minus = ids
    seq = list(sequence)
    if prefix_cache is not None:
        cache, done = expand_cache(prefix_cache[0], 1, model.config), prefix_cache[1]
    else:
        cache, done = DynamicCache(config=model.config), 0
    probs: list[torch.Tensor] = []
    labels: list[str] = []
    pending: list[int] = []  # the label chosen at the previous slot, not yet fed
    for pos in positions:
        segment = pending + seq[done : pos + 1]
        hidden = _base(model, cache, input_ids=torch.tensor([segment], device=device)).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, -1])
        probs.append(READOUTS[readout](logits, plus, minus).cpu()[0])
        label_plus = bool(logits[0, plus] >= logits[0, minus])  # same order under either readout
        labels.append("+" if label_plus else "-")
        pending = [plus if label_plus else minus]
        done = pos + 2  # skip the placeholder label token of the rendered string
    return torch.stack(probs) if probs else torch.zeros(0), labels
