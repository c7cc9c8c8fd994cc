"""Small causal LMs built on the spot: a byte-level BPE tokenizer trained on given texts and a
random-init Qwen2 or Llama model. Used by tests, benchmarks and the CPU demo, where no pretrained
weights can be downloaded. Real models load through ``transformers`` as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "TinyModelConfig", "build_tiny_model", "train_tokenizer"]

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]

# ChatML-style, like Qwen2.5's, so prompts look the same for tiny and real models.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, *, extra_special_tokens: Iterable[str] = ()):
    """Train a byte-level BPE tokenizer on ``texts`` (any text round-trips) with BOS/EOS/PAD and a chat template.

    Returns a ``transformers.PreTrainedTokenizerFast``; ``<|im_end|>`` ends an assistant turn.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + [t for t in extra_special_tokens if t not in SPECIAL_TOKENS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    if extra_special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": specials[len(SPECIAL_TOKENS) :]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@dataclass
class TinyModelConfig:
    """Shape of a random-init causal LM (defaults: 3 layers, 128 wide — trains in minutes on 2 CPU cores)."""

    arch: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = True
    seed: int = 0


def build_tiny_model(tokenizer, config: TinyModelConfig | None = None, out: str | Path | None = None):
    """A random-init Qwen2/Llama model sized to ``tokenizer``; saved with the tokenizer to ``out`` if given."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cfg = config or TinyModelConfig()
    kind = {"qwen2": Qwen2Config, "llama": LlamaConfig}[cfg.arch]
    model_config = kind(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(model_config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return model
