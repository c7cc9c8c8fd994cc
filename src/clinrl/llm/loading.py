"""Load a causal LM and its tokenizer from a local folder (or a hub name already in the local cache).

One place decides device and dtype: CUDA → bfloat16 on the GPU, otherwise float32 on the CPU. Nothing is
downloaded unless the caller passes a hub name that is not cached and the machine can reach the hub.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError

__all__ = ["default_device", "load_causal_lm", "outside_zero3"]


@contextmanager
def outside_zero3() -> Iterator[None]:
    """Load models whole inside this block even while a DeepSpeed ZeRO-3 run is active.

    Under ZeRO-3 (``zero3_init_flag``), transformers builds every model in ``from_pretrained`` partitioned
    across the processes (zero.Init). That is right for the model being trained, which the engine wraps, but
    a model used on the side — the PRM that rewards note GRPO — would keep 0-element parameters and fail in
    its forward pass. This unsets transformers' ZeRO-3 marker for the block and restores it afterwards."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers without the integration
        yield
        return
    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    active = ref() if ref is not None else None
    if active is None or not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(active)


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
