"""SYNTHETIC MIMIC-IV-shaped DRG data: ``discharge.csv.gz`` and ``drgcodes.csv.gz`` (``clinrl drg synth``).

For tests, demos and scale benchmarks without credentialed MIMIC access. The files follow the real
schemas (MIMIC-IV-Note ``note/discharge`` and MIMIC-IV ``hosp/drgcodes``), the notes follow the usual
discharge-summary layout, and the DRG is learnable from the hospital course: the course names the
principal condition and documents the secondary conditions that set the CC/MCC class (see
:mod:`clinrl.drg.synth.note`). A seeded share of notes carries the edge cases a real file has (no
course, very short course, duplicated course, APR-only admission, unmappable HCFA description,
other-version descriptions, ``'APR '`` with a trailing space, codes for admissions without a note);
every count is written to ``synth_manifest.json``. Everything is marked SYNTHETIC, including each note.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import queue
import random
import re
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinrl.drg.ontology import CCMCC
from clinrl.drg.synth.classes import (
    DEFAULT_CLASSES,
    SynthClass,
    select_classes,
    supported_classes,
    unmappable_descriptions,
)
from clinrl.drg.synth.note import COURSE_STYLES, FastRandom, NoteFactory, Subject, choose_levels
from clinrl.errors import ClinrlError
from clinrl.io import atomic_path, write_json_atomic

__all__ = [
    "DEFAULT_CLASSES",
    "DISCHARGE_COLUMNS",
    "DRGCODES_COLUMNS",
    "MANIFEST_NAME",
    "EdgeRates",
    "SynthSummary",
    "generator_fingerprint",
    "max_classes",
    "write_synthetic",
]

DISCHARGE_COLUMNS = ("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text")
DRGCODES_COLUMNS = ("subject_id", "hadm_id", "drg_type", "drg_code", "description", "drg_severity", "drg_mortality")
MANIFEST_NAME = "synth_manifest.json"
SHORT_COURSE_WORDS = 40  # the study drops courses of <= 40 words
MAX_NOTES = 5_000_000  # hadm_ids are drawn from 20,000,000-29,999,999 as in MIMIC-IV
_STYLE_WEIGHTS = {"brief_to_admission_meds": 0.8, "brief_to_discharge_meds": 0.1, "broad": 0.1}
_ADMISSIONS_PER_SUBJECT = (0.55, 0.2, 0.1, 0.06, 0.04, 0.02, 0.02, 0.01)  # 1..8 notes
_READMIT_SAME_BASE = 0.5
_APR_SEVERITY = {
    CCMCC.WITH_MCC: (3, 3, 4),
    CCMCC.WITH_CC_OR_CC_MCC: (2, 2, 3),
    CCMCC.WITHOUT_MCC: (1, 2, 2),
    CCMCC.WITHOUT_CC_MCC: (1, 1, 2),
}


@dataclass(frozen=True)
class EdgeRates:
    """Seeded shares of the edge cases (per note unless stated)."""

    no_course: float = 0.008
    short_course: float = 0.012
    duplicate_course: float = 0.01
    apr_only: float = 0.015
    unmappable_hcfa: float = 0.006
    other_version: float = 0.08  # of HCFA rows whose class has other-version spellings
    hcfa_trailing_space: float = 0.005  # 'HCFA ' rows
    apr_trailing_space: float = 0.25  # 'APR ' rows
    codes_without_note: float = 0.01  # extra admissions in drgcodes with no discharge note


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_synthetic` wrote. ``counts`` holds every edge-case count (see the manifest)."""

    out: Path
    discharge: Path
    drgcodes: Path
    manifest: Path
    notes: int
    subjects: int
    classes: tuple[str, ...]
    counts: dict[str, Any]
    class_counts: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("out", "discharge", "drgcodes", "manifest"):
            d[key] = str(d[key])
        d["classes"] = list(self.classes)
        return d


def generator_fingerprint() -> str:
    """A hash of the generator's code and phrase tables: same fingerprint and seed, same files."""
    digest = hashlib.sha256()
    for name in ("generate.py", "bases.py", "classes.py", "note.py", "vocab.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def max_classes() -> int:
    """How many DRG classes the generator supports."""
    return len(supported_classes())


def write_synthetic(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    classes: int = DEFAULT_CLASSES,
    progress: bool = True,
    rates: EdgeRates = EdgeRates(),
) -> SynthSummary:
    """Write ``n`` SYNTHETIC discharge notes and their DRG codes under ``out`` (deterministic in ``seed``).

    Files: ``discharge.csv.gz``, ``drgcodes.csv.gz`` (MIMIC-IV schemas) and ``synth_manifest.json``.
    ``classes`` is the number of v34 DRGs used as labels (1..:func:`max_classes`).
    """
    if not 1 <= n <= MAX_NOTES:
        raise ClinrlError(f"--n-notes must be between 1 and {MAX_NOTES:,}, got {n}")
    if not 1 <= classes <= max_classes():
        raise ClinrlError(f"--classes must be between 1 and {max_classes()}, got {classes}")
    start = time.perf_counter()
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ClinrlError(f"--out {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = _Generator(FastRandom(seed), select_classes(classes), rates)
    paths = (out_dir / "discharge.csv.gz", out_dir / "drgcodes.csv.gz")
    with ExitStack() as stack:
        tmp_notes, tmp_codes = (stack.enter_context(atomic_path(p)) for p in paths)
        notes_out = stack.enter_context(_GzipWriter(tmp_notes, level=1))
        codes_out = stack.enter_context(_GzipWriter(tmp_codes, level=6))
        gen.run(n, notes_out, codes_out, progress)
    seconds = round(time.perf_counter() - start, 3)
    counts = gen.counts()
    class_counts = {c.drg.description: gen.usable_by_class[i] for i, c in enumerate(gen.classes)}
    manifest = out_dir / MANIFEST_NAME
    write_json_atomic(
        manifest,
        {
            "synthetic": True,
            "warning": "SYNTHETIC DATA generated by clinrl drg synth: not real patients, not MIMIC-IV.",
            "generator": "clinrl.drg.synth.generate",
            "fingerprint": generator_fingerprint(),
            "seed": seed,
            "n": n,
            "files": {"discharge": paths[0].name, "drgcodes": paths[1].name},
            "columns": {"discharge": list(DISCHARGE_COLUMNS), "drgcodes": list(DRGCODES_COLUMNS)},
            "edge_rates": asdict(rates),
            "counts": counts,
            "classes": [
                {
                    "drg": c.drg.code,
                    "description": c.drg.description,
                    "base": c.base.key,
                    "cc_mcc": c.drg.cc_mcc.label,
                    "usable_notes": gen.usable_by_class[i],
                }
                for i, c in enumerate(gen.classes)
            ],
            "seconds": seconds,
        },
    )
    return SynthSummary(
        out=out_dir,
        discharge=paths[0],
        drgcodes=paths[1],
        manifest=manifest,
        notes=n,
        subjects=counts["subjects"],
        classes=tuple(c.drg.description for c in gen.classes),
        counts=counts,
        class_counts=class_counts,
        seconds=seconds,
    )


_NEEDS_QUOTES = re.compile(r'[,"\n\r]')


def _csv_field(value: object) -> str:
    """One CSV field, quoted (RFC 4180) only when it needs to be."""
    text = str(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_line(row: tuple) -> str:
    return ",".join(map(_csv_field, row)) + "\n"


class _GzipWriter:
    """CSV text into a gzip file with a fixed header (no name, mtime 0, so output is reproducible).

    Compression runs on a background thread (zlib releases the GIL), overlapping note generation.
    """

    def __init__(self, path: Path, level: int):
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=self._raw, mtime=0)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="synth-gzip", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._gz.write(chunk)
                except BaseException as err:  # reported by write()/close()
                    self._error = err

    def write_lines(self, lines: list[str]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put("".join(lines).encode("utf-8"))

    def __enter__(self) -> _GzipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._gz.close()  # does not close the raw file it was given
        self._raw.close()
        if self._error is not None and exc[0] is None:
            raise self._error


@dataclass
class _Counts:
    subjects: int = 0
    subjects_with_several_notes: int = 0
    course_style: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COURSE_STYLES, 0))
    short_course: int = 0
    duplicate_course: int = 0
    apr_only: int = 0
    unmappable_hcfa: int = 0
    hcfa_other_version: int = 0
    hcfa_type_trailing_space: int = 0
    apr_type_trailing_space: int = 0
    codes_without_note: int = 0
    drgcodes_rows: int = 0
    expected_usable: int = 0


class _Generator:
    """The streaming loop: subjects, their admissions, one note and its code rows per admission."""

    def __init__(self, rng: random.Random, classes: list[SynthClass], rates: EdgeRates):
        self.rng, self.classes, self.rates = rng, classes, rates
        bases = list(dict.fromkeys(c.base for c in classes))
        self.factory = NoteFactory(rng, bases)
        # Each base weighs its BaseSpec.weight, split over its selected classes by severity share.
        base_share = {b.key: sum(c.share for c in classes if c.base is b) for b in bases}
        weights = [c.base.weight * c.share / base_share[c.base.key] for c in classes]
        self.cum_weights = [sum(weights[: i + 1]) for i in range(len(weights))]
        self.by_base = [[i for i, c in enumerate(classes) if c.base is b] for b in bases]
        self.base_weights = [[weights[i] for i in idx] for idx in self.by_base]
        self.unmappable = unmappable_descriptions()
        self.edge_cum = _cumulative(
            ("no_course", rates.no_course),
            ("short", rates.short_course),
            ("duplicate", rates.duplicate_course),
            ("apr_only", rates.apr_only),
            ("unmappable", rates.unmappable_hcfa),
        )
        self.style_names = list(_STYLE_WEIGHTS)
        self.style_cum = _cumulative(*_STYLE_WEIGHTS.items())[1]
        self.c = _Counts()
        self.usable_by_class = [0] * len(classes)
        self.seen_courses: set[int] = set()
        self.reservoir: dict[str, list[tuple[str, int, list, str]]] = {"F": [], "M": []}

    # ------------------------------------------------------------------------------------------ run
    def run(self, n: int, notes: _GzipWriter, codes: _GzipWriter, progress: bool) -> None:
        from tqdm import tqdm

        rng = self.rng
        notes.write_lines([_csv_line(DISCHARGE_COLUMNS)])
        codes.write_lines([_csv_line(DRGCODES_COLUMNS)])
        spare = int(n * min(1.0, 2 * self.rates.codes_without_note)) + 64
        drawn = rng.sample(range(20_000_000, 30_000_000), n + spare)
        hadm_ids, spare_ids = iter(drawn[:n]), iter(drawn[n:])
        subject_id, written = 10_000_000, 0
        note_rows: list[str] = []
        code_rows: list[str] = []
        bar = tqdm(total=n, unit="note", desc="synth", file=sys.stderr, disable=not progress, mininterval=0.5)
        while written < n:
            subject_id += rng.randint(1, 40)
            day = dt.date(rng.randint(2110, 2190), 1, 1).toordinal() + rng.randrange(365)
            subject = self.factory.subject(subject_id, day)
            k = min(n - written, 1 + _draw(rng, _ADMISSIONS_PER_SUBJECT))
            self.c.subjects += 1
            self.c.subjects_with_several_notes += k > 1
            for _ in range(k):
                note_rows.append(self._admission(subject, next(hadm_ids), code_rows))
                if rng.random() < self.rates.codes_without_note and (extra := next(spare_ids, None)):
                    self._codes_only(subject, extra, code_rows)
            written += k
            if len(note_rows) >= 1000:
                notes.write_lines(note_rows)
                codes.write_lines(code_rows)
                bar.update(len(note_rows))
                note_rows.clear()
                code_rows.clear()
        notes.write_lines(note_rows)
        codes.write_lines(code_rows)
        bar.update(len(note_rows))
        bar.close()

    # ------------------------------------------------------------------------------------ admission
    def _admission(self, subject: Subject, hadm_id: int, code_rows: list[str]) -> str:
        rng, factory, c = self.rng, self.factory, self.c
        edge = _pick_label(rng.random(), self.edge_cum)
        ci = self._class_for(subject)
        slots = factory.slots(subject)
        marker = None
        pool = self.reservoir[subject.sex]
        if edge == "duplicate" and pool:
            course, ci, conds, marker = rng.choice(pool)
        else:
            cls = self.classes[ci]
            conds = factory.conditions(cls.base, choose_levels(cls.drg.cc_mcc, cls.family, rng))
            if edge == "no_course":
                course = None
            elif edge == "short":
                course = factory.short_course(cls.base, slots)
            else:
                course, marker = factory.course(subject, cls.base, conds, slots)
        cls = self.classes[ci]
        style = "none" if course is None else self.style_names[_pick_index(rng.random(), self.style_cum)]
        text = factory.note(subject, cls.base, conds, course, style, slots, marker)
        c.course_style[style] += 1
        long_unique = False
        if course is not None:
            if len(course.split()) <= SHORT_COURSE_WORDS:
                c.short_course += 1
            else:
                key = hash(course)
                if key in self.seen_courses:
                    c.duplicate_course += 1
                else:
                    self.seen_courses.add(key)
                    long_unique = True
        labelled = self._code_rows(subject.subject_id, hadm_id, cls, edge, code_rows)
        if long_unique and labelled:
            c.expected_usable += 1
            self.usable_by_class[ci] += 1
            if len(pool) < 256:
                pool.append((course, ci, conds, marker))
            elif rng.random() < 0.05:
                pool[rng.randrange(256)] = (course, ci, conds, marker)
        seq = subject.next_seq
        subject.next_seq += rng.randint(1, 4)
        subject.day += rng.randint(14, 700)
        charttime = dt.datetime.combine(dt.date.fromordinal(subject.day), dt.time())
        storetime = charttime + dt.timedelta(minutes=rng.randint(6 * 60, 3 * 24 * 60))
        return (
            f"{subject.subject_id}-DS-{seq},{subject.subject_id},{hadm_id},DS,{seq},{charttime.isoformat(' ')},"
            f"{storetime.isoformat(' ')},{_csv_field(text)}\n"
        )

    def _class_for(self, subject: Subject) -> int:
        rng = self.rng
        if rng.random() < _READMIT_SAME_BASE:
            home = subject.home_base
            return rng.choices(self.by_base[home], weights=self.base_weights[home])[0]
        return _pick_index(rng.random() * self.cum_weights[-1], self.cum_weights)

    def _code_rows(self, subject_id: int, hadm_id: int, cls: SynthClass, edge: str | None, rows: list[str]) -> bool:
        """Append the admission's drgcodes rows; True if it has a HCFA label that maps to v34."""
        rng, rates, c = self.rng, self.rates, self.c
        block = []
        labelled = False
        if edge == "apr_only":
            c.apr_only += 1
        else:
            if edge == "unmappable":
                description, code = rng.choice(self.unmappable), f"{rng.randint(1, 999):03d}"
                c.unmappable_hcfa += 1
            else:
                if cls.other_versions and rng.random() < rates.other_version:
                    description = rng.choice(cls.other_versions)
                    c.hcfa_other_version += 1
                elif rng.random() < 0.7:
                    description = cls.descriptions[0]
                else:
                    description = rng.choice(cls.descriptions)
                code, labelled = f"{cls.drg.code:03d}", True
            hcfa = "HCFA"
            if rng.random() < rates.hcfa_trailing_space:
                hcfa = "HCFA "
                c.hcfa_type_trailing_space += 1
            block.append(f"{subject_id},{hadm_id},{hcfa},{code},{_csv_field(description)},,\n")
        severity = rng.choice(_APR_SEVERITY[cls.drg.cc_mcc])
        apr = "APR"
        if rng.random() < rates.apr_trailing_space:
            apr = "APR "
            c.apr_type_trailing_space += 1
        block.append(
            f"{subject_id},{hadm_id},{apr},{cls.base.apr[0]},{_csv_field(cls.base.apr[1])},{severity},"
            f"{rng.randint(1, severity)}\n"
        )
        if rng.random() < 0.5:
            block.reverse()
        rows += block
        c.drgcodes_rows += len(block)
        return labelled

    def _codes_only(self, subject: Subject, hadm_id: int, rows: list) -> None:
        self.c.codes_without_note += 1
        self._code_rows(subject.subject_id, hadm_id, self.classes[self._class_for(subject)], None, rows)

    def counts(self) -> dict[str, Any]:
        c = self.c
        notes = sum(c.course_style.values())
        return {
            "notes": notes,
            "subjects": c.subjects,
            "subjects_with_several_notes": c.subjects_with_several_notes,
            "course_style": dict(c.course_style),
            "no_course": c.course_style["none"],
            "short_course": c.short_course,
            "duplicate_course": c.duplicate_course,
            "apr_only": c.apr_only,
            "unmappable_hcfa": c.unmappable_hcfa,
            "hcfa_other_version": c.hcfa_other_version,
            "hcfa_type_trailing_space": c.hcfa_type_trailing_space,
            "apr_type_trailing_space": c.apr_type_trailing_space,
            "codes_without_note": c.codes_without_note,
            "drgcodes_rows": c.drgcodes_rows,
            "expected_usable": c.expected_usable,
            "expected_usable_means": (
                "notes with a course of more than 40 words that is not a copy of an earlier course and a HCFA "
                "description that maps to v34"
            ),
        }


def _cumulative(*pairs: tuple[str, float]) -> tuple[list[str], list[float]]:
    names, cum, total = [], [], 0.0
    for name, weight in pairs:
        total += weight
        names.append(name)
        cum.append(total)
    return names, cum


def _pick_index(u: float, cum: list[float]) -> int:
    for i, edge in enumerate(cum):
        if u < edge:
            return i
    return len(cum) - 1


def _pick_label(u: float, table: tuple[list[str], list[float]]) -> str | None:
    """The edge case that ``u`` falls in, or None (most notes)."""
    names, cum = table
    for name, edge in zip(names, cum):
        if u < edge:
            return name
    return None


def _draw(rng: random.Random, probs: tuple[float, ...]) -> int:
    u, acc = rng.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1
