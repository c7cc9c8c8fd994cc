"""Saved-PRM contract (clinrl_prm.json, load/save), scoring inputs and the reference P(+) read-out."""

from __future__ import annotations

import json

import pytest
import torch

from clinrl.errors import DataError
from clinrl.prm.encode import EncodeSettings, PRMInputError, encode_causal, encode_windows, select_dialogue_lines
from clinrl.prm.format import SpecialTokens, render_prm_string
from clinrl.prm.model import META_FILE, PRMMeta, encode_for_scoring, load_prm, save_prm, slot_probabilities
from clinrl.prm.schema import Note, Problem, Step
from tests.helpers.tokenizers import make_tiny_tokenizer

DIALOGUE = "\n".join(
    [
        "[doctor] good morning.",
        "[patient] my knee hurts when i climb stairs.",
        "[doctor] we will start metformin 500 mg for the diabetes.",
        "[patient] okay.",
        "[doctor] and ibuprofen for the knee pain, 400 mg twice a day.",
    ]
)


def note() -> Note:
    return Note(
        problems=[
            Problem("Diabetes:", "1", [Step("Plan: start metformin 500 mg.", "1")]),
            Problem("Knee pain:", "2", [Step("Plan: ibuprofen 400 mg twice a day.", "1"), Step("Stairs hurt.", "2")]),
        ],
        dialogue=DIALOGUE,
    )


@pytest.fixture(scope="module")
def causal_prm(tmp_path_factory):
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model

    tokenizer = make_tiny_tokenizer()
    model = build_tiny_model(tokenizer, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                                        intermediate_size=64))  # fmt: skip
    tokens = SpecialTokens.new()
    tokens.add_to_tokenizer(tokenizer, model)
    meta = PRMMeta("causal-lm", "prm", tokens, "special_token", False, 2048, None, "tiny")
    out = save_prm(tmp_path_factory.mktemp("prm"), model, tokenizer, meta)
    return out


def test_meta_file_follows_the_contract(causal_prm):
    raw = json.loads((causal_prm / META_FILE).read_text())
    assert {"head", "objective", "tokens", "loss_mode", "notes_only", "max_length", "dialogue_max_tokens",
            "base_model"} <= raw.keys()  # fmt: skip
    assert raw["tokens"] == SpecialTokens.new().to_json_dict()
    assert raw["head"] == "causal-lm" and raw["dialogue_max_tokens"] is None
    loaded = load_prm(causal_prm)
    assert loaded.meta == PRMMeta.from_dict(raw) and loaded.meta.tokens == SpecialTokens.new()
    assert not loaded.model.training


def test_causal_probabilities_read_plus_at_the_structural_token(causal_prm):
    loaded = load_prm(causal_prm)
    n = note()
    [window] = encode_for_scoring(n, DIALOGUE, loaded)
    text = render_prm_string(n, loaded.meta.tokens, "placeholder")
    expected_ids = [loaded.tokenizer.bos_token_id] + loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert window.input_ids == expected_ids  # placeholder rendering, BOS, no EOS at scoring
    with torch.no_grad():
        logits = loaded.model(torch.tensor([window.input_ids])).logits[0]
    want = [float(torch.softmax(logits[s.token_index], -1)[loaded.tokens.plus]) for s in window.slots]
    got = slot_probabilities(loaded, n)
    assert got == pytest.approx(want, abs=1e-6) and len(got) == n.n_label_positions


def test_causal_dialogue_is_cut_to_whole_first_lines(causal_prm):
    loaded = load_prm(causal_prm)
    tokenizer, tokens, ids = loaded.tokenizer, loaded.meta.tokens, loaded.tokens
    full = encode_causal(note(), DIALOGUE, tokenizer, tokens, ids, EncodeSettings(max_length=4096))
    short = encode_causal(note(), DIALOGUE, tokenizer, tokens, ids, EncodeSettings(max_length=len(full.input_ids) - 5))
    kept = short.extras["dialogue_lines_kept"]
    assert 0 <= kept < 5 and len(short.input_ids) <= len(full.input_ids) - 5
    cut = Note(problems=note().problems, dialogue="\n".join(DIALOGUE.split("\n")[:kept]))
    assert short.input_ids[1:] == tokenizer(render_prm_string(cut, tokens, "placeholder"),
                                            add_special_tokens=False)["input_ids"]  # fmt: skip
    bounded = encode_causal(note(), DIALOGUE, tokenizer, tokens, ids, EncodeSettings(dialogue_max_tokens=12))
    assert bounded.extras["dialogue_lines_kept"] < 5
    with pytest.raises(PRMInputError):
        encode_causal(note(), DIALOGUE, tokenizer, tokens, ids, EncodeSettings(max_length=10))


def test_load_refuses_a_folder_without_meta(tmp_path):
    with pytest.raises(DataError, match=META_FILE):
        load_prm(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"head": "rnn", "objective": "prm"}))
    with pytest.raises(DataError, match="head"):
        load_prm(tmp_path)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from clinrl.prm.model import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokens = SpecialTokens.new()
    return tokenizer, tokens, tokens.add_to_tokenizer(tokenizer)


def test_encoder_windows_cover_every_slot_once_and_fit(minilm_tokenizer):
    tokenizer, tokens, ids = minilm_tokenizer
    long = note()
    long.problems[1].steps = [Step(f"Plan: ibuprofen {k} mg for the knee pain after climbing stairs.", str(k))
                              for k in range(1, 12)]  # fmt: skip
    settings = EncodeSettings("token-classification", max_length=96, line_max_tokens=24)
    windows = encode_windows(long, DIALOGUE, tokenizer, tokens, ids, settings)
    slots = sorted(s.index for w in windows for s in w.slots)
    assert slots == list(range(long.n_label_positions))
    assert len(windows) > len(long.problems) + 1  # the long problem was split at step boundaries
    for w in windows:
        assert len(w.input_ids) <= 96 and len(w.token_type_ids) == len(w.input_ids)
        assert w.input_ids[0] == tokenizer.cls_token_id and w.input_ids[-1] == tokenizer.sep_token_id
        assert ids.plus not in w.input_ids and ids.minus not in w.input_ids
        first_sep = w.input_ids.index(tokenizer.sep_token_id)
        assert all(s.token_index < first_sep for s in w.slots)  # slots sit in the note segment
        assert w.token_type_ids == [0] * (first_sep + 1) + [1] * (len(w.input_ids) - first_sep - 1)
    kinds = [s.kind for s in windows[-1].slots]
    assert kinds == ["note_completeness", "end_of_note"]


def test_dialogue_lines_are_picked_by_overlap_in_dialogue_order(minilm_tokenizer):
    tokenizer = minilm_tokenizer[0]
    line = lambda k: tokenizer(DIALOGUE.split("\n")[k], add_special_tokens=False)["input_ids"]  # noqa: E731
    got = select_dialogue_lines(
        "Plan: start metformin 500 mg.", DIALOGUE, tokenizer, budget=len(line(2)), line_max_tokens=64
    )
    assert got == line(2)
    both = select_dialogue_lines("metformin; knee ibuprofen", DIALOGUE, tokenizer, budget=200, line_max_tokens=64)
    assert both[: len(line(1))] == line(1)  # dialogue order kept: line 1 (knee) before line 2 (metformin)
    assert both == line(1) + line(2) + line(4)


def test_unsupported_words_list_what_the_dialogue_never_says():
    from clinrl.prm.encode import unsupported_words

    dialogue = "[doctor] take twenty five milligrams of lisinopril twice a day for two weeks."
    assert unsupported_words("Plan: lisinopril 25 mg 2 times a day for 2 weeks.", dialogue, 5) == ["times"]
    assert unsupported_words("Plan: start digoxin 0.125 mg and lisinopril 30 mg.", dialogue, 5) == [
        "digoxin",
        "0",
        "125",
        "30",
    ]
    assert unsupported_words("Plan: start digoxin 0.125 mg and lisinopril 30 mg.", dialogue, 2) == ["digoxin", "0"]
    assert unsupported_words("Plan: follow up.", dialogue, 5) == []  # generic note words are never listed


def test_marked_windows_show_unsupported_words_before_the_slot(minilm_tokenizer):
    tokenizer, tokens, ids = minilm_tokenizer
    settings = EncodeSettings("token-classification", max_length=128, mark_unsupported=4)
    n = note()
    n.problems[0].steps[0].text = "Plan: start digoxin 500 mg."
    windows = encode_windows(n, DIALOGUE, tokenizer, tokens, ids, settings)
    first = windows[0]
    step_at = first.slots[1].token_index
    before = tokenizer.decode(first.input_ids[1:step_at])
    assert before.endswith("( unsupported : digoxin )")
    plain = encode_windows(n, DIALOGUE, tokenizer, tokens, ids, EncodeSettings("token-classification", max_length=128))
    assert "unsupported" not in tokenizer.decode(plain[0].input_ids)


def test_quantities_read_number_words_and_units_alike():
    from clinrl.prm.encode import quantities

    assert quantities("take twenty five milligrams twice a day for two weeks") == ["25 mg", "2 week"]
    assert quantities("Lisinopril 25mg daily; recheck in 2 wks; EF 45%.") == ["25 mg", "2 week", "45 %"]
    assert quantities("follow up in 3, then") == []  # a bare number is not a quantity


def test_unsupported_words_with_quantities_catch_a_changed_dose_of_supported_words():
    from clinrl.prm.encode import unsupported_words

    dialogue = "[doctor] take twenty milligrams of lisinopril; we will recheck in 10 days."
    step = "Plan: lisinopril 10 mg, recheck in 20 days."  # every word and number occurs in the dialogue
    assert unsupported_words(step, dialogue, 5) == []
    assert unsupported_words(step, dialogue, 5, with_quantities=True) == ["10mg", "20day"]
    assert unsupported_words("Plan: lisinopril 20 mg.", dialogue, 5, with_quantities=True) == []


def test_item_evidence_gives_every_step_its_own_dialogue_line(minilm_tokenizer):
    tokenizer = minilm_tokenizer[0]
    dialogue = "\n".join([
        "[doctor] the knee pain is worse at night.",
        "[patient] yes the knee pain is worse at night.",
        "[doctor] metformin too.",
    ])  # fmt: skip
    line = lambda k: tokenizer(dialogue.split("\n")[k], add_special_tokens=False)["input_ids"]  # noqa: E731
    assert len(line(2)) <= len(line(1))
    items = ["Knee pain, worse at night.", "Start metformin."]
    budget = len(line(0)) + len(line(1))
    # one query: the two knee lines share more words with the problem than the metformin line, and fill the budget
    whole = select_dialogue_lines("\n".join(items), dialogue, tokenizer, budget=budget, line_max_tokens=64)
    assert whole == line(0) + line(1)
    # per item, round robin: each item's best line first, so the metformin step keeps its evidence
    per_item = select_dialogue_lines(items, dialogue, tokenizer, budget=budget, line_max_tokens=64)
    assert per_item == line(0) + line(2)
