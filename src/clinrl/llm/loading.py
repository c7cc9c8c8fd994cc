"""Load a causal LM and its tokenizer from a local folder (or a hub name already in the local cache).

One place decides device and dtype: CUDA → bfloat16 on the GPU, otherwise float32 on the CPU. Nothing is
downloaded unless the user opted in with ``CLINRL_ALLOW_HUB=1`` (:mod:`clinrl.llm.hub`). Weights that
cannot be read (a truncated or corrupt ``model.safetensors``/``pytorch_model.bin``) are a one-line
:class:`ClinrlError`, never a traceback: :func:`weight_load_errors` lists what the readers raise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.llm.hub import local_files_only, resolve_model

__all__ = ["default_device", "ensure_pad_token", "load_causal_lm", "load_tokenizer", "weight_load_errors"]


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def weight_load_errors() -> tuple[type[BaseException], ...]:
    """The exceptions ``from_pretrained`` raises for unreadable files: ``OSError``/``ValueError`` (missing or
    malformed files), safetensors' ``SafetensorError`` (a cut or corrupt header or body), and for pickled
    ``.bin`` weights ``UnpicklingError``/``EOFError``. Bugs (``TypeError``, CUDA errors) stay uncaught."""
    import pickle

    errors: list[type[BaseException]] = [OSError, ValueError, EOFError, pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    return tuple(errors)


def load_causal_lm(path: str | Path, *, device: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` in eval mode; the tokenizer gets a pad token if it has none.

    ``dtype``: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """

    source = resolve_model(path)  # a missing folder fails here, before any hub request (or heavy import)
    import torch
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ClinrlError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=local_files_only())
    except weight_load_errors() as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ClinrlError(f"{path}: cannot load a causal LM ({exc.__class__.__name__}: {detail})") from None
    model.to(device).eval()
    return model, tokenizer


def load_tokenizer(name: str | Path) -> Any:
    """``AutoTokenizer.from_pretrained(name)`` with a pad token; a name that cannot be loaded (no such
    folder, a hub name not in the local cache while the hub is off) is a :class:`ClinrlError`, not a
    traceback. Offline unless ``CLINRL_ALLOW_HUB=1`` (:mod:`clinrl.llm.hub`)."""
    from transformers import AutoTokenizer

    source = resolve_model(name)  # a missing folder fails here, before any hub request
    try:
        return ensure_pad_token(AutoTokenizer.from_pretrained(source, local_files_only=local_files_only()))
    except (OSError, ValueError) as err:  # ValueError: a folder without tokenizer files
        first = " ".join(str(err).split())[:200]
        raise ClinrlError(f"cannot load the tokenizer of model {str(name)!r} ({type(err).__name__}: {first})") from None


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a padding token (its EOS) when it has none, as batching needs one; returns it."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
