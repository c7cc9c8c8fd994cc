"""Text generation behind one interface, whatever runs the model.

    backend = get_backend("transformers", model="runs/sft")      # or "vllm", "openai"
    texts = backend.generate(prompts, SamplingParams(n=8, temperature=0.6, top_p=0.95))

A *prompt* is either a list of chat messages (``[{"role": "user", "content": …}]``, rendered with the
model's chat template) or a plain string (sent as is). ``generate`` returns, per prompt, ``n`` completion
texts (the generated part only, special tokens removed, cut at the first stop string).

Backends register themselves in ``BACKENDS`` (name → factory); the OpenAI-compatible HTTP client lives in
``clinrl.llm.openai_client`` and registers as ``"openai"``.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence, Union

from clinrl.errors import ClinrlError

__all__ = [
    "BACKENDS",
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
    "stop_when",
]

Message = dict[str, str]
Prompt = Union[str, Sequence[Message]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy (then ``n`` copies are identical)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ClinrlError(f"n must be ≥ 1, got {self.n}")
        if self.temperature < 0:
            raise ClinrlError(f"temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ClinrlError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ClinrlError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")

    def with_(self, **changes: Any) -> "SamplingParams":
        return replace(self, **changes)


class GenerationBackend(Protocol):
    """Anything that turns prompts into ``n`` completions each."""

    name: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]: ...


class GenerationCancelled(ClinrlError):
    """Generation was cancelled (its ``cancel`` event was set) before it finished."""


def stop_when(should_stop: Callable[[], bool]) -> Any:
    """A ``transformers`` stopping criterion that ends generation at the next token once ``should_stop()``."""
    import torch
    from transformers import StoppingCriteria

    class _StopWhen(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return _StopWhen()


def generate_cancellable(
    backend: GenerationBackend, prompts: Sequence[Prompt], params: SamplingParams, cancel: threading.Event | None
) -> list[list[str]]:
    """``backend.generate``, passing ``cancel`` to backends that can stop early (those whose ``generate``
    takes it); others run to the end."""
    if cancel is not None and "cancel" in inspect.signature(backend.generate).parameters:
        return backend.generate(prompts, params, cancel=cancel)  # type: ignore[call-arg]
    return backend.generate(prompts, params)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


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
    def from_path(cls, model: str, **kwargs: Any) -> "TransformersBackend":
        from clinrl.llm.loading import load_causal_lm

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
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          num_return_sequences=params.n)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        out: list[list[str]] = []
        device = next(self.model.parameters()).device
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="generate", disable=not self.progress, leave=False):
            batch = tok(texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
            if self.logits_processors is not None:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList(self.logits_processors(tok))
            if cancel is not None:
                from transformers import StoppingCriteriaList

                kwargs["stopping_criteria"] = StoppingCriteriaList([stop_when(cancel.is_set)])
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


@dataclass
class VLLMBackend:
    """vLLM offline engine (``pip install 'clinrl[vllm]'``, GPU). ``guided_choice``: restrict whole
    completions to these strings (used for constrained answers) — or pass a regex via ``guided_regex``."""

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    guided_regex: str | None = None
    name: str = field(default="vllm", init=False)
    _llm: Any = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Start the engine now (it starts on first use otherwise): a missing vLLM or model folder fails
        here, so a caller can start the backend before it writes anything about its run."""
        self._engine()

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError:
                raise ClinrlError("the vllm backend needs the optional extra: pip install 'clinrl[vllm]'") from None
            from clinrl.llm.hub import resolve_model

            self._llm = LLM(model=resolve_model(self.model), tensor_parallel_size=self.tensor_parallel_size,
                            gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len)
        return self._llm

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        from vllm import SamplingParams as VParams

        llm = self._engine()
        extra: dict[str, Any] = {}
        if self.guided_regex is not None:
            extra.update(_vllm_regex_constraint(self.guided_regex))
        vparams = VParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                          max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=params.seed,
                          **extra)
        tok = llm.get_tokenizer()
        texts = [render_prompt(tok, p) for p in prompts]
        outputs = llm.generate(texts, vparams, use_tqdm=True)
        return [[o.text for o in req.outputs] for req in outputs]


def _vllm_regex_constraint(regex: str) -> dict[str, Any]:
    """The SamplingParams keyword for a regex constraint: ``structured_outputs`` (vLLM ≥ 0.11) or the older
    ``guided_decoding``."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(regex=regex)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(regex=regex)}


BACKENDS: dict[str, Callable[..., GenerationBackend]] = {}


def register_backend(name: str, factory: Callable[..., GenerationBackend]) -> None:
    """Make ``get_backend(name, …)`` build backends with ``factory(**kwargs)``."""
    BACKENDS[name] = factory


register_backend("transformers", TransformersBackend.from_path)
register_backend("vllm", VLLMBackend)


def get_backend(name: str, **kwargs: Any) -> GenerationBackend:
    """Build a registered backend: ``transformers`` (model=PATH), ``vllm`` (model=PATH), ``openai``
    (endpoint=URL, model=NAME)."""
    if name == "openai" and name not in BACKENDS:
        import clinrl.llm.openai_client  # noqa: F401  (registers itself)
    if name not in BACKENDS:
        raise ClinrlError(f"unknown backend {name!r}; choose from {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](**kwargs)
