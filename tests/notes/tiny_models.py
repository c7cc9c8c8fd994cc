"""Tiny untrained models for the notes tests (built once per session, a second or two): a causal-LM PRM
folder (clinrl_prm.json + model + tokenizer) and a chat policy, both 1-layer 32-wide Qwen2."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

SMALL = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)


@lru_cache(maxsize=1)
def tiny_prm_dir() -> Path:
    import torch

    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model
    from clinrl.prm.model import PRMMeta, prepare_tokens, save_prm
    from tests.helpers.tokenizers import make_tiny_tokenizer

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="clinrl-notes-prm-"))
    tokenizer = make_tiny_tokenizer(chat_template=False)
    model = build_tiny_model(tokenizer, TinyModelConfig(**SMALL, seed=3))
    tokens, _ = prepare_tokens(tokenizer, model, "new")
    meta = PRMMeta(head="causal-lm", objective="prm", tokens=tokens, loss_mode="special_token", notes_only=False,
                   max_length=1024, dialogue_max_tokens=None, base_model="tiny", score_aggregate="mean")  # fmt: skip
    return save_prm(out, model, tokenizer, meta)


@lru_cache(maxsize=1)
def tiny_policy_dir() -> Path:
    import torch

    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model
    from tests.helpers.tokenizers import make_tiny_tokenizer

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="clinrl-notes-policy-"))
    build_tiny_model(make_tiny_tokenizer(), TinyModelConfig(**SMALL, seed=4), out=out)
    return out
