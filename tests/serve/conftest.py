"""Fixtures shared by the server tests: the smallest causal LM and a PRM built on it, saved as folders."""

from __future__ import annotations

import pytest
import torch

from clinrl.llm.tiny import build_tiny_model
from clinrl.prm.format import SpecialTokens
from clinrl.prm.model import PRMMeta, save_prm
from tests.helpers.models import SMALLEST_LM, build_smallest_lm
from tests.helpers.tokenizers import make_tiny_tokenizer


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """(LM folder, PRM folder), loadable exactly as ``clinrl serve --model … --prm …`` loads them."""
    torch.set_num_threads(1)
    lm = tmp_path_factory.mktemp("lm")
    build_smallest_lm(lm)
    tokenizer = make_tiny_tokenizer()
    model = build_tiny_model(tokenizer, SMALLEST_LM)
    tokens = SpecialTokens.new()
    tokens.add_to_tokenizer(tokenizer, model)
    prm = save_prm(tmp_path_factory.mktemp("prm"), model, tokenizer,
                   PRMMeta("causal-lm", "prm", tokens, "special_token", False, 2048, None, "tiny"))  # fmt: skip
    return lm, prm
