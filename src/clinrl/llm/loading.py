"""Load a causal LM and its tokenizer from a local folder (or a hub name already in the local cache).

One place decides device and dtype: CUDA → bfloat16 on the GPU, otherwise float32 on the CPU. Nothing is
downloaded unless the caller passes a hub name that is not cached and the machine can reach the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError

__all__ = ["default_device", "load_causal_lm"]


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(path: str | Path, *, device: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` in eval mode; the tokenizer gets a pad token if it has none.

    ``dtype``: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from clinrl.config import load_tokenizer

    device = device or default_device()
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ClinrlError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    tokenizer = load_tokenizer(path)  # a clear error for a missing folder or an uncached hub name
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ClinrlError(f"{path}: cannot load a causal LM ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    model.to(device).eval()
    return model, tokenizer
