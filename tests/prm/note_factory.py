"""Small gold notes and hypothesis strategies for the PRM label / error-synthesis tests."""

from __future__ import annotations

from hypothesis import strategies as st

from clinrl.prm.schema import Note, Problem, Step


def make_gold(
    sizes: list[int], *, case_id: str = "T_1", dialogue: str = "", texts: list[list[str]] | None = None
) -> Note:
    """A gold note with ``len(sizes)`` problems numbered 1.., problem i holding ``sizes[i]`` steps."""
    problems = []
    for i, n in enumerate(sizes):
        steps = [
            Step(
                texts[i][j] if texts else f"Plan: start lisinopril {10 * (j + 1)} mg daily for the left knee {i}.",
                str(j + 1),
            )
            for j in range(n)
        ]
        problems.append(Problem(f"Hypertension {i}:", str(i + 1), steps))
    return Note(problems=problems, dialogue=dialogue, case_id=case_id, case_no=1, data_source="T")


_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            "Plan: Continue lisinopril 20 mg daily.",
            "Assessment: No fever or chills.",
            "Follow-up instructions:",
            "Right knee pain",
            "Return to clinic in 2 weeks.",
            "x",
            "Patient denies chest pain.",
            "Plan: No",
            "NO",
            "Start loſartan; preſented ٣ weeks",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def gold_notes(draw, max_problems: int = 4, max_steps: int = 4) -> Note:
    """Arbitrary small valid gold notes: 1..max_problems problems of 0..max_steps steps, any text."""
    sizes = draw(st.lists(st.integers(0, max_steps), min_size=1, max_size=max_problems))
    problems = []
    for i, n in enumerate(sizes):
        steps = [Step(draw(_TEXT), str(j + 1)) for j in range(n)]
        problems.append(Problem(draw(_TEXT), str(i + 1), steps))
    case_id = draw(st.sampled_from(["", "C_1", "C_2"]))
    return Note(problems=problems, dialogue=draw(st.text(max_size=60)), case_id=case_id)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
