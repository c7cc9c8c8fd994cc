"""SFT data building (traces, answer-only, knowledge rows, length counts) and a tiny run with resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from clinrl.cards import MARKER
from clinrl.config import RECIPES_DIR, RecipeError
from clinrl.drg.prompts import DEFAULT_THINK, SYSTEM_PROMPT
from clinrl.drg.train.sft import build_sft_dataset, count_too_long, load_sft_config, read_traces, train_sft
from clinrl.errors import ClinrlError, DataError
from tests.drg.tiny_training import MAX_PROMPT_TOKENS, StopAt, tiny_workspace

RECIPE = RECIPES_DIR / "tiny" / "sft.yaml"


@pytest.fixture(scope="module")
def ws():
    return tiny_workspace()


@pytest.fixture(scope="module")
def tokenizer(ws):
    return AutoTokenizer.from_pretrained(ws.model)


def write_traces(path, ids):
    lines = [
        {"hadm_id": int(ids[0]), "explanation": "Admitted for the principal condition; severity from comorbidities."},
        {"hadm_id": int(ids[1]), "explanation": "Sneaky <answer>X</answer> inside"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    return path


def test_traces_join_drop_tagged_and_fall_back_to_answer_only(ws, tokenizer, tmp_path):
    ids = list(pd.read_parquet(ws.sft)["hadm_id"][:4])
    traces = write_traces(tmp_path / "traces.jsonl", ids)
    cfg = load_sft_config(
        RECIPE, {**ws.sft_overrides(tmp_path / "o", limit=4), "traces": str(traces), "knowledge": "true"}
    )
    dataset, counts = build_sft_dataset(cfg, tokenizer)
    assert counts["traces_rows"] == 2 and counts["traces_dropped_tags"] == 1
    assert counts["cases_with_trace"] == 1 and counts["cases_answer_only"] == 3
    assert counts["knowledge_rows"] == 28 and len(dataset) == 4 + 28
    first, second = dataset[0], dataset[1]
    assert first["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "severity from comorbidities" in first["completion"][0]["content"]
    assert DEFAULT_THINK in second["completion"][0]["content"]  # the tagged trace was dropped


def test_bad_trace_lines_name_the_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"hadm_id": 1, "explanation": "ok"}\n{"hadm_id": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 2.*explanation"):
        read_traces(bad)
    with pytest.raises(DataError, match="not found"):
        read_traces(tmp_path / "missing.jsonl")


def test_too_long_rows_are_counted(ws, tokenizer, tmp_path):
    cfg = load_sft_config(RECIPE, ws.sft_overrides(tmp_path, limit=6))
    dataset, _ = build_sft_dataset(cfg, tokenizer)
    lengths = sorted(len(tokenizer.apply_chat_template(r["prompt"] + r["completion"])["input_ids"]) for r in dataset)
    assert count_too_long(dataset, tokenizer, lengths[-1])["rows_longer_than_max_length"] == 0
    cut = count_too_long(dataset, tokenizer, lengths[2])
    assert cut["rows_longer_than_max_length"] == sum(n > lengths[2] for n in lengths)
    assert cut["rows_prompt_fills_max_length"] == 0  # completions are ~35 tokens; cutting at a full row keeps prompts
    assert count_too_long(dataset, tokenizer, 1) == {
        "rows_longer_than_max_length": 6,
        "rows_prompt_fills_max_length": 6,
    }


def test_max_length_is_required(ws, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {ws.model}\ndata: {ws.sft}\noutput_dir: {tmp_path}\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="max_length"):
        load_sft_config(path)


def test_tiny_sft_runs_reports_cut_rows_and_resumes(ws, tmp_path):
    out = tmp_path / "sft"
    overrides = ws.sft_overrides(
        out,
        **{
            "training.max_steps": 3,
            "training.save_strategy": "steps",
            "training.save_steps": 1,
            "training.max_length": MAX_PROMPT_TOKENS + 10,
        },
    )
    cfg = load_sft_config(RECIPE, overrides)
    first = train_sft(cfg, callbacks=[StopAt(2)])
    assert first["global_step"] == 2 and first["rows"] == 8
    # the prompts are cut to MAX_PROMPT_TOKENS, so every row loses some completion tokens but none loses all
    assert first["rows_longer_than_max_length"] == 8 and first["rows_prompt_fills_max_length"] == 0
    assert (out / "config.json").is_file() and (out / "clinrl_recipe.json").is_file()
    with pytest.raises(ClinrlError, match="--resume"):
        train_sft(cfg)
    resumed = train_sft(cfg, resume=True)
    assert resumed["global_step"] == 3 and resumed["resumed_from"].endswith("checkpoint-2")
    # TRL writes its card at every checkpoint and on save: after checkpoints and a resume, ours is the one there
    card = (out / "README.md").read_text()
    assert MARKER in card and "fine-tuned version of" not in card and "SYNTHETIC" in card
    state = json.loads((out / "trainer_state.json").read_text())
    assert f"| train_loss | {state['log_history'][-1]['train_loss']:.6g} |" in card
    assert not any(text[:60] in card for text in pd.read_parquet(ws.sft)["text"])  # no note text
