"""A saved tiny causal-LM PRM folder (random init, no training): what the scorer backends' tests load."""

from __future__ import annotations

from pathlib import Path


def build_tiny_prm(out: Path, *, max_length: int = 4096, head: str = "causal-lm") -> Path:
    """Random-init 2-layer 64-wide Qwen2 (head size 32, which vLLM's CPU attention supports), the tiny test
    tokenizer plus fresh PRM tokens, and ``clinrl_prm.json``. The '+'/'-' rows of the untied LM head are scaled
    up so that P(+) spreads over (0, 1) instead of sitting near 1/|V|, where any two scorers would agree.

    ``head`` only changes what ``clinrl_prm.json`` says (for tests of backends that refuse a head by its meta)."""
    import torch

    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model
    from clinrl.prm.format import SpecialTokens
    from clinrl.prm.model import PRMMeta, save_prm
    from tests.helpers.tokenizers import make_tiny_tokenizer

    tokenizer = make_tiny_tokenizer()
    tokens = SpecialTokens.new()
    ids = tokens.add_to_tokenizer(tokenizer)
    shape = TinyModelConfig(arch="qwen2", hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                            intermediate_size=128, max_position_embeddings=8192, tie_word_embeddings=False)  # fmt: skip
    model = build_tiny_model(tokenizer, shape)
    with torch.no_grad():
        model.get_output_embeddings().weight[[ids.plus, ids.minus]] *= 40.0
    meta = PRMMeta(head=head, objective="prm", tokens=tokens, loss_mode="special_token",  # type: ignore[arg-type]
                   notes_only=False, max_length=max_length, dialogue_max_tokens=None,
                   base_model="tiny:qwen2")  # fmt: skip
    return save_prm(out, model, tokenizer, meta)
