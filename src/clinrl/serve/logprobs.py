"""Token log-probabilities for ``/v1/completions`` (``logprobs``, ``echo``), in OpenAI's legacy format:
``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``.

They come from one forward pass of the local ``transformers`` model over prompt + completion, fed in
chunks of :data:`CHUNK_TOKENS` through the model's KV cache: memory stays at one chunk's logits (chunk ×
vocabulary) however long the text, and a stop flag (time limit, client gone) is checked between chunks.
The length is bounded by the server's caps (``--max-prompt-tokens`` + ``--max-new-tokens``).
"""

from __future__ import annotations

import inspect
import math
import threading
from typing import Any

from clinrl.llm.backends import GenerationCancelled

__all__ = ["CHUNK_TOKENS", "legacy_logprobs", "score_tokens"]

CHUNK_TOKENS = 512
FLOOR = -9999.0  # JSON has no -inf: a token the model rules out gets this (as vLLM does)
_CONTEXT = 6  # tokens of left context when decoding one token's text (byte pieces, SentencePiece spaces)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else FLOOR


def score_tokens(model: Any, ids: list[int], top: int, stop: threading.Event | None = None) -> tuple[list[float | None], list[list[tuple[int, float]] | None]]:  # fmt: skip
    """For each position ``i``: log P(ids[i] | ids[:i]) and the ``top`` most likely tokens there (id, log
    prob); position 0 has no context (None, None). Raises GenerationCancelled once ``stop`` is set."""
    import torch

    chosen: list[float | None] = [None]
    tops: list[list[tuple[int, float]] | None] = [None]
    n = len(ids)
    if n < 2:
        return chosen, tops
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    fed = n - 1  # the last token is only a target
    chunked = fed > CHUNK_TOKENS
    cache_arg = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )  # transformers ≥ 5.2x
    past = None
    with torch.no_grad():
        for start in range(0, fed, CHUNK_TOKENS):
            if stop is not None and stop.is_set():
                raise GenerationCancelled("scoring cancelled")
            end = min(start + CHUNK_TOKENS, fed)
            if chunked:
                out = model(input_ids=input_ids[:, start:end], use_cache=True, **{cache_arg: past})
                past = getattr(out, "cache", None)
                past = getattr(out, "past_key_values", None) if past is None else past
            else:
                out = model(input_ids=input_ids[:, start:end], use_cache=False)
            logp = out.logits[0].float().log_softmax(dim=-1)
            del out
            targets = input_ids[0, start + 1 : end + 1]
            chosen.extend(_finite(v) for v in logp.gather(1, targets[:, None])[:, 0].tolist())
            if top > 0:
                values, indices = logp.topk(min(top, logp.shape[-1]), dim=-1)
                for vs, js in zip(values.tolist(), indices.tolist()):
                    tops.append([(j, _finite(v)) for j, v in zip(js, vs)])
            else:
                tops.extend([] for _ in range(end - start))
    return chosen, tops


def token_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds, decoded with a few tokens of left context (so a token that starts with a
    space, or ends a multi-byte character, reads as it does in the whole text)."""
    texts = []
    for i in range(len(ids)):
        lo = max(0, i - _CONTEXT)
        before = tokenizer.decode(ids[lo:i]) if i > lo else ""
        texts.append(tokenizer.decode(ids[lo : i + 1])[len(before) :])
    return texts


def legacy_logprobs(tokenizer: Any, ids: list[int], chosen: list[float | None],
                    tops: list[list[tuple[int, float]] | None], first: int) -> dict[str, Any]:  # fmt: skip
    """OpenAI's ``choices[i].logprobs`` for ``ids[first:]``: the tokens' text, their log probs (None for the
    very first token of the text), the top alternatives as ``{text: logprob}`` (always holding the chosen
    token, as OpenAI does) and each token's character offset in the answer's ``text``."""
    texts = token_texts(tokenizer, ids)
    single: dict[int, str] = {}

    def text_of(j: int) -> str:
        if j not in single:
            single[j] = tokenizer.decode([j])
        return single[j]

    tokens, logps, top_out, offsets = [], [], [], []
    offset = 0
    for i in range(first, len(ids)):
        tokens.append(texts[i])
        offsets.append(offset)
        offset += len(texts[i])
        logps.append(chosen[i])
        alternatives = tops[i]
        if alternatives is None:
            top_out.append(None)
            continue
        entry: dict[str, float] = {}
        for j, v in [*alternatives, (ids[i], chosen[i])]:
            key = text_of(j)
            if v is not None and (key not in entry or v > entry[key]):
                entry[key] = v
        top_out.append(entry)
    return {"tokens": tokens, "token_logprobs": logps, "top_logprobs": top_out, "text_offset": offsets}
