import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.prm.schema import Note, load_notes
from clinrl.prm.structure import (
    DEFAULT_HEADER,
    FOLLOW_UP_HEADER,
    is_follow_up_header,
    split_sentences,
    structure_note,
)


def _shape(note: Note) -> list[tuple[str, list[str]]]:
    return [(p.header, [s.text for s in p.steps]) for p in note.problems]


# ------------------------------------------------------------------------------------------ sentences
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Continue lisinopril 10 mg. daily. Recheck BMP.", ["Continue lisinopril 10 mg. daily.", "Recheck BMP."]),
        ("Start metformin 500 mg b.i.d. Recheck A1c.", ["Start metformin 500 mg b.i.d.", "Recheck A1c."]),
        ("Take amoxicillin t.i.d. for 10 days.", ["Take amoxicillin t.i.d. for 10 days."]),
        ("Refer to Dr. Patel. Obtain labs.", ["Refer to Dr. Patel.", "Obtain labs."]),
        ("Follow with Dr. X. Continue meds.", ["Follow with Dr. X.", "Continue meds."]),
        ("Potassium was 3.5 today. Give 2.5 mg.", ["Potassium was 3.5 today.", "Give 2.5 mg."]),
        ("Avoid NSAIDs, e.g. Ibuprofen. Use Tylenol.", ["Avoid NSAIDs, e.g. Ibuprofen.", "Use Tylenol."]),
        ("Viral vs. Bacterial. Treat.", ["Viral vs. Bacterial.", "Treat."]),
        ("Pain? Yes! Treat now.", ["Pain?", "Yes!", "Treat now."]),
        ('He said "no more." Then left.', ['He said "no more."', "Then left."]),
        ("Tylenol 1 g q. 6 hours prn. Rest.", ["Tylenol 1 g q. 6 hours prn.", "Rest."]),
        ("Allergic to No. 2 dye. no. Fine.", ["Allergic to No. 2 dye. no.", "Fine."]),
        ("A1c is 7. Continue.", ["A1c is 7.", "Continue."]),
        ("Check vitamin D. Continue calcium.", ["Check vitamin D.", "Continue calcium."]),
        ("Plan: 1. Start aspirin.", ["Plan: 1. Start aspirin."]),
        ("Worse at night Plan: Start inhaler.", ["Worse at night", "Plan: Start inhaler."]),
        ("ends without a full stop", ["ends without a full stop"]),
        ("  ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


# -------------------------------------------------------------------------------------- hand-written
NOTES = {
    "paragraphs": (
        """ASSESSMENT AND PLAN

Hypertension:
Assessment: Blood pressure is 152/94 today. She has missed doses.
Plan: Continue lisinopril 20 mg daily. Check BMP.

Type 2 diabetes mellitus:
Assessment: A1c 8.1%, up from 7.4%.
Plan: Increase metformin to 1000 mg b.i.d. Refer to Dr. Lee for nutrition counseling.

Follow-up instructions:
Return to clinic in 3 months.""",
        [
            ("Hypertension:", ["Assessment: Blood pressure is 152/94 today.", "She has missed doses.",
                               "Plan: Continue lisinopril 20 mg daily.", "Check BMP."]),
            ("Type 2 diabetes mellitus:", ["Assessment: A1c 8.1%, up from 7.4%.",
                                           "Plan: Increase metformin to 1000 mg b.i.d.",
                                           "Refer to Dr. Lee for nutrition counseling."]),
            (FOLLOW_UP_HEADER, ["Return to clinic in 3 months."]),
        ],
    ),
    "numbered_bullets": (
        """Assessment & Plan:
1. Asthma exacerbation
- Assessment: Wheezing on exam, peak flow 60% of predicted.
- Plan: Prednisone 40 mg daily for 5 days.
- Albuterol 2 puffs q4h prn
2. Allergic rhinitis
* Start fluticasone nasal spray.
• Avoid known triggers.
3) Follow up
- RTC in 2 weeks.""",
        [
            ("Asthma exacerbation", ["Assessment: Wheezing on exam, peak flow 60% of predicted.",
                                     "Plan: Prednisone 40 mg daily for 5 days.", "Albuterol 2 puffs q4h prn"]),
            ("Allergic rhinitis", ["Start fluticasone nasal spray.", "Avoid known triggers."]),
            (FOLLOW_UP_HEADER, ["RTC in 2 weeks."]),
        ],
    ),
    "markdown": (
        """# Assessment and Plan

## Chronic low back pain
Assessment: Mechanical pain without red flags. Exam is unremarkable.
**Plan:**
- Physical therapy referral.
- Naproxen 500 mg twice daily with food.

## Insomnia
**Assessment:** Difficulty falling asleep for 2 months.
**Plan:** Sleep hygiene education.

## Follow-up
Return in 6 weeks, or sooner if symptoms worsen.""",
        [
            ("Chronic low back pain", ["Assessment: Mechanical pain without red flags.", "Exam is unremarkable.",
                                       "Plan: Physical therapy referral.",
                                       "Naproxen 500 mg twice daily with food."]),
            ("Insomnia", ["Assessment: Difficulty falling asleep for 2 months.", "Plan: Sleep hygiene education."]),
            (FOLLOW_UP_HEADER, ["Return in 6 weeks, or sooner if symptoms worsen."]),
        ],
    ),
    "bold_and_problem_numbers": (
        """**Gout flare:** Acute podagra of the right first MTP. Start colchicine 0.6 mg.

Problem #2: Hyperuricemia
Uric acid 9.2 mg/dL.
Start allopurinol after the flare
resolves, titrate to goal.

Problem 3 - CKD stage 3: eGFR 48. Avoid NSAIDs.

Follow-up: Recheck uric acid in 4 weeks.""",
        [
            ("Gout flare:", ["Acute podagra of the right first MTP.", "Start colchicine 0.6 mg."]),
            ("Hyperuricemia", ["Uric acid 9.2 mg/dL.", "Start allopurinol after the flare resolves, titrate to goal."]),
            ("CKD stage 3", ["eGFR 48.", "Avoid NSAIDs."]),
            (FOLLOW_UP_HEADER, ["Recheck uric acid in 4 weeks."]),
        ],
    ),
    "no_headers": (
        "The patient is a 45-year-old woman with tension headaches. Start ibuprofen 400 mg as needed. "
        "Avoid caffeine.\n\nFollow up in 1 month if not improved.",
        [
            (DEFAULT_HEADER, ["The patient is a 45-year-old woman with tension headaches.",
                              "Start ibuprofen 400 mg as needed.", "Avoid caffeine."]),
            (FOLLOW_UP_HEADER, ["Follow up in 1 month if not improved."]),
        ],
    ),
    "one_paragraph": (
        "Viral URI. Supportive care with fluids and rest. Tylenol 650 mg q6h p.r.n. fever.",
        [(DEFAULT_HEADER, ["Viral URI.", "Supportive care with fluids and rest.", "Tylenol 650 mg q6h p.r.n. fever."])],
    ),
    "colon_steps_under_header": (
        """Hypertension:
1. Continue amlodipine 5 mg daily.
2. Home BP log.
Differential diagnosis: white coat effect.
Plan:

Low-salt diet.""",
        [("Hypertension:", ["Continue amlodipine 5 mg daily.", "Home BP log.",
                            "Differential diagnosis: white coat effect.", "Plan: Low-salt diet."])],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", NOTES)
def test_hand_written_notes(name):
    text, expected = NOTES[name]
    note = structure_note(text, dialogue="[doctor] hello")
    assert _shape(note) == expected
    assert note.dialogue == "[doctor] hello"
    assert [p.no for p in note.problems] == [str(i + 1) for i in range(len(expected))]
    assert all([s.no for s in p.steps] == [str(j + 1) for j in range(len(p.steps))] for p in note.problems)
    assert set(note.labels()) <= {"+"} and note.outcome_label == "+"
    assert _shape(structure_note(text.replace("\n", "\r\n"))) == expected


def test_edge_cases():
    assert structure_note("").problems == []
    assert _shape(structure_note("ASSESSMENT AND PLAN:")) == []
    assert _shape(structure_note("Plan:")) == [(DEFAULT_HEADER, ["Plan:"])]
    assert _shape(structure_note("A/P: stable. Continue meds.", default_header="Summary")) == [
        ("Summary", ["stable.", "Continue meds."])
    ]
    for header in ("Follow-up", "Follow up instructions:", "FOLLOW-UP INSTRUCTIONS:", "Followup:", "**Follow-up**"):
        assert is_follow_up_header(header)
    assert not is_follow_up_header("Postoperative follow-up after tonsillectomy")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([*"abcXYZ 12.:-*#•\n()", "Plan:", "**", "Dr.", "1. ", "Follow up"]), max_size=60))
def test_structure_never_crashes(pieces):
    text = "".join(pieces)
    note = structure_note(text)
    assert structure_note(text) == note  # deterministic
    for p in note.problems:
        assert all(s.text.strip() == s.text and s.text for s in p.steps)


# ------------------------------------------------------------------------------ gold notes, 5 styles
_LEAD = re.compile(r"^(Assessment|Plan)\s*:\s*", re.IGNORECASE)


def _segments(steps: list[str]) -> list[list[str]]:
    """Group a problem's steps at each "Assessment:" / "Plan:" lead-in."""
    out: list[list[str]] = []
    for step in steps:
        if not out or _LEAD.match(step):
            out.append([step])
        else:
            out[-1].append(step)
    return out


def _bare(header: str) -> str:
    return header.strip().rstrip(":").strip()


def _paragraphs(note: Note) -> str:
    lines = ["ASSESSMENT AND PLAN", ""]
    for p in note.problems:
        lines += [_bare(p.header) + ":", *(" ".join(seg) for seg in _segments([s.text for s in p.steps])), ""]
    return "\n".join(lines)


def _numbered(note: Note) -> str:
    lines = ["Assessment and Plan:"]
    for i, p in enumerate(note.problems, 1):
        lines += [f"{i}. {_bare(p.header)}", *(f"- {s.text}" for s in p.steps)]
    return "\n".join(lines)


def _markdown(note: Note) -> str:
    lines = ["# Assessment & Plan", ""]
    for p in note.problems:
        lines += [f"## {_bare(p.header)}", ""]
        for seg in _segments([s.text for s in p.steps]):
            lead = _LEAD.match(seg[0])
            if lead and lead.group(1).lower() == "plan":  # "**Plan:**" alone, then bullets
                lines += [f"**{lead.group(1)}:**", f"* {seg[0][lead.end() :]}", *(f"* {s}" for s in seg[1:])]
            else:
                lines.append(" ".join(seg))
        lines.append("")
    return "\n".join(lines)


def _bold_inline(note: Note) -> str:
    return "\n\n".join(f"**{_bare(p.header)}:** " + " ".join(s.text for s in p.steps) for p in note.problems)


def _problem_numbers(note: Note) -> str:
    lines = ["A/P:"]
    for i, p in enumerate(note.problems, 1):
        lines += [f"Problem #{i}: {_bare(p.header)}", *(f"• {s.text}" for s in p.steps)]
    return "\n".join(lines)


# Thresholds sit just under the rates measured on the 1,272 gold notes (paragraphs 97.6 %, numbered 99.6 %,
# markdown 99.8 %, bold inline 98.6 %, problem numbers 99.8 %). The misses are inherent to the style: steps
# without a full stop run together in a paragraph, two-sentence gold steps split in two, "C. Diff".
STYLES = {
    "paragraphs": (_paragraphs, 0.97),
    "numbered": (_numbered, 0.99),
    "markdown": (_markdown, 0.99),
    "bold_inline": (_bold_inline, 0.98),
    "problem_numbers": (_problem_numbers, 0.99),
}


def _key(note: Note) -> list[tuple[str, list[str]]]:
    """Headers compared without case and trailing colon (follow-up headers are normalised), steps exactly."""
    return [
        (_bare(FOLLOW_UP_HEADER if is_follow_up_header(p.header) else p.header).casefold(),
         [s.text for s in p.steps])
        for p in note.problems
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gold(prm_data):
    return load_notes(prm_data / "prm_clinic_gold.json.gz")


@pytest.mark.parametrize("style", STYLES)
def test_gold_recovery(gold, style, record_property):
    render, threshold = STYLES[style]
    recovered = sum(_key(structure_note(render(note))) == _key(note) for note in gold)
    rate = recovered / len(gold)
    record_property(f"recovery_{style}", rate)
    print(f"{style}: {recovered}/{len(gold)} = {rate:.4f}")
    assert rate >= threshold, f"{style}: recovered {recovered}/{len(gold)} = {rate:.4f} < {threshold}"
