import math
import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.rewards import (
    SCHEMES,
    UnknownRewardError,
    available_rewards,
    get_reward,
    match_answer,
)
from clinrl.errors import ClinrlError, DataError
from tests.helpers.tokenizers import make_tiny_tokenizer

HF = "HEART FAILURE AND SHOCK WITH MCC"
HF_CC = "HEART FAILURE AND SHOCK WITH CC"
PNA_MCC = "SIMPLE PNEUMONIA AND PLEURISY WITH MCC"
PNA_NONE = "SIMPLE PNEUMONIA AND PLEURISY WITHOUT CC/MCC"
PUD_C = "COMPLICATED PEPTIC ULCER WITH MCC"
PUD_U = "UNCOMPLICATED PEPTIC ULCER WITH MCC"
KIDNEY = "KIDNEY TRANSPLANT"
ECMO = "ECMO OR TRACHEOSTOMY WITH MV >96 HOURS OR PDX EXCEPT FACE MOUTH AND NECK WITH MAJOR O.R. PROCEDURE"
SPK = "SIMULTANEOUS PANCREAS AND KIDNEY TRANSPLANT"

SCHEME_NAMES = ["strict", "dense", "balanced"]


def ok(answer: str) -> str:
    return f"<think>Reasoning about the case.</think>\n<answer>{answer}</answer>"


# Outcome of a well-formed completion against its gold, per REFERENCE A: exact / invalid / partial kind.
EXACT, INVALID = "exact", "invalid"
SAME_PRINCIPAL, SAME_CC, NEITHER = "same_principal", "same_cc_mcc", "neither"
BAD_FORMAT = "bad_format"

CASES = [
    # (id, gold, completion, outcome)
    ("exact", HF, ok(HF), EXACT),
    ("lower case and extra spaces", HF, ok("  heart failure and   shock with mcc \n"), EXACT),
    ("tabs and newlines", HF, ok("Heart\tFailure\nand Shock with MCC"), EXACT),
    ("unicode space counts as space", HF, ok("HEART\u00a0FAILURE AND SHOCK WITH MCC"), EXACT),
    ("chat message list", HF, [{"role": "assistant", "content": ok(HF)}], EXACT),
    ("wrong severity", HF, ok(HF_CC), SAME_PRINCIPAL),
    ("wrong base same severity", HF, ok(PNA_MCC), SAME_CC),
    ("both wrong", HF, ok(PNA_NONE), NEITHER),
    ("trap: uncomplicated for complicated", PUD_C, ok(PUD_U), SAME_CC),
    ("trap: complicated for uncomplicated", PUD_U, ok(PUD_C), SAME_CC),
    ("trap: kidney for pancreas+kidney", SPK, ok(KIDNEY), NEITHER),  # both CC/MCC not applicable
    ("trap: pancreas+kidney for kidney", KIDNEY, ok(SPK), NEITHER),
    ("not applicable never matches", KIDNEY, ok(ECMO.lower()), NEITHER),
    ("invalid text", HF, ok("HEART FAILURE"), INVALID),
    ("invalid prose", HF, ok("The DRG is heart failure and shock with MCC"), INVALID),
    ("trailing period", HF, ok(HF + "."), INVALID),
    ("empty answer", HF, ok(""), INVALID),
    ("blank answer", HF, ok("  \n "), INVALID),
    ("number prefix", HF, ok("291 " + HF), INVALID),
    ("number only", HF, ok("DRG 291"), INVALID),
    ("number in brackets", HF, ok(HF + " (DRG 291)"), INVALID),
    ("cyrillic look-alike", HF, ok("HEART FAILURE AND SHOCK WITH M\u0421C"), INVALID),
    ("zero-width char", HF, ok("HEART\u200b FAILURE AND SHOCK WITH MCC"), INVALID),
    ("long-s upper-cases to S", HF, ok("HEART FAILURE AND \u017fHOCK WITH MCC"), INVALID),
    ("missing think", HF, f"<answer>{HF}</answer>", BAD_FORMAT),
    ("two answer blocks", HF, ok(HF) + f"<answer>{HF}</answer>", BAD_FORMAT),
    ("text after the answer", HF, ok(HF) + " Hope this helps!", BAD_FORMAT),
    ("text before the think", HF, "Sure. " + ok(HF), BAD_FORMAT),
    ("text between blocks", HF, f"<think>x</think> so <answer>{HF}</answer>", BAD_FORMAT),
    ("nested tags", HF, f"<think><answer>{HF}</answer></think>", BAD_FORMAT),
    ("answer before think", HF, f"<answer>{HF}</answer><think>x</think>", BAD_FORMAT),
    ("unclosed answer", HF, f"<think>x</think><answer>{HF}", BAD_FORMAT),
    ("no tags", HF, HF, BAD_FORMAT),
    ("empty output", HF, "", BAD_FORMAT),
]

# REFERENCE A, "GRPO": format 0 / -2; accuracy by scheme.
EXPECTED_ACCURACY = {
    "strict": {EXACT: 2.0, INVALID: -1.5, SAME_PRINCIPAL: 0.0, SAME_CC: 0.0, NEITHER: 0.0, BAD_FORMAT: 0.0},
    "dense": {EXACT: 2.0, INVALID: -1.5, SAME_PRINCIPAL: 1.5, SAME_CC: 0.5, NEITHER: -0.5, BAD_FORMAT: 0.0},
    "balanced": {EXACT: 2.0, INVALID: -1.5, SAME_PRINCIPAL: 1.0, SAME_CC: 1.0, NEITHER: -0.5, BAD_FORMAT: 0.0},
}


@pytest.mark.parametrize("case_id, gold, completion, outcome", CASES, ids=[c[0] for c in CASES])
def test_reward_table(rewards, onto, case_id, gold, completion, outcome):
    fmt = rewards["format"]([completion], [gold])
    assert fmt == [-2.0 if outcome == BAD_FORMAT else 0.0]
    for scheme in SCHEME_NAMES:
        got = rewards[f"accuracy_{scheme}"]([completion], [gold])
        assert got == [EXPECTED_ACCURACY[scheme][outcome]], scheme
    weight = rewards["accuracy_weight_aware"]([completion], [gold])[0]
    if outcome in (SAME_PRINCIPAL, SAME_CC, NEITHER):
        a, g = onto.find(completion_answer(completion)), onto.find(gold)
        assert weight == pytest.approx(-0.5 + 2 * math.exp(-abs(math.log(a.weight / g.weight)) / 0.25))
        assert -0.5 <= weight < 1.5
    else:
        assert weight == EXPECTED_ACCURACY["dense"][outcome]
    # the answer is never in the first words of this reasoning
    assert rewards["cot_first_penalty"]([completion], [gold]) == [0.0]


def completion_answer(completion) -> str:
    text = completion if isinstance(completion, str) else completion[-1]["content"]
    return text.split("<answer>")[1].split("</answer>")[0]


def test_batch_and_trl_keyword_call(rewards):
    completions = [ok(HF), ok(HF_CC), "nope"]
    out = rewards["accuracy_dense"](
        prompts=[[{"role": "user", "content": "p"}]] * 3,
        completions=completions,
        completion_ids=[[1], [2], [3]],
        solution=[HF] * 3,
        hadm_id=[1, 2, 3],
        trainer_state=None,
        log_extra=lambda *a: None,
        log_metric=lambda *a: None,
    )
    assert out == [2.0, 1.5, 0.0] and all(type(x) is float for x in out)


def test_weight_aware_prefers_closer_weights(rewards, onto):
    fn = rewards["accuracy_weight_aware"]
    gold = onto.by_code(291)  # weight ~1.48
    wrong = sorted((d for d in onto if d.weight and d.code != 291), key=lambda d: abs(math.log(d.weight / gold.weight)))
    scores = [fn([ok(d.description)], [gold.description])[0] for d in wrong]
    assert scores == sorted(scores, reverse=True)
    assert all(-0.5 <= s < 1.5 for s in scores)
    assert fn([ok("UNGROUPABLE")], [gold.description]) == [-0.5]  # no weight: no credit
    with pytest.raises(ValueError):
        get_reward("accuracy_weight_aware", tau=0)


def test_registry(onto):
    names = available_rewards()
    assert {
        "format",
        "accuracy_strict",
        "accuracy_dense",
        "accuracy_balanced",
        "cot_first_penalty",
        "accuracy_weight_aware",
    } <= set(names)
    for name in names:
        fn = get_reward(name, ontology=onto)
        assert fn.__name__ == name
        assert pickle.loads(pickle.dumps(fn)).__name__ == name
    with pytest.raises(UnknownRewardError, match="accuracy_dense") as err:
        get_reward("accuracy_fuzzy")
    assert isinstance(err.value, ClinrlError)
    assert set(SCHEMES) == set(SCHEME_NAMES)


def test_trl_logs_the_name(rewards):
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(rewards["accuracy_strict"]) == "accuracy_strict"


def test_bad_gold_and_lengths(rewards):
    with pytest.raises(DataError, match="solution"):
        rewards["accuracy_strict"]([ok(HF)], ["NOT A DRG"])
    with pytest.raises(ValueError, match="one solution per completion"):
        rewards["accuracy_strict"]([ok(HF), ok(HF)], [HF])
    with pytest.raises(ValueError):
        rewards["accuracy_strict"]([ok(HF)])
    assert rewards["format"]([ok(HF)]) == [0.0]  # format needs no gold


def test_match_answer(onto):
    assert match_answer(" heart  failure and shock with mcc", onto).code == 291
    for bad in (None, "", "   ", "DRG 291", "heart failure"):
        assert match_answer(bad, onto) is None


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize(
    "think, penalised",
    [
        (f"{words(10)} {HF} {words(5)}", True),
        (f"likely: heart failure and shock, with MCC. {words(80)}", True),
        (f"{words(42)} {HF}", True),  # ends exactly at word 50
        (f"{words(45)} {HF}", False),  # starts inside the window, ends outside
        (f"{words(60)} {HF}", False),
        (f"HEART FAILURE AND SHOCK is likely; severity unclear. {words(60)}", False),
        (f"{words(10)} UN{HF}", False),  # word boundaries count
    ],
)
def test_cot_first_penalty(rewards, think, penalised):
    fn = rewards["cot_first_penalty"]
    completion = f"<think>{think}</think><answer>{HF}</answer>"
    assert fn([completion], [HF]) == [-0.5 if penalised else 0.0]


def test_cot_first_penalty_edge_cases(rewards, onto):
    fn = rewards["cot_first_penalty"]
    assert fn([f"<think>{HF}</think><answer>{HF}</answer> extra"], [HF]) == [0.0]  # format fails
    assert fn(["<think>anything</think><answer> </answer>"], [HF]) == [0.0]
    # the model's own answer counts, right or wrong
    assert fn([f"<think>{PNA_MCC}</think><answer>{PNA_MCC}</answer>"], [HF]) == [-0.5]
    tok = make_tiny_tokenizer()
    short = get_reward("cot_first_penalty", ontology=onto, tokenizer=tok, n_tokens=5)
    assert short([f"<think>{HF}</think><answer>{HF}</answer>"], [HF]) == [0.0]  # > 5 BPE tokens
    long = get_reward("cot_first_penalty", ontology=onto, tokenizer=tok, n_tokens=200)
    assert long([f"<think>{HF}</think><answer>{HF}</answer>"], [HF]) == [-0.5]


def test_enormous_outputs_are_fast(rewards):
    nasty = [
        "<think>" * 200_000 + "</think>" * 200_000,
        "<think>" + "a " * 1_000_000 + "</think><answer>" + "HEART " * 300_000 + "</answer>",
        "<think>x</think><answer>" + "<" * 1_000_000 + "</answer>",
        ("<think></think><answer></answer>" * 50_000),
        "\u200b" * 1_000_000,
    ]
    start = time.perf_counter()
    for fn in rewards.values():
        out = fn(nasty, [HF] * len(nasty))
        assert len(out) == len(nasty)
    assert time.perf_counter() - start < 10


TAGGY = st.lists(
    st.one_of(
        st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", HF, PNA_MCC, "\u200b", "291"]),
        st.text(max_size=20),
    ),
    max_size=12,
).map("".join)

MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(st.sampled_from(["assistant", "user", "system"]), st.text(max_size=5), st.none()),
        "content": st.one_of(
            TAGGY,
            st.none(),
            st.integers(),
            st.lists(st.dictionaries(st.sampled_from(["type", "text"]), st.one_of(st.text(max_size=10), st.none()))),
        ),
    },
)
COMPLETION = st.one_of(TAGGY, st.text(), st.lists(MESSAGE, max_size=4), st.none(), st.integers())

BOUNDS = {
    "format": {0.0, -2.0},
    "accuracy_strict": {2.0, 0.0, -1.5},
    "accuracy_dense": {2.0, 1.5, 0.5, 0.0, -0.5, -1.5},
    "accuracy_balanced": {2.0, 1.0, 0.0, -0.5, -1.5},
    "cot_first_penalty": {0.0, -0.5},
}


@settings(max_examples=150, deadline=None)
@given(completions=st.lists(COMPLETION, min_size=1, max_size=4), gold=st.sampled_from([HF, PNA_MCC, KIDNEY]))
def test_rewards_never_raise_and_stay_in_range(rewards, completions, gold):
    for name, fn in rewards.items():
        out = fn(completions, [gold] * len(completions))
        assert len(out) == len(completions)
        low, high = fn.bounds
        for value in out:
            assert type(value) is float and low <= value <= high
            if name in BOUNDS:
                assert value in BOUNDS[name]
