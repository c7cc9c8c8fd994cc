"""Synthetic MIMIC-shaped DRG data (clinrl.drg.synth.generate): schema, determinism, layout, learnable labels and
honest edge-case counts. Expectations are recomputed from the written files, never hard-coded."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clinrl.drg.ontology import CCMCC, load_ontology
from clinrl.drg.prep.course import SECTION_HEADERS, extract_course, word_count
from clinrl.drg.synth import vocab as synth_vocab
from clinrl.drg.synth.bases import BASES
from clinrl.drg.synth.classes import DEFAULT_CLASSES, select_classes, supported_classes, unmappable_descriptions
from clinrl.drg.synth.generate import (
    DISCHARGE_COLUMNS,
    DRGCODES_COLUMNS,
    MANIFEST_NAME,
    SHORT_COURSE_WORDS,
    generator_fingerprint,
    max_classes,
    write_synthetic,
)
from clinrl.drg.synth.note import (
    PRONOUNS,
    SYNTHETIC_BANNER,
    FastRandom,
    choose_levels,
    severity_class,
    template_fields,
    template_pattern,
)
from clinrl.drg.synth.vocab import CONDITIONS, DISTRACTORS, SLOTS
from clinrl.errors import ClinrlError

N = 1500
SEED = 7
STYLE_OF_RULE = {"brief_to_admission_meds", "brief_to_discharge_meds", "broad"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = write_synthetic(out, N, seed=SEED, classes=max_classes(), progress=False)
    notes = pd.read_csv(out / "discharge.csv.gz", dtype=str, keep_default_na=False)
    codes = pd.read_csv(out / "drgcodes.csv.gz", dtype=str, keep_default_na=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    courses = [extract_course(t) for t in notes["text"]]
    return summary, notes, codes, manifest, courses


def _hcfa_labels(codes: pd.DataFrame, onto) -> dict[str, object]:
    hcfa = codes[codes["drg_type"].str.strip() == "HCFA"]
    return {h: onto.to_v34(d) for h, d in zip(hcfa["hadm_id"], hcfa["description"])}


def test_schema_and_column_order(synth):
    summary, notes, codes, manifest, _ = synth
    assert tuple(notes.columns) == DISCHARGE_COLUMNS == tuple(manifest["columns"]["discharge"])
    assert tuple(codes.columns) == DRGCODES_COLUMNS == tuple(manifest["columns"]["drgcodes"])
    assert len(notes) == N == summary.notes and notes["hadm_id"].is_unique
    assert (notes["note_type"] == "DS").all()
    assert (notes["note_id"] == notes["subject_id"] + "-DS-" + notes["note_seq"]).all()
    assert notes["subject_id"].str.fullmatch(r"1\d{7}").all() and notes["hadm_id"].str.fullmatch(r"2\d{7}").all()
    chart = pd.to_datetime(notes["charttime"], format="%Y-%m-%d %H:%M:%S")
    store = pd.to_datetime(notes["storetime"], format="%Y-%m-%d %H:%M:%S")
    assert (store > chart).all()
    # several admissions per patient, in time order, with increasing note_seq
    per_subject = notes.groupby("subject_id").size()
    assert (per_subject > 1).sum() == manifest["counts"]["subjects_with_several_notes"] > 0
    assert per_subject.size == summary.subjects
    for _, group in notes.assign(chart=chart).groupby("subject_id"):
        assert group["chart"].is_monotonic_increasing and group["note_seq"].astype(int).is_monotonic_increasing

    types = codes["drg_type"]
    assert set(types.str.strip()) == {"HCFA", "APR"} and (types == "APR ").any()
    hcfa, apr = codes[types.str.strip() == "HCFA"], codes[types.str.strip() == "APR"]
    assert (hcfa["drg_severity"] == "").all() and (hcfa["drg_mortality"] == "").all()
    for column in ("drg_severity", "drg_mortality"):
        assert apr[column].isin(list("1234")).all()
    assert codes["drg_code"].str.fullmatch(r"\d{3}").all()
    assert hcfa["description"].str.contains(r"\bW/?O?\b|&").mean() > 0.5  # MIMIC's abbreviated style


def test_marked_synthetic(synth):
    summary, notes, _, manifest, _ = synth
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["warning"]
    assert notes["text"].str.startswith(SYNTHETIC_BANNER).all()
    assert manifest["counts"] == summary.counts and manifest["fingerprint"] == generator_fingerprint()


def test_seed_determinism(tmp_path):
    def files(out: Path) -> list[bytes]:
        return [(out / name).read_bytes() for name in ("discharge.csv.gz", "drgcodes.csv.gz")]

    a = write_synthetic(tmp_path / "a", 300, seed=3, progress=False)
    b = write_synthetic(tmp_path / "b", 300, seed=3, progress=False)
    c = write_synthetic(tmp_path / "c", 300, seed=4, progress=False)
    assert files(a.out) == files(b.out) and a.counts == b.counts
    assert files(a.out)[0] != files(c.out)[0]


def test_note_length_and_sections(synth):
    _, notes, _, _, courses = synth
    lengths = notes["text"].str.len()
    assert lengths.min() > 3000 and lengths.mean() > 5000
    fixed = [
        "Name:",
        "Admission Date:",
        "Date of Birth:",
        "Sex:",
        "Service:",
        "Allergies:",
        "Attending:",
        "Chief Complaint:",
        "Major Surgical or Invasive Procedure:",
        "History of Present Illness:",
        "Past Medical History:",
        "Social History:",
        "Family History:",
        "Physical Exam:",
        "Pertinent Results:",
        "Discharge Medications:",
    ]
    closing = ["Discharge Condition:", "Discharge Instructions:", "Followup Instructions:"]
    for text, course in zip(notes["text"], courses):
        positions = [text.index(h) for h in fixed + closing]
        assert positions == sorted(positions)
        assert "___" in text
        assert re.search(r"(?im)^(Discharge Diagnosis|DISCHARGE DIAGNOSIS):", text)
        assert re.search(r"(?m)^Discharge Disposition:", text)
        if course is None:
            continue
        # the course never contains a header that would cut it short, nor a second course header
        assert not re.search(r"(?im)^[ \t]*(" + "|".join(SECTION_HEADERS) + r")[ \t]*(:|$)", course.text)
        assert "HOSPITAL COURSE" not in course.text and "rief hospital course" not in course.text.lower()
        if course.rule == "brief_to_discharge_meds":
            assert "Medications on Admission" not in text
    rules = Counter(c.rule if c else None for c in courses)
    assert set(rules) == STYLE_OF_RULE | {None}  # all three cascades and notes without a course
    words = [word_count(c.text) for c in courses if c and word_count(c.text) > SHORT_COURSE_WORDS]
    assert 150 < sum(words) / len(words) < 600


def test_descriptions_map_back_for_every_class(onto, msdrg_dir):
    shared = load_ontology(msdrg_dir)
    classes = supported_classes()
    assert len(classes) == max_classes() >= 60
    assert len({c.drg.code for c in classes}) == len(classes)
    for cls in classes:
        assert cls.drg.cc_mcc in cls.family and cls.drg.cc_mcc is not CCMCC.NOT_APPLICABLE
        if onto.to_v34(cls.drg.short_title).drg == cls.drg:  # the CMS short title is the usual MIMIC spelling
            assert cls.descriptions[0] == cls.drg.short_title
        for raw in cls.descriptions + cls.other_versions:
            assert onto.to_v34(raw).drg == cls.drg, raw
            assert shared.to_v34(raw).drg == cls.drg, raw
    assert sum(bool(c.other_versions) for c in classes) >= 5
    for raw in unmappable_descriptions():
        assert onto.to_v34(raw).how == "unmappable"


def test_class_selection():
    every = supported_classes()
    assert [c.drg.code for c in select_classes(len(every))] == [c.drg.code for c in every]
    for k in (1, 2, 5, DEFAULT_CLASSES, 33):
        chosen = select_classes(k)
        assert len(chosen) == k == len({c.drg.code for c in chosen})
        bases = Counter(c.base.key for c in chosen)
        complete = [b for b, count in bases.items() if count == len(next(c for c in chosen if c.base.key == b).family)]
        assert len(complete) >= len(bases) - 1  # at most one base is cut short
    for bad in (0, len(every) + 1):
        with pytest.raises(ValueError):
            select_classes(bad)
    with pytest.raises(ClinrlError):
        write_synthetic("unused", 10, classes=len(every) + 1)


@pytest.mark.parametrize("family", [{2, 1, 0}, {2, 3}, {1, 0}])
def test_severity_rule_round_trip(family):
    family = {CCMCC(f) for f in family}
    rng = FastRandom(0)
    for target in family:
        for _ in range(50):
            assert severity_class(choose_levels(target, family, rng), family) is target
    assert severity_class([], family) in family and severity_class(["MCC", "CC"], family) in family


def _all_templates() -> list[str]:
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (tuple, list, frozenset)):
            for item in value:
                walk(item)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                walk(getattr(value, name))

    walk(BASES)
    for name in ("CONDITIONS", "DISTRACTORS", "CHRONIC", "FILLER", "MINOR_PROBLEMS", "TRANSITIONAL", "SHORT_COURSES"):
        walk(getattr(synth_vocab, name))
    return found


def test_templates_use_known_slots_only():
    known = set(SLOTS) | set(PRONOUNS["F"]) | {"marker"}
    templates = _all_templates()
    assert len(templates) > 500
    for template in templates:
        assert set(template_fields(template)) <= known, template
    for values in SLOTS.values():
        assert values and not any("\n" in v or "{" in v for v in values)


def _active_patterns():
    return [(c.level, [template_pattern(t) for t in c.active]) for c in CONDITIONS]


def test_distractors_never_read_as_active_conditions():
    patterns = _active_patterns()
    rng = random.Random(0)
    pronouns = [{"he": "she", "He": "She", "his": "her", "His": "Her", "him": "her"}]
    for d in DISTRACTORS:
        for _ in range(5):
            values = {k: rng.choice(v) for k, v in SLOTS.items()} | rng.choice(pronouns)
            text = d.text.format_map(values)
            assert not any(p.search(text) for _, ps in patterns for p in ps), text


def test_label_follows_from_course(synth, onto):
    _, notes, codes, _, courses = synth
    labels = _hcfa_labels(codes, onto)
    patterns = _active_patterns()
    markers = {onto.by_code(b.drg).principal: b for b in BASES}
    family = {c.drg.principal: c.family for c in supported_classes()}
    seen = Counter()
    for hadm, course in zip(notes["hadm_id"], courses):
        label = labels.get(hadm)
        if course is None or label is None or label.drg is None or word_count(course.text) <= SHORT_COURSE_WORDS:
            continue
        drg = label.drg
        levels = {level for level, ps in patterns if any(p.search(course.text) for p in ps)}
        assert severity_class(levels, family[drg.principal]) is drg.cc_mcc, (drg.description, levels)
        base = markers[drg.principal]
        assert any(m in course.text for m in base.markers)
        assert not any(m in course.text for other in BASES if other is not base for m in other.markers)
        seen[frozenset(levels)] += 1
        seen["distractor"] += any(template_pattern(d.text).search(course.text) for d in DISTRACTORS)
    # not vacuous: every kind of evidence occurs, and most notes carry a distractor to read past
    assert seen[frozenset()] and seen[frozenset({"CC"})] and seen[frozenset({"MCC"})]
    assert seen[frozenset({"MCC", "CC"})] and seen["distractor"] > 0.5 * sum(seen[k] for k in seen if k != "distractor")


def test_manifest_counts_equal_the_files(synth, onto):
    summary, notes, codes, manifest, courses = synth
    counts = manifest["counts"]
    styles = Counter(c.rule if c else "none" for c in courses)
    assert counts["course_style"] == {k: styles.get(k, 0) for k in counts["course_style"]}
    assert counts["no_course"] == styles["none"] > 0
    short = [c is not None and word_count(c.text) <= SHORT_COURSE_WORDS for c in courses]
    assert counts["short_course"] == sum(short) > 0
    seen, duplicate = set(), []
    for c, is_short in zip(courses, short):
        dup = c is not None and not is_short and c.text in seen
        duplicate.append(dup)
        if c is not None and not is_short:
            seen.add(c.text)
    assert counts["duplicate_course"] == sum(duplicate) > 0

    stripped = codes["drg_type"].str.strip()
    by_hadm = codes.assign(t=stripped).groupby("hadm_id")["t"].agg(set)
    assert counts["apr_only"] == sum(types == {"APR"} for types in by_hadm) > 0
    hcfa = codes[stripped == "HCFA"]
    how = [onto.to_v34(d).how for d in hcfa["description"]]
    assert counts["unmappable_hcfa"] == how.count("unmappable") > 0 and "unknown" not in how
    assert counts["hcfa_type_trailing_space"] == (codes["drg_type"] == "HCFA ").sum()
    assert counts["apr_type_trailing_space"] == (codes["drg_type"] == "APR ").sum() > 0
    assert counts["codes_without_note"] == len(set(codes["hadm_id"]) - set(notes["hadm_id"])) > 0
    assert counts["drgcodes_rows"] == len(codes)
    other = {raw for c in supported_classes() for raw in c.other_versions}
    assert counts["hcfa_other_version"] == hcfa["description"].isin(other).sum() > 0

    labels = _hcfa_labels(codes, onto)
    usable = Counter()
    for hadm, course, is_short, dup in zip(notes["hadm_id"], courses, short, duplicate):
        label = labels.get(hadm)
        if course is not None and not is_short and not dup and label is not None and label.drg is not None:
            usable[label.drg.description] += 1
    assert counts["expected_usable"] == sum(usable.values())
    assert {c["description"]: c["usable_notes"] for c in manifest["classes"]} == {
        d: usable.get(d, 0) for d in summary.classes
    }
    assert len(usable) == max_classes()  # every class is used


def test_cli_synth(tmp_path, capsys):
    from clinrl.cli import main

    main(["drg", "synth", "--n-notes", "40", "--out", str(tmp_path / "s"), "--seed", "1", "--classes", "5", "--quiet"])
    report = json.loads(capsys.readouterr().out)
    assert report["synthetic"] is True and report["notes"] == 40
    manifest = json.loads((tmp_path / "s" / MANIFEST_NAME).read_text())
    assert len(manifest["classes"]) == 5 and manifest["counts"]["notes"] == 40
    with pytest.raises(SystemExit) as exit_info:
        main(["drg", "synth", "--n-notes", "0", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "--n-notes must be between 1 and" in capsys.readouterr().err
