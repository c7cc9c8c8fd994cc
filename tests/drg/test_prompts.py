import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.prompts import (
    CUT_MARKER,
    DEFAULT_THINK,
    QUESTION,
    SYSTEM_PROMPT,
    PromptBudgetError,
    build_messages,
    build_user_prompt,
    completion_text,
    count_prompt_tokens,
    extract_answer,
    format_completion,
    parse_completion,
    render_prompt,
    to_rl_rows,
    to_sft_rows,
    truncate_course,
)
from clinrl.errors import ClinrlError
from tests.helpers.tokenizers import make_tiny_tokenizer

COURSE = " ".join(f"Day {i}: the patient improved on diuretics and was weaned off oxygen." for i in range(60))
GOLD = "HEART FAILURE AND SHOCK WITH MCC"


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def plain_tok():
    return make_tiny_tokenizer(chat_template=False)


def test_prompt_content():
    assert "<think>" in SYSTEM_PROMPT and "<answer>" in SYSTEM_PROMPT
    assert QUESTION == (
        "What is the most likely MS-DRG based on the following discharge summary of a hospitalization? "
        "Provide the complete text description of the DRG code without including the numerical code."
    )
    user = build_user_prompt("COURSE TEXT")
    assert QUESTION in user and " CC " in user and " MCC " in user and "MS-DRG" in user
    assert user.endswith("COURSE TEXT") and user.index(QUESTION) < user.index("COURSE TEXT")


def test_build_messages_system_by_default():
    messages = build_messages("x")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert [m["role"] for m in build_messages("x", system=False)] == ["user"]


def test_format_completion_round_trips():
    text = format_completion(GOLD, "  Volume overload with cardiogenic shock.  ")
    parsed = parse_completion(text)
    assert parsed.format_ok and parsed.answer == GOLD
    assert parsed.think == "Volume overload with cardiogenic shock."
    for missing in (None, "", float("nan")):
        parsed = parse_completion(format_completion(GOLD, missing))
        assert parsed.format_ok and parsed.think == DEFAULT_THINK
    with pytest.raises(ValueError):
        format_completion(GOLD, "I think <answer>X</answer>")
    with pytest.raises(ValueError):
        format_completion("  ")


@pytest.mark.parametrize(
    "text, ok, think, answer, n_think, n_answer",
    [
        ("<think>a</think><answer>B</answer>", True, "a", "B", 1, 1),
        ("\n <think>\na\n</think>\n\n<answer> B </answer>\n", True, "a", "B", 1, 1),
        ("<think></think><answer></answer>", True, "", "", 1, 1),
        ("<answer>B</answer>", False, None, "B", 0, 1),
        ("<think>a</think><answer>B</answer><answer>C</answer>", False, "a", "C", 1, 2),
        ("<think>a</think><answer>B</answer> thanks", False, "a", "B", 1, 1),
        ("<think>a</think> so <answer>B</answer>", False, "a", "B", 1, 1),
        ("Sure. <think>a</think><answer>B</answer>", False, "a", "B", 1, 1),
        ("<think><answer>B</answer></think>", False, "<answer>B</answer>", "B", 1, 1),
        ("<answer>B</answer><think>a</think>", False, "a", "B", 1, 1),
        ("<think>a<think>b</think><answer>B</answer>", False, "a<think>b", "B", 2, 1),
        ("<think>a</think><answer>B", False, "a", None, 1, 1),
        ("just text", False, None, None, 0, 0),
        ("", False, None, None, 0, 0),
    ],
)
def test_parse_completion(text, ok, think, answer, n_think, n_answer):
    parsed = parse_completion(text)
    assert (parsed.format_ok, parsed.think, parsed.answer) == (ok, think, answer)
    assert (parsed.n_think_blocks, parsed.n_answer_blocks) == (n_think, n_answer)
    assert extract_answer(text) == answer


def test_completion_text_forms():
    msg = [{"role": "assistant", "content": "<answer>A</answer>"}]
    assert completion_text("plain") == "plain"
    assert completion_text(msg) == "<answer>A</answer>"
    assert (
        completion_text(
            [
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a1"},
                {"role": "assistant", "content": "a2"},
                {"role": "tool", "content": "t"},
            ]
        )
        == "a2"
    )
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "image"}, {"text": "y"}]}]
    assert completion_text(parts) == "xy"
    assert completion_text({"role": "assistant", "content": "d"}) == "d"
    for junk in (None, 3, [None, 4], [{"role": "user", "content": "u"}], [{"content": None}]):
        assert completion_text(junk) == ""
    assert extract_answer(msg) == "A"


def test_render_with_and_without_chat_template(tok, plain_tok):
    templated = render_prompt("COURSE", tok)
    assert templated.startswith("<|bos|><|im_start|>system\n" + SYSTEM_PROMPT)
    assert templated.endswith("<|im_start|>assistant\n")
    plain = render_prompt("COURSE", plain_tok)
    assert plain == SYSTEM_PROMPT + "\n\n" + build_user_prompt("COURSE")
    assert count_prompt_tokens("COURSE", tok) == len(tok(templated, add_special_tokens=False)["input_ids"])


def test_truncate_keeps_a_course_that_fits(tok):
    budget = count_prompt_tokens(COURSE, tok)
    assert truncate_course(COURSE, tok, budget) == COURSE


@pytest.mark.parametrize("strategy", ["head", "tail", "head_tail"])
@pytest.mark.parametrize("templated", [True, False])
def test_truncate_fits_and_marks(tok, plain_tok, strategy, templated):
    tokenizer = tok if templated else plain_tok
    empty = count_prompt_tokens("", tokenizer)
    budget = empty + 200
    cut = truncate_course(COURSE, tokenizer, budget, strategy)
    used = count_prompt_tokens(cut, tokenizer)
    assert used <= budget
    assert used >= budget - 12  # the binary search keeps (nearly) all the room
    assert CUT_MARKER in cut and len(cut) < len(COURSE)
    head, _, tail = cut.partition(CUT_MARKER)
    assert COURSE.startswith(head.rstrip())
    assert COURSE.endswith(tail.lstrip())
    if strategy == "head":
        assert cut.startswith("Day 0:") and tail == ""
    if strategy == "tail":
        assert cut.endswith("oxygen.") and head == ""
    if strategy == "head_tail":
        assert cut.startswith("Day 0:") and cut.endswith("oxygen.")


def test_truncate_errors(tok):
    empty = count_prompt_tokens("", tok)
    with pytest.raises(PromptBudgetError, match=f"already takes {empty} tokens") as err:
        truncate_course(COURSE, tok, empty - 1)
    assert isinstance(err.value, ClinrlError)
    with pytest.raises(ValueError, match="strategy"):
        truncate_course(COURSE, tok, empty + 10, "middle")
    # room for the empty course but not for the marker: an empty course comes back
    assert truncate_course(COURSE, tok, empty) in ("", CUT_MARKER)


@settings(max_examples=25, deadline=None)
@given(
    course=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=400),
    extra=st.integers(0, 120),
    strategy=st.sampled_from(["head", "tail", "head_tail"]),
)
def test_truncate_property(tok, course, extra, strategy):
    budget = count_prompt_tokens("", tok) + extra
    cut = truncate_course(course, tok, budget, strategy)
    assert count_prompt_tokens(cut, tok) <= budget
    assert "\ufffd" not in cut or "\ufffd" in course


def test_rows_single_and_batched(tok):
    row = {"text": COURSE, "solution": GOLD, "explanation": "Shock."}
    rl = to_rl_rows(row)
    assert rl == {"prompt": build_messages(COURSE)}
    sft = to_sft_rows(row)
    assert sft["prompt"] == build_messages(COURSE)
    assert sft["completion"] == [{"role": "assistant", "content": format_completion(GOLD, "Shock.")}]
    batch = {"text": [COURSE, "short"], "solution": [GOLD, GOLD]}
    out = to_sft_rows(batch)
    assert len(out["prompt"]) == len(out["completion"]) == 2
    assert parse_completion(out["completion"][1][0]["content"]).think == DEFAULT_THINK
    budget = count_prompt_tokens("", tok) + 50
    truncated = to_rl_rows(batch, tokenizer=tok, max_prompt_tokens=budget)
    assert tok.apply_chat_template(truncated["prompt"][0], tokenize=False, add_generation_prompt=True) == render_prompt(
        truncate_course(COURSE, tok, budget), tok
    )


def test_rows_with_datasets_map():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [COURSE, "b"], "solution": [GOLD, GOLD], "hadm_id": [1, 2]})
    rl = ds.map(to_rl_rows, batched=True)
    assert set(rl.column_names) == {"text", "solution", "hadm_id", "prompt"}
    assert rl[1]["prompt"][-1]["content"].endswith("\nb")
    sft = ds.map(to_sft_rows)
    assert parse_completion(sft[0]["completion"][0]["content"]).answer == GOLD


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["role", "content", "type", "text"]), inner, max_size=4),
    ),
    max_leaves=12,
)
TAGGY = st.lists(
    st.one_of(
        st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "<", ">"]),
        st.text(max_size=8),
    ),
    max_size=10,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(TAGGY, st.text(), JSONISH))
def test_parsers_never_raise(value):
    text = completion_text(value)
    assert isinstance(text, str)
    parsed = parse_completion(value)
    assert isinstance(parsed.format_ok, bool)
    assert parsed.n_think_blocks == text.count("<think>") and parsed.n_answer_blocks == text.count("<answer>")
    if parsed.format_ok:
        assert parsed.n_think_blocks == parsed.n_answer_blocks == 1 and parsed.answer is not None
        assert text.strip().startswith("<think>") and text.strip().endswith("</answer>")
    answer = extract_answer(value)
    assert answer is None or (isinstance(answer, str) and answer == answer.strip())


def test_truncate_needs_offsets():
    class Slow:
        chat_template = None
        is_fast = False

        def __call__(self, text, add_special_tokens=True, **kwargs):
            return {"input_ids": text.split()}

    with pytest.raises(TypeError, match="fast tokenizer"):
        truncate_course(COURSE, Slow(), count_prompt_tokens("", Slow()) + 5)
