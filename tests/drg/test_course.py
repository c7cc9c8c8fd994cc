"""The hospital-course regex cascade on MIMIC-IV-style discharge summary layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.prep.course import COURSE_RULES, Course, extract_course, word_count
from tests.drg.mimic_fixture import ADMISSION_MEDS, DISCHARGE_MEDS, LAYOUTS, PREAMBLE, TAIL, course_text, render

COURSE = (
    "Ms. ___ is a ___ y/o woman with HFpEF who presented with dyspnea.\n \n"
    "# Acute on chronic diastolic heart failure: diuresed with IV furosemide, net negative 3L.\n"
    "Home medications on admission were held on arrival and restarted at discharge.\n"
    "Discharge medications were reconciled with her outpatient cardiologist.\n \n"
    "TRANSITIONAL ISSUES:\n- weigh daily, call if up more than 3 lbs"
)


@pytest.mark.parametrize("layout", [name for name, (_, rule) in LAYOUTS.items() if rule is not None])
def test_each_layout_finds_the_course_with_its_rule(layout: str) -> None:
    found = extract_course(render(layout, COURSE))
    assert found is not None
    assert found.text == COURSE
    assert found.rule == LAYOUTS[layout][1]


@pytest.mark.parametrize("layout", [name for name, (_, rule) in LAYOUTS.items() if rule is None])
def test_layouts_without_a_bounded_course_give_none(layout: str) -> None:
    assert extract_course(render(layout, COURSE)) is None


def test_rules_are_tried_most_conservative_first() -> None:
    assert [r.name for r in COURSE_RULES] == ["brief_to_admission_meds", "brief_to_discharge_meds", "broad"]
    # Sections between the course and "Medications on Admission" stay in the course (rule 1 wins).
    note = f"{PREAMBLE}Brief Hospital Course:\n{COURSE}\n \nDischarge Diagnosis:\nCHF\n \n{ADMISSION_MEDS}{TAIL}"
    found = extract_course(note)
    assert found is not None and found.rule == "brief_to_admission_meds"
    assert found.text.startswith(COURSE) and found.text.endswith("CHF")


def test_headers_are_case_insensitive_and_may_be_indented() -> None:
    note = f"{PREAMBLE}  BRIEF HOSPITAL COURSE:\n{COURSE}\n \n\tMEDICATIONS ON ADMISSION:\n1. aspirin\n"
    assert extract_course(note) == Course(COURSE, "brief_to_admission_meds")


def test_text_on_the_header_line_and_a_note_that_starts_with_the_header() -> None:
    found = extract_course(f"Brief Hospital Course: {COURSE}\nMedications on Admission:\nnone\n")
    assert found is not None and found.text == COURSE and found.rule == "brief_to_admission_meds"


def test_prose_mentions_do_not_start_or_end_a_course() -> None:
    # The preamble says "hospital course" and "medications on admission" in prose; the course says
    # "Discharge medications were reconciled" at a line start, which is not a header (no colon).
    found = extract_course(render("brief_no_admission_meds", COURSE))
    assert found is not None and found.text == COURSE
    assert extract_course(f"{PREAMBLE}{DISCHARGE_MEDS}{TAIL}") is None


def test_lower_case_hospital_course_mid_line_is_prose_but_a_header_line_counts() -> None:
    body = f"{COURSE}\n \nDischarge Condition:\nstable\n"
    assert extract_course(f"Her prior hospital course: {body}") is None
    found = extract_course(f"Hospital Course:\n{body}")
    assert found is not None and found.rule == "broad" and found.text == COURSE


def test_rief_hospital_course_is_found_anywhere_even_after_non_ascii_text() -> None:
    for prefix in ("", "Temp 38.2°C, İstanbul transfer "):
        note = f"{prefix}=== Brief Hospital Course ===\n{COURSE}\nFollowup Instructions:\n___\n"
        found = extract_course(note)
        assert found is not None and found.rule == "broad"
        assert found.text == f"===\n{COURSE}"


def test_empty_section_is_no_course_and_stops_the_cascade() -> None:
    # Rule 2 would otherwise return the admission medication list as the course.
    assert extract_course(f"{PREAMBLE}Brief Hospital Course:\n \n{ADMISSION_MEDS}{DISCHARGE_MEDS}{TAIL}") is None
    assert extract_course("") is None


def test_the_de_identification_placeholders_are_kept() -> None:
    found = extract_course(render("brief", "Mr. ___ was seen by Dr. ___ on ___."))
    assert found is not None and found.text.count("___") == 3


def test_word_count_matches_the_fixture_course_lengths() -> None:
    for n in (40, 41, 120):
        assert word_count(course_text(n, "x")) == n
    assert word_count("  a\tb\n\nc  ") == 3


_body_line = st.text(alphabet=st.sampled_from("abcdefgh xyz.,;#-_0123456789"), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(_body_line, min_size=1, max_size=8), layout=st.sampled_from(["brief", "upper", "rief"]))
def test_any_course_body_is_recovered_verbatim_up_to_outer_white_space(lines: list[str], layout: str) -> None:
    body = "\n".join(lines)
    found = extract_course(render(layout, body))
    if body.strip():
        assert found == Course(body.strip(), LAYOUTS[layout][1])
    else:
        assert found is None


@pytest.mark.parametrize("header", ["___ on Admission:", "___  on Admission:"])
def test_de_identified_admission_meds_header_ends_the_first_rule(header: str) -> None:
    # MIMIC blanks "Medications" in some notes; the study's source stops rule 1 there too. Before the
    # fix the note fell to rule 2 and the admission medication list ended up inside the course.
    meds = ADMISSION_MEDS.replace("Medications on Admission:", header)
    note = f"{PREAMBLE}Brief Hospital Course:\n{COURSE}\n \n{meds}{DISCHARGE_MEDS}{TAIL}"
    assert extract_course(note) == Course(COURSE, "brief_to_admission_meds")


def test_de_identified_disposition_header_ends_the_broad_rule() -> None:
    tail = TAIL.replace("Discharge Disposition:", "___ Disposition:")
    note = f"{PREAMBLE}HOSPITAL COURSE:\n{COURSE}\n \n{tail}"
    assert extract_course(note) == Course(COURSE, "broad")


def test_de_identified_headers_only_end_a_course_at_a_line_start() -> None:
    body = f"{COURSE}\nDr. ___ on Admission day saw her; ___ Disposition was discussed.\n"
    note = f"{PREAMBLE}HOSPITAL COURSE:\n{body}\nDischarge Condition:\nstable\n"
    found = extract_course(note)
    assert found is not None and found.text == body.strip()
