"""A small MIMIC-IV-shaped fixture (discharge notes + drgcodes) whose every note has a known fate.

Each note is created for one purpose (kept, or dropped at one named step), so the expected
exclusion flow is counted from the construction rather than written down by hand.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from clinrl.drg.prep.mimic import FLOW_KEYS

NOTE_HEADER = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
DRG_HEADER = ["subject_id", "hadm_id", "drg_type", "drg_code", "description", "drg_severity", "drg_mortality"]

PREAMBLE = (
    " \nName:  ___                     Unit No:   ___\n \n"
    "Admission Date:  ___              Discharge Date:   ___\n \n"
    "Date of Birth:  ___             Sex:   F\n \nService: MEDICINE\n \n"
    "Allergies: \nNo Known Allergies / Adverse Drug Reactions\n \nAttending: ___.\n \n"
    "Chief Complaint:\nshortness of breath\n \n"
    "History of Present Illness:\nMs. ___ is a ___ y/o woman whose last hospital course was complicated\n"
    "by ___. Her home medications on admission were reviewed with her daughter.\n \n"
    "Past Medical History:\nHTN, HLD, CKD stage III\n \n"
    "Pertinent Results:\n___ 07:40AM BLOOD WBC-7.2 RBC-3.91* Hgb-11.8 Hct-35.6 Plt ___\n \n"
)
ADMISSION_MEDS = (
    "Medications on Admission:\nThe Preadmission Medication list is accurate and complete.\n"
    "1. Aspirin 81 mg PO DAILY \n2. Furosemide 40 mg PO DAILY \n \n"
)
DISCHARGE_MEDS = "Discharge Medications:\n1. Aspirin 81 mg PO DAILY \n2. Furosemide 40 mg PO DAILY \n \n"
TAIL = (
    "Discharge Disposition:\nHome With Service\n \nFacility:\n___\n \n"
    "Discharge Diagnosis:\nprimary: acute on chronic diastolic heart failure\n \n"
    "Discharge Condition:\nMental Status: Clear and coherent.\nActivity Status: Ambulatory - Independent.\n \n"
    "Discharge Instructions:\nDear Ms. ___,\nIt was a pleasure taking care of you at ___.\n \n"
    "Followup Instructions:\n___\n"
)
# Note layouts: how the course is framed, and which extraction rule should find it (None: no course).
LAYOUTS: dict[str, tuple[str, str | None]] = {
    "brief": ("{pre}Brief Hospital Course:\n{course}\n \n{adm}{dis}{tail}", "brief_to_admission_meds"),
    "brief_no_admission_meds": ("{pre}Brief Hospital Course:\n{course}\n \n{dis}{tail}", "brief_to_discharge_meds"),
    "upper": ("{pre}HOSPITAL COURSE:\n{course}\n \nDISCHARGE DIAGNOSIS:\nCHF\n \n{tail}", "broad"),
    "rief": ("{pre}#Brief Hospital Course:\n{course}\n \n{adm}{dis}{tail}", "broad"),
    "no_header": ("{pre}{adm}{dis}{tail}", None),
    "unterminated": ("{pre}Brief Hospital Course:\n{course}\n", None),
}
COURSE_LAYOUTS = ("brief", "brief_no_admission_meds", "upper", "rief")

FILLER = (
    "was admitted with worsening dyspnea and lower extremity edema ; she was diuresed with IV "
    "furosemide with good effect , net negative ___ liters ; creatinine peaked at 1.9 and trended "
    "down ; home medications on admission were held and restarted at discharge ; TTE showed "
    "preserved EF ; she worked with physical therapy who recommended home with services"
).split()

# Raw MIMIC-style descriptions per intent (abbreviated W, W/O, &, commas, CATH, PROC).
GOOD = {
    "HEART FAILURE & SHOCK W MCC": "exact",
    "SIMPLE PNEUMONIA & PLEURISY W/O CC/MCC": "exact",
    "KIDNEY & URINARY TRACT INFECTIONS W/O MCC": "exact",
    "SEPTICEMIA OR SEVERE SEPSIS WITHOUT MV 96+ HOURS WITH MCC": "mapped",
    "ESOPHAGITIS, GASTROENT & MISC DIGEST DISORDERS W/O MCC": "mapped",
    "CIRCULATORY DISORDERS EXCEPT AMI, W CARD CATH W/O MCC": "mapped",
}
SAME_V34_AS_FIRST_GOOD = "HEART FAILURE AND SHOCK WITH MCC OR PERIPHERAL EXTRACORPOREAL MEMBRANE OXYGEN"
BOUNDARY = "CHEST PAIN"  # exactly min_class_count notes: kept
RARE = "SYNCOPE & COLLAPSE"  # one note: dropped as rare
RARE_AFTER_DROPS = "SEIZURES W/O MCC"  # two admissions, but one note has no course: dropped as rare
UNMAPPABLE = (
    "MAJOR HIP AND KNEE JOINT REPLACEMENT OR REATTACHMENT OF LOWER EXTREMITY",
    "NUTRITIONAL & MISC METABOLIC DISORDERS W/O MCC",
)
UNKNOWN = "NOT A DRG DESCRIPTION AT ALL"
CONFLICT = ("RENAL FAILURE W CC", "G.I. HEMORRHAGE W CC")

KEPT = "kept"
LABELLED = "labelled"  # reaches the rare-class step; kept or dropped there


@dataclass
class NoteSpec:
    note_id: str
    subject_id: int
    hadm_id: int | None
    text: str
    fate: str  # a flow key (dropped_*) or LABELLED
    course: str | None = None
    rule: str | None = None
    label: str | None = None  # class key (first raw description of the class)
    note_seq: str = "1"
    charttime: str = "2180-01-01 00:00:00"


@dataclass
class MimicFixture:
    discharge: Path
    drgcodes: Path
    notes: list[NoteSpec]
    malformed_note_rows: dict[str, int]
    malformed_drg_rows: dict[str, int]
    conflicting_admissions: int
    agreeing_several_rows_admissions: int
    apr_only_admissions: int
    min_class_count: int
    no_hcfa_reasons: Counter = field(default_factory=Counter)

    def fates(self) -> list[str]:
        """Each note's final fate, resolving the rare-class step."""
        sizes = Counter(n.label for n in self.notes if n.fate == LABELLED)
        out = []
        for n in self.notes:
            if n.fate != LABELLED:
                out.append(n.fate)
            else:
                out.append(KEPT if sizes[n.label] >= self.min_class_count else "dropped_rare_class")
        return out

    def expected_flow(self) -> dict[str, int]:
        """Every flow count except the train/test sizes."""
        fates = Counter(self.fates())
        kept_labels = {n.label for n, f in zip(self.notes, self.fates()) if f == KEPT}
        return {
            "notes_read": len(self.notes),
            **{key: fates[key] for key in FLOW_KEYS if key.startswith("dropped_")},
            "kept": fates[KEPT],
            "n_classes": len(kept_labels),
        }

    def kept_notes(self) -> list[NoteSpec]:
        return [n for n, f in zip(self.notes, self.fates()) if f == KEPT]


def course_text(n_words: int, tag: str) -> str:
    """A course of exactly ``n_words`` words, unique through ``tag``, wrapped like MIMIC text."""
    words = [f"Ms. ___ (case-{tag})"] + [FILLER[i % len(FILLER)] for i in range(n_words - 3)]
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    return "\n".join(lines)


def render(layout: str, course: str = "") -> str:
    template, _ = LAYOUTS[layout]
    return template.format(pre=PREAMBLE, course=course, adm=ADMISSION_MEDS, dis=DISCHARGE_MEDS, tail=TAIL)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.notes: list[NoteSpec] = []
        self.drg_rows: list[list[str]] = []
        self.hadm = 20_000_000
        self.subjects = [10_000_000 + i for i in range(40)]
        self.n = 0

    def admission(self, hcfa: tuple[str, ...], *, apr: bool = True, subject: int | None = None) -> tuple[int, int]:
        self.hadm += 1
        subject = subject if subject is not None else self.rng.choice(self.subjects)
        for i, description in enumerate(hcfa):
            drg_type = "HCFA" if i % 2 == 0 else "HCFA "  # MIMIC has stray trailing spaces
            self.drg_rows.append([str(subject), str(self.hadm), drg_type, str(100 + i), description, "", ""])
        if apr:
            self.drg_rows.append([str(subject), str(self.hadm), "APR ", "194", "HEART FAILURE", "3", "2"])
        return subject, self.hadm

    def note(
        self,
        subject: int,
        hadm: int | None,
        fate: str,
        *,
        layout: str | None = None,
        words: int = 60,
        course: str | None = None,
        label: str | None = None,
    ) -> NoteSpec:
        self.n += 1
        layout = layout or COURSE_LAYOUTS[self.n % len(COURSE_LAYOUTS)]
        if course is None and LAYOUTS[layout][1] is not None:
            course = course_text(words, str(self.n))
        spec = NoteSpec(
            note_id=f"{subject}-DS-{self.n}",
            subject_id=subject,
            hadm_id=hadm,
            text=render(layout, course or course_text(words, str(self.n))),
            fate=fate,
            course=course if LAYOUTS[layout][1] else None,
            rule=LAYOUTS[layout][1],
            label=label,
        )
        self.notes.append(spec)
        return spec


def build_fixture(
    tmp: Path,
    *,
    per_class: int = 10,
    min_class_count: int = 2,
    multi_note_admission: bool = True,
    seed: int = 0,
) -> MimicFixture:
    """Write ``discharge.csv.gz`` and ``drgcodes.csv.gz`` under ``tmp`` and describe their content."""
    b = _Builder(seed)
    no_hcfa: Counter = Counter()
    good = list(GOOD)
    for k in range(per_class):
        for description in good:
            subject, hadm = b.admission((description,))
            b.note(subject, hadm, LABELLED, label=description, words=45 + 7 * k)
    # several HCFA rows that agree on the v34 DRG (two spellings, and an exact repeat)
    subject, hadm = b.admission((good[0], SAME_V34_AS_FIRST_GOOD))
    b.note(subject, hadm, LABELLED, label=good[0])
    subject, hadm = b.admission((good[1], good[1]))
    b.note(subject, hadm, LABELLED, label=good[1])
    agreeing = 2
    for _ in range(min_class_count):
        subject, hadm = b.admission((BOUNDARY,))
        b.note(subject, hadm, LABELLED, label=BOUNDARY)
    subject, hadm = b.admission((RARE,))
    b.note(subject, hadm, LABELLED, label=RARE)
    subject, hadm = b.admission((RARE_AFTER_DROPS,))
    b.note(subject, hadm, LABELLED, label=RARE_AFTER_DROPS)
    subject, hadm = b.admission((RARE_AFTER_DROPS,))
    b.note(subject, hadm, "dropped_no_course", layout="no_header")
    for description in (*UNMAPPABLE, UNMAPPABLE[0], UNKNOWN):
        subject, hadm = b.admission((description,))
        b.note(subject, hadm, "dropped_unmapped_drg")
    subject, hadm = b.admission(CONFLICT)
    b.note(subject, hadm, "dropped_unmapped_drg")
    for _ in range(2):  # APR-only admissions
        subject, hadm = b.admission((), apr=True)
        b.note(subject, hadm, "dropped_no_hcfa_drg")
        no_hcfa["apr_only_admission"] += 1
    b.hadm += 1  # an admission that drgcodes does not know
    b.note(b.subjects[0], b.hadm, "dropped_no_hcfa_drg")
    no_hcfa["admission_not_in_drgcodes"] += 1
    b.note(b.subjects[1], None, "dropped_no_hcfa_drg")  # blank hadm_id
    no_hcfa["blank_hadm_id"] += 1
    # notes without a course, with short courses (40 words: dropped; 41: kept), with duplicate courses
    for layout in ("no_header", "unterminated"):
        subject, hadm = b.admission((good[2],))
        b.note(subject, hadm, "dropped_no_course", layout=layout)
    for words, fate in ((40, "dropped_short_course"), (12, "dropped_short_course"), (41, LABELLED)):
        subject, hadm = b.admission((good[3],))
        b.note(subject, hadm, fate, words=words, label=good[3])
    original = b.notes[0]
    assert original.course is not None
    subject, hadm = b.admission((good[4],))
    b.note(subject, hadm, "dropped_duplicate_course", layout="upper", course=original.course)
    subject, hadm = b.admission((good[5],))
    spaced = original.course.replace("\n", "  \n ").replace(" ; ", "\t;\t")
    b.note(subject, hadm, "dropped_duplicate_course", layout="brief_no_admission_meds", course=spaced)
    if multi_note_admission:  # different notes of one admission: only the latest is kept
        subject, hadm = b.admission((good[5],))
        b.note(subject, hadm, LABELLED, label=good[5]).note_seq = "3"  # latest by note_seq
        b.note(subject, hadm, "dropped_other_note_of_admission", words=90).note_seq = "2"
        b.note(subject, hadm, "dropped_other_note_of_admission", words=95).note_seq = ""  # unusable: ranks first
        subject, hadm = b.admission((good[5],))
        b.note(subject, hadm, LABELLED, label=good[5]).charttime = "2180-01-02 08:00:00"  # same seq, later
        b.note(subject, hadm, "dropped_other_note_of_admission", words=92)
    b.rng.shuffle(b.notes)
    _move_after(b.notes, original)

    discharge = tmp / "discharge.csv.gz"
    drgcodes = tmp / "drgcodes.csv.gz"
    malformed_notes = _write_notes(discharge, b.notes)
    malformed_drgs = {"non-integer hadm_id": 1}
    _write_csv(drgcodes, DRG_HEADER, b.drg_rows + [["1", "abc", "HCFA", "1", good[0], "", ""]])
    return MimicFixture(
        discharge=discharge,
        drgcodes=drgcodes,
        notes=b.notes,
        malformed_note_rows=malformed_notes,
        malformed_drg_rows=malformed_drgs,
        conflicting_admissions=1,
        agreeing_several_rows_admissions=agreeing,
        apr_only_admissions=no_hcfa["apr_only_admission"],
        min_class_count=min_class_count,
        no_hcfa_reasons=no_hcfa,
    )


def _move_after(notes: list[NoteSpec], original: NoteSpec) -> None:
    """Keep-first: the duplicates must come after the note whose course they copy."""
    notes.remove(original)
    first_dup = min(i for i, n in enumerate(notes) if n.fate == "dropped_duplicate_course")
    notes.insert(first_dup, original)


def _rows(notes: list[NoteSpec]) -> list[list[str]]:
    return [
        [n.note_id, str(n.subject_id), "" if n.hadm_id is None else str(n.hadm_id), "DS", n.note_seq,
         n.charttime, "2180-01-01 12:00:00", n.text]
        for n in notes
    ]  # fmt: skip


def _write_notes(path: Path, notes: list[NoteSpec]) -> dict[str, int]:
    """Write the notes plus three malformed rows; return the expected skip counts by reason."""
    bad = [
        ["10000000-DS-900", "10000000", "2000x", "DS", "1", "", "", "text"],
        ["10000000-DS-901", "", "20000001", "DS", "1", "", "", "text"],
    ]
    rows = _rows(notes)
    rows[3:3] = bad
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(NOTE_HEADER)
    writer.writerows(rows[:10])
    buffer.write('10000000-DS-902,10000000,20000001,DS,1,,,"text",extra\n')  # one field too many
    writer.writerows(rows[10:])
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))
    return {
        "non-integer hadm_id": 1,
        "blank or non-integer subject_id": 1,
        "unparseable record (wrong number of fields)": 1,
    }


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
