"""``clinrl merge``: a LoRA adapter folded into its base model gives a full model with the adapted outputs."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.models import build_smallest_lm


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """The smallest LM and a LoRA adapter on it with non-zero (so: effective) B matrices."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("merge")
    base = build_smallest_lm(root / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(root / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


def test_cli_merge_writes_a_full_model_with_the_adapted_outputs(adapter, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from clinrl.cli import main

    base, folder = adapter
    main(["merge", "--adapter", str(folder), "--out", str(tmp_path / "merged")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["base"] == str(base) and summary["parameters"] > 0
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(folder)).eval()
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, plain(ids).logits)
    assert (tmp_path / "merged" / "tokenizer_config.json").is_file()
    from clinrl.cards import MARKER

    card = (tmp_path / "merged" / "README.md").read_text()  # no clinrl card in the adapter: data of unknown origin
    assert MARKER in card and "library_name: transformers" in card and "treat as restricted" in card


def test_cli_merge_bad_inputs_are_one_line_errors(adapter, tmp_path, capsys):
    from clinrl.cli import main

    base, folder = adapter
    for argv, needle in (
        (["--adapter", str(base)], "not a LoRA adapter folder"),
        (["--adapter", str(folder), "--base", str(tmp_path / "missing")], "cannot load the base model"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["merge", *argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:  # a choice: typer's own invalid-choice line, before loading
        main(["merge", "--adapter", str(folder), "--dtype", "int3", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'int3' is not one of 'float32', 'bfloat16', 'float16'" in err
