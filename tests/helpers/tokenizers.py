"""A tiny real tokenizer built locally (no downloads): byte-level BPE + a ChatML-style chat template.

Use it wherever a test needs genuine tokenisation, offsets and ``apply_chat_template``:

    from tests.helpers.tokenizers import make_tiny_tokenizer
    tok = make_tiny_tokenizer()
"""

from __future__ import annotations

from functools import lru_cache

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from clinrl.llm.tiny import CHAT_TEMPLATE, train_tokenizer

_CORPUS = [
    "The patient was admitted with heart failure and shock and treated with diuretics.",
    "Brief hospital course: pneumonia treated with antibiotics, discharged home in stable condition.",
    "What is the most likely MS-DRG based on the following discharge summary of a hospitalization?",
    "<think> The principal diagnosis is sepsis with a major complication. </think>",
    "<answer>SEPTICEMIA OR SEVERE SEPSIS WITHOUT MV >96 HOURS WITH MCC</answer>",
    "A CC is a complication or comorbidity; an MCC is a major complication or comorbidity.",
]


@lru_cache(maxsize=4)
def _tokenizer_json(vocab_size: int) -> str:
    """Train once per vocabulary size; each call below gets a fresh tokenizer object from the JSON."""
    return train_tokenizer(_CORPUS * 4, vocab_size).backend_tokenizer.to_str()


def make_tiny_tokenizer(*, chat_template: bool = True, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A fresh byte-level BPE tokenizer (any text round-trips) with BOS/EOS/PAD and, by default, a chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
