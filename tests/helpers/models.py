"""The smallest causal LM the tests build: random-init, 1 layer, 32 wide, with the tiny test tokenizer."""

from __future__ import annotations

from pathlib import Path

from clinrl.llm.tiny import TinyModelConfig, build_tiny_model
from tests.helpers.tokenizers import make_tiny_tokenizer

SMALLEST_LM = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)


def build_smallest_lm(out: Path) -> Path:
    """Save the smallest LM and its tokenizer to ``out`` (a model folder) and return ``out``."""
    build_tiny_model(make_tiny_tokenizer(), SMALLEST_LM, out=out)
    return out
