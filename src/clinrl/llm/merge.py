"""``clinrl merge``: fold a LoRA adapter (a ``lora:`` SFT/GRPO run's output folder) into its base model and
write one full Hugging Face model folder that ``from_pretrained``, ``clinrl serve`` and vLLM load as-is.

The base model is the one named in the adapter's ``adapter_config.json`` (``base_model_name_or_path``)
unless ``base`` is given (the training run may have used a path that no longer exists). The merge runs in
float32 on the CPU by default, so a merged model is bit-for-bit the adapted model's function; the tokenizer
is taken from the adapter folder (the trainer saves it there), else from the base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinrl.cards import write_merged_card
from clinrl.errors import ClinrlError, DataError
from clinrl.llm.loading import load_tokenizer

__all__ = ["ADAPTER_CONFIG", "merge_adapter"]

ADAPTER_CONFIG = "adapter_config.json"


def _adapter_base(adapter: Path) -> str:
    path = adapter / ADAPTER_CONFIG
    if not path.is_file():
        raise DataError(f"not a LoRA adapter folder (no {ADAPTER_CONFIG})", path=adapter)
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as err:
        raise DataError(f"unreadable: {err}", path=path) from None
    if not isinstance(base, str) or not base:
        raise DataError("no base_model_name_or_path: pass --base", path=path, field="base_model_name_or_path")
    return base


def merge_adapter(
    adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "float32"
) -> dict[str, Any]:
    """Merge the LoRA weights of ``adapter`` into the base model and save the full model and tokenizer to
    ``out``; return a summary (base, parameter count, dtype)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, out = Path(adapter), Path(out)
    base_name = base or _adapter_base(adapter)
    torch_dtype = getattr(torch, dtype, None) if dtype in ("float32", "bfloat16", "float16") else None
    if torch_dtype is None:
        raise ClinrlError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    try:
        model = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch_dtype)
    except OSError as err:
        raise ClinrlError(
            f"cannot load the base model {base_name!r} (pass --base): {' '.join(str(err).split())[:200]}"
        ) from None
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    has_tokenizer = any((adapter / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    load_tokenizer(adapter if has_tokenizer else base_name).save_pretrained(out)
    write_merged_card(adapter, out, base_name)
    return {"adapter": str(adapter), "base": base_name, "out": str(out), "dtype": dtype,
            "parameters": sum(p.numel() for p in merged.parameters())}  # fmt: skip
