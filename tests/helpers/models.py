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


# head_dim 32: vLLM's CPU attention refuses 16 (the smallest LM's)
JUDGE_LM = TinyModelConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=128)
JUDGE_CORPUS = [
    "Question: Is this statement supported by the dialogue? Answer Yes or No.\nAnswer: Yes",
    "Question: Does the note cover every problem? Answer Yes or No.\nAnswer: No",
    "Yes No yes no YES NO Yes. No. The patient reports chest pain and shortness of breath.",
    "Problem: hypertension. Plan: continue lisinopril, check a basic metabolic panel, follow up in two weeks.",
]


def build_judge_lm(out: Path) -> Path:
    """A random-init LM (the smallest shape) whose next token is almost always a yes or a no, by a weight
    edit: every embedding row shares a large constant in dimension 0, larger for the yes/no tokens, so with
    tied embeddings they top every next-token distribution; the attention output is scaled up so that which
    of the two wins, and by how much, depends on the prompt. A judge's P(+) on it is neither constant nor 0.5
    (about 0.4-0.7 on short dialogues, after "Answer:" and after the chat template's turn alike)."""
    import torch

    from clinrl.llm.tiny import train_tokenizer

    tokenizer = train_tokenizer(JUDGE_CORPUS * 8, vocab_size=400)
    model = build_tiny_model(tokenizer, JUDGE_LM)
    verdicts = [i for w in ("Yes", " Yes", "yes", " yes", "No", " No", "no", " no")
                for i in tokenizer(w, add_special_tokens=False)["input_ids"][-1:]]  # fmt: skip
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        emb = model.get_input_embeddings().weight
        emb.copy_(torch.randn(emb.shape, generator=gen))
        emb[:, 0] = 10.0
        emb[verdicts, 0] += 4.0
        emb[verdicts[4:], 0] += 2.5  # the no tokens: tuned so that yes and no are near even
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(200.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
