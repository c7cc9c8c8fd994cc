import csv
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinrl.errors import DataError
from clinrl.prm.format import (
    NOTE_HEADER,
    PRMFormatError,
    SpecialTokens,
    TokenIds,
    label_positions,
    label_slots,
    label_token_positions,
    parse_prm_string,
    render_prm_string,
)
from clinrl.prm.schema import Note, Problem, Step, load_notes

T = SpecialTokens.llama3()
NEW = SpecialTokens.new()
PROMPT_LITERAL = (
    'You are a physician writing a clinical note based on a dialogue with the patient. Only write the "ASSESSMENT '
    'AND PLAN" part of the notes. Only include information contained in the dialogue.'
)


def _signature(note: Note):
    return (
        note.dialogue,
        note.completeness,
        note.outcome_label,
        [(p.header, p.label, p.completeness, [(s.text, s.label) for s in p.steps]) for p in note.problems],
    )


def _small_note() -> Note:
    return Note(
        problems=[
            Problem("Asthma", "1", [Step("Assessment: Wheezing.", "1"), Step("Plan: Albuterol.", "2", "-")]),
            Problem("Follow-up instructions:", "2", [Step("Return in 2 weeks.", "1")], completeness="-"),
        ],
        dialogue="[doctor] hi\n[patient] hello",
    )


# ------------------------------------------------------------------------------------------ tokens
def test_llama3_tokens_equal_shared_file(prm_data):
    path = prm_data / "special_tokens_llama3.json"
    assert SpecialTokens.from_json(path) == T
    assert T.to_json_dict() == json.loads(path.read_text())


def test_token_validation_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="part of"):
        SpecialTokens(**{**NEW.__dict__, "step": "<|prm_plus|>x"})
    (tmp_path / "t.json").write_text(json.dumps({k: v for k, v in T.to_json_dict().items() if k != "-"}))
    with pytest.raises(DataError, match="'-'") as err:
        SpecialTokens.from_json(tmp_path / "t.json")
    assert "t.json" in str(err.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="JSON"):
        SpecialTokens.from_json(tmp_path / "bad.json")
    assert len(set(NEW.all())) == 8 and not set(NEW.all()) & set(T.all())


# ------------------------------------------------------------------------------------------ render
def test_layout_byte_for_byte():
    t = T
    expected = (
        PROMPT_LITERAL + "\n###DIALOGUE:\n[doctor] hi\n[patient] hello\n###CLINICAL NOTE-ASSESSMENT AND PLAN: \n"
        + "Asthma" + t.problem + t.plus
        + "Assessment: Wheezing." + t.step + t.plus
        + "Plan: Albuterol." + t.step + t.minus
        + t.problem_completeness + t.plus
        + "Follow-up instructions:" + t.problem + t.plus
        + "Return in 2 weeks." + t.step + t.plus
        + t.problem_completeness + t.minus
        + t.note_completeness + t.plus
        + t.end_of_note + t.minus
    )  # fmt: skip
    note = _small_note()
    assert render_prm_string(note, T) == expected
    assert render_prm_string(note, T, eos="</s>") == expected + "</s>"
    placeholder = render_prm_string(note, T, "placeholder")
    assert placeholder.count(T.placeholder) == note.n_label_positions == 9
    assert T.plus not in placeholder and T.minus not in placeholder
    plus = render_prm_string(note, T, "plus")
    assert plus.count(T.plus) == 9 and T.minus not in plus
    with pytest.raises(ValueError):
        render_prm_string(note, T, "gold")  # type: ignore[arg-type]


def test_render_refuses_texts_with_tokens():
    note = _small_note()
    note.problems[0].steps[1].text = "Plan: " + T.step
    with pytest.raises(PRMFormatError, match="special-token") as err:
        render_prm_string(note, T)
    assert err.value.field == "Problems[0].Steps[1].Step"
    note = _small_note()
    note.dialogue = "[doctor] see" + NOTE_HEADER + "x"
    with pytest.raises(PRMFormatError, match="note header"):
        render_prm_string(note, T)
    note.dialogue = "ends with the start of the header" + NOTE_HEADER[:-1]  # overlaps the real header
    with pytest.raises(PRMFormatError, match="note header"):
        render_prm_string(note, T)
    # a text whose end joins the next token into another token
    odd = SpecialTokens("@+@", "@-@", "@P@", "@S@", "@C@", "@N@", "@E@", "@?@")
    note = _small_note()
    note.problems[0].steps[0].text = "Wheezing @+"
    with pytest.raises(PRMFormatError, match="runs into") as err:
        render_prm_string(note, odd)
    assert err.value.field == "Problems[0].Steps[0].Step"


# ------------------------------------------------------------------------------------------- parse
def test_a_prefer_round_trip(prm_data):
    with open(prm_data / "a_prefer_dev.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30
    for row in rows:
        text = row["Training_note"]
        note = parse_prm_string(text, T)
        assert render_prm_string(note, T, labels="placeholder") == text
        slots = label_slots(text, T)
        assert len(slots) == note.n_label_positions and {s.label for s in slots} == {None}
        assert [p.no for p in note.problems] == [str(i + 1) for i in range(len(note.problems))]
        assert note.problems and note.dialogue.startswith("[doctor]")


@pytest.mark.parametrize(
    "name", ["prm_clinic_gold.json.gz", "verification_dev_gold.json.gz", "verification_dev_error.json.gz"]
)
def test_shared_notes_round_trip(prm_data, name):
    notes = load_notes(prm_data / name)
    for note in notes:
        text = render_prm_string(note, T)
        back = parse_prm_string(text, T)
        assert _signature(back) == _signature(note)
        slots = label_slots(text, T)
        assert [s.label for s in slots] == note.labels() + [note.outcome_label]
        assert sum(s.kind == "step" for s in slots) == note.n_steps
    assert {n.outcome_label for n in notes} == ({"-"} if "error" in name else {"+"})


def _break(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text
    return text.replace(old, new, count)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s[1:], "prompt"),
        (lambda s: _break(s, "Only write", "Only writes"), "prompt"),
        (lambda s: _break(s, NOTE_HEADER, "\n"), "note header"),
        (lambda s: _break(s, "hello", "hello" + T.step), "before the note header"),
        (lambda s: _break(s, "Asthma" + T.problem, "Asthma" + T.step), "expected a PROBLEM"),
        (lambda s: _break(s, T.problem + T.plus, T.problem + "x" + T.plus), "expected a label"),
        (lambda s: _break(s, T.problem + T.plus, T.problem + T.step), "expected a label"),
        (lambda s: _break(s, T.step + T.plus, T.step), "expected a label"),
        (lambda s: _break(s, T.problem_completeness, "oops" + T.problem_completeness), "unexpected text"),
        (lambda s: s + "more", "after the end"),
        (lambda s: s + T.step + T.plus, "after the end"),
        (lambda s: s[: -len(T.minus)], "expected a label"),
        (lambda s: s[: s.index(T.note_completeness)], "ends early"),
        (lambda s: _break(s, T.end_of_note + T.minus, T.end_of_note + T.plus), "contradicts"),
    ],
)
def test_parse_errors(mutate, message):
    text = mutate(render_prm_string(_small_note(), T))
    with pytest.raises(PRMFormatError, match=message) as err:
        parse_prm_string(text, T)
    assert isinstance(err.value, DataError)
    if "prompt" not in message:
        assert err.value.offset is not None and 0 <= err.value.offset <= len(text)


def test_parse_offset_points_at_the_problem():
    good = render_prm_string(_small_note(), T)
    bad = good + "trailing"
    with pytest.raises(PRMFormatError) as err:
        parse_prm_string(bad, T)
    assert err.value.offset == len(good)
    assert parse_prm_string(good + "</s>", T, eos="</s>").problems[1].header == "Follow-up instructions:"


def test_empty_note_and_placeholder_mix():
    note = Note(problems=[], completeness="-", dialogue="")
    text = render_prm_string(note, NEW)
    assert text.endswith(NEW.note_completeness + NEW.minus + NEW.end_of_note + NEW.minus)
    assert _signature(parse_prm_string(text, NEW)) == _signature(note)
    mixed = render_prm_string(_small_note(), T).replace(T.minus, T.placeholder, 1)
    slots = label_slots(mixed, T)
    assert [s.label for s in slots].count(None) == 1
    assert parse_prm_string(mixed, T).problems[0].steps[1].label == "+"  # placeholder reads as '+'


# -------------------------------------------------------------------------------------- properties
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def notes(draw, tokens=T):
    def clean(s):  # texts may not contain or run into a token: drop '<' and '|'
        return s.replace("<", "").replace("|", "")

    labels = st.sampled_from("+-")
    problems = []
    for i in range(draw(st.integers(0, 4))):
        steps = [Step(clean(draw(_text)), str(j + 1), draw(labels)) for j in range(draw(st.integers(0, 4)))]
        problems.append(Problem(clean(draw(_text)), str(i + 1), steps, draw(labels), draw(labels)))
    dialogue = clean(draw(_text)).replace("###", "")
    return Note(problems=problems, completeness=draw(labels), dialogue=dialogue)


@settings(max_examples=150, deadline=None)
@given(notes(), st.sampled_from([T, NEW]))
def test_render_parse_identity(note, tokens):
    text = render_prm_string(note, tokens)
    assert parse_prm_string(text, tokens) == note
    placeholder = render_prm_string(note, tokens, "placeholder")
    assert render_prm_string(parse_prm_string(placeholder, tokens), tokens, "placeholder") == placeholder


_PIECES = st.one_of(_text, st.sampled_from([*T.all(), NOTE_HEADER, "\n###DIALOGUE:\n", PROMPT_LITERAL]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=12), st.booleans())
def test_parse_never_crashes(pieces, with_prefix):
    text = "".join(pieces)
    if with_prefix:
        text = PROMPT_LITERAL + "\n###DIALOGUE:\n" + text
    try:
        note = parse_prm_string(text, T)
    except PRMFormatError:
        return
    assert render_prm_string(note, T, "placeholder").count(T.placeholder) == note.n_label_positions


@settings(max_examples=200, deadline=None)
@given(notes(), st.data())
def test_parse_never_crashes_on_edited_strings(note, data):
    text = render_prm_string(note, T)
    start = data.draw(st.integers(0, len(text)))
    stop = data.draw(st.integers(start, min(len(text), start + 40)))
    edited = text[:start] + data.draw(_PIECES) + text[stop:]
    try:
        back = parse_prm_string(edited, T)
    except PRMFormatError as err:
        assert err.offset is None or 0 <= err.offset <= len(edited)
        return
    assert parse_prm_string(render_prm_string(back, T), T) == back


# ---------------------------------------------------------------------------------- tokenizer side
@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    raw = Tokenizer(models.BPE(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["[UNK]", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(["Assessment: Wheezing. Plan: Albuterol.", "Return in 2 weeks.", PROMPT_LITERAL], trainer)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="[UNK]")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    return tokenizer, Qwen2ForCausalLM(config)


def test_add_to_tokenizer_and_positions(tiny):
    tokenizer, model = tiny
    before = len(tokenizer)
    with pytest.raises(DataError, match="encodes to"):
        TokenIds.from_tokenizer(NEW, tokenizer)
    ids = NEW.add_to_tokenizer(tokenizer, model)
    assert len(tokenizer) == before + 8
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert len(set(ids.__dict__.values())) == 8
    assert NEW.add_to_tokenizer(tokenizer, model) == ids  # idempotent
    assert len(tokenizer) == before + 8

    note = _small_note()
    for mode in ("true", "placeholder"):
        text = render_prm_string(note, NEW, mode)
        slots = label_positions(text, NEW, tokenizer)
        enc = tokenizer(text)["input_ids"]
        assert enc[0] == tokenizer.bos_token_id
        assert slots == label_token_positions(enc, ids)
        assert [s.kind for s in slots] == [s.kind for s in label_slots(text, NEW)]
        assert [s.label for s in slots] == [s.label for s in label_slots(text, NEW)]
        for s in slots:
            assert enc[s.token_index] == getattr(ids, s.kind)
            assert s.label_index == s.token_index + 1
    truncated = label_token_positions(enc[: slots[-1].label_index], ids)  # cut before the last label
    assert len(truncated) == len(slots) - 1


def test_llama3_tokens_on_tiny_tokenizer(tiny):
    tokenizer, _ = tiny
    ids = T.add_to_tokenizer(tokenizer)  # no model: only the tokenizer grows
    text = render_prm_string(_small_note(), T, eos=tokenizer.eos_token)
    slots = label_positions(text, T, tokenizer, eos=tokenizer.eos_token)
    assert [s.kind for s in slots][-2:] == ["note_completeness", "end_of_note"]
    assert tokenizer(text)["input_ids"][slots[-1].label_index] == ids.minus
    bad = list(tokenizer(text)["input_ids"])
    bad[slots[0].label_index] = ids.step
    with pytest.raises(PRMFormatError, match="not a label token"):
        label_token_positions(bad, ids)
