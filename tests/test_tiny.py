import torch

from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer


def test_tiny_model_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = train_tokenizer(
        ["heart failure with mcc", "<think>x</think><answer>y</answer>"] * 5,
        vocab_size=300,
        extra_special_tokens=["<|prm_plus|>"],
    )
    text = "Pneumonia, ünïcode & 10 mg."
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert len(tok("<|prm_plus|>", add_special_tokens=False)["input_ids"]) == 1
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")
    for arch in ("qwen2", "llama"):
        model = build_tiny_model(tok, TinyModelConfig(arch=arch, hidden_size=32, num_layers=1), out=tmp_path / arch)
        assert model.config.vocab_size == len(tok)
        again = AutoModelForCausalLM.from_pretrained(tmp_path / arch)
        ids = torch.tensor([tok("heart failure")["input_ids"]])
        assert torch.allclose(model(ids).logits, again(ids).logits)
        assert AutoTokenizer.from_pretrained(tmp_path / arch).chat_template == tok.chat_template
