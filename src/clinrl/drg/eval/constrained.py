"""Constrained answers: once the model has written ``<answer>``, only a valid v34 description followed by
``</answer>`` (then end of sequence) can come out.

- transformers: :class:`AnswerConstraint`, a ``LogitsProcessor`` walking a prefix trie over token ids.
  Every description is tokenized once *in context* (``"<answer>" + description + "</answer>"`` minus
  the tokens of ``"<answer>"``; alone when the prefix does not tokenize the same way), and only that
  canonical tokenization is allowed, so a BPE merge across the tag boundary cannot create a second
  spelling. Rows are free until their generated text ends with ``<answer>``; then each step masks
  every token that does not continue a trie path; at the end of ``</answer>`` only end-of-sequence
  tokens remain. Use through :func:`transformers_constraint` (a factory for
  ``TransformersBackend.logits_processors``).
- vLLM: :func:`answer_regex`, a guided-decoding regex for the whole completion
  (``<think>…</think>`` with no ``<`` inside, then ``<answer>`` + one description + ``</answer>``).

The first ``<answer>`` a row writes starts the constraint, wherever it stands (one written inside the think
block still yields a valid description, but the format then fails). Limits: the trigger is the text
``<answer>`` at the end of the generated text; a tokenizer with a
token that glues ``>`` to the following letters (byte-level BPE pre-tokenizers never do) could slip
past it. A completion cut by ``max_new_tokens`` inside the answer has no closed answer block: it
counts as a format failure / no answer, never as an invalid answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from clinrl.drg.ontology import Ontology, load_ontology

__all__ = ["AnswerConstraint", "AnswerTrie", "answer_regex", "transformers_constraint"]

OPEN, CLOSE = "<answer>", "</answer>"


class _Node:
    __slots__ = ("children", "terminal", "allowed")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.terminal = False
        self.allowed: Any = None  # cached index tensor of the allowed next tokens


class AnswerTrie:
    """Prefix trie over the canonical token ids of ``description + "</answer>"``."""

    def __init__(self, sequences: Iterable[list[int]]):
        self.root = _Node()
        self.size = 0
        for ids in sequences:
            node = self.root
            for token in ids:
                node = node.children.setdefault(token, _Node())
            node.terminal = True
            self.size += 1

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, descriptions: Iterable[str]) -> AnswerTrie:
        """Tokenize each description the way it appears right after ``<answer>``."""
        prefix = tokenizer.encode(OPEN, add_special_tokens=False)
        sequences = []
        for text in descriptions:
            full = tokenizer.encode(OPEN + text + CLOSE, add_special_tokens=False)
            if full[: len(prefix)] == prefix:
                sequences.append(full[len(prefix) :])
            else:
                sequences.append(tokenizer.encode(text + CLOSE, add_special_tokens=False))
        return cls(sequences)


def _end_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a sequence: the tokenizer's EOS and ``<|im_end|>`` when the vocabulary has it."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None:
        ids.add(im_end)
    return sorted(ids)


class AnswerConstraint:
    """``LogitsProcessor``: free text until ``<answer>``, then only trie paths, then only end tokens.

    One instance per ``generate`` call (it keeps per-row state; the first call fixes the prompt length).
    """

    def __init__(self, tokenizer: Any, trie: AnswerTrie, *, lookback: int = 12):
        self.tokenizer, self.trie, self.lookback = tokenizer, trie, lookback
        self.end_ids = _end_ids(tokenizer)
        self._start: int | None = None
        self._states: list[Any] = []  # per row: None (free), a _Node (inside the answer) or "done"

    def _allowed(self, node: _Node, device: Any) -> Any:
        import torch

        if node.allowed is None or node.allowed.device != device:
            ids = list(node.children) + (self.end_ids if node.terminal else [])
            node.allowed = torch.tensor(ids or self.end_ids, dtype=torch.long, device=device)
        return node.allowed

    def _advance(self, input_ids: Any) -> None:
        for i, state in enumerate(self._states):
            if isinstance(state, _Node):
                child = state.children.get(int(input_ids[i, -1]))
                self._states[i] = child if child is not None else "done"
            elif state is None and input_ids.shape[1] > self._start:
                tail = input_ids[i, max(self._start, input_ids.shape[1] - self.lookback) :].tolist()
                if self.tokenizer.decode(tail, skip_special_tokens=False).endswith(OPEN):
                    self._states[i] = self.trie.root

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._start is None:
            self._start = input_ids.shape[1]
            self._states = [None] * input_ids.shape[0]
        self._advance(input_ids)
        if all(state is None for state in self._states):
            return scores
        masked = scores.clone()
        for i, state in enumerate(self._states):
            if state is None:
                continue
            if state == "done":
                allowed = torch.tensor(self.end_ids, dtype=torch.long, device=scores.device)
            else:
                allowed = self._allowed(state, scores.device)
            row = torch.full_like(scores[i], float("-inf"))
            row[allowed] = scores[i, allowed]
            masked[i] = row
        return masked


def transformers_constraint(ontology: Ontology | None = None) -> Callable[[Any], list[Any]]:
    """A ``TransformersBackend.logits_processors`` factory: a fresh :class:`AnswerConstraint` per batch,
    the trie built once per tokenizer."""
    onto = ontology if ontology is not None else load_ontology()
    tries: dict[int, AnswerTrie] = {}

    def factory(tokenizer: Any) -> list[Any]:
        trie = tries.get(id(tokenizer))
        if trie is None:
            trie = tries[id(tokenizer)] = AnswerTrie.for_tokenizer(tokenizer, [d.description for d in onto])
        return [AnswerConstraint(tokenizer, trie)]

    return factory


def answer_regex(ontology: Ontology | None = None) -> str:
    """Guided-decoding regex for vLLM: a think block without ``<``, then one v34 description answer."""
    onto = ontology if ontology is not None else load_ontology()
    choices = "|".join(re.escape(d.description) for d in onto)
    return rf"<think>[^<]*</think>\s*<answer>({choices})</answer>"
