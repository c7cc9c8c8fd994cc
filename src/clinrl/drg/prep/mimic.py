"""``clinrl drg prepare``: MIMIC-IV discharge notes + DRG codes → train/test parquet with an audit flow.

Steps, each counted in ``flow.json`` (``notes_read`` = ``kept`` + every ``dropped_*``, ``kept`` =
``train`` + ``test``):

1. read notes (rows with unusable ids are skipped and reported in ``prepare_report.json``, outside
   the flow: they are not notes);
2. extract the hospital course (:mod:`clinrl.drg.prep.course`) → ``dropped_no_course``;
3. courses of ≤ 40 words → ``dropped_short_course``;
4. duplicate course texts, compared with white space collapsed, first kept → ``dropped_duplicate_course``;
5. one note per admission: of an admission's notes still kept, the latest — highest ``note_seq``, then
   latest ``charttime``, then last in the file — stays, the others → ``dropped_other_note_of_admission``;
6. join the admission's HCFA row → ``dropped_no_hcfa_drg`` (blank ``hadm_id``, APR-only admission, or
   admission absent from ``drgcodes``; the report says which);
7. map the description to v34 → ``dropped_unmapped_drg`` (mapping table says NaN, description unknown,
   or the admission's HCFA rows disagree; see :func:`~clinrl.drg.prep.mimic_io.resolve_hcfa_labels`);
8. classes with fewer than ``min_class_count`` notes → ``dropped_rare_class``;
9. stratified split (:func:`clinrl.drg.prep.stratify.stratified_split`).

One note per admission (step 5) because the label is the admission's and every later step keys on
``hadm_id`` (``drg split``, ``drg eval``, ``drg difficulty``, trace joins, curricula): several notes of
one admission would be one case seen several times with one gold, and eval/difficulty refuse a
repeated ``hadm_id``. The latest note is the admission's final discharge summary (an addendum
or a rewrite supersedes the earlier one); only notes whose course survived steps 2-4 compete, so a later
note without a usable course never displaces one with a course. ``split_by="subject"`` keeps each
patient on one side; ``split_by="admission"`` is the study's per-row split.

Memory stays bounded: notes are streamed in chunks, kept courses are spilled to parquet parts in a
temporary folder inside ``out`` (``.prepare-<pid>-*``; a killed run's is removed by the next run), and
only ids stay in memory. One run's outputs appear together or not at all (:mod:`clinrl.drg.prep.prepared`):
the previous run's outputs are removed first, each file is written atomically and tagged with the
run's id, and ``flow.json`` comes last, so a folder without it is not a finished preparation and
downstream steps refuse its files.
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clinrl import __version__
from clinrl.cards import raw_notes_kind, write_dataset_card
from clinrl.drg.ontology import Ontology, OntologyError, load_ontology
from clinrl.drg.prep.course import extract_course
from clinrl.drg.prep.mimic_io import (
    DISCHARGE_COLUMNS,
    DRGCODES_COLUMNS,
    EXAMPLES_KEPT,
    HcfaLabels,
    ReadIssues,
    SourceFile,
    check_columns,
    inspect_source,
    iter_note_chunks,
    read_drgcodes,
    resolve_hcfa_labels,
)
from clinrl.drg.prep.prepared import RUN_KEY, SPILL_PREFIX, remove_previous_outputs, remove_stale_spills
from clinrl.drg.prep.stratify import stratified_split
from clinrl.errors import ClinrlError, DataError
from clinrl.io import atomic_path, write_json_atomic

__all__ = ["FLOW_KEYS", "MAX_SHORT_WORDS", "OUTPUT_SCHEMA", "SPLIT_BY", "prepare", "print_summary"]

FLOW_KEYS = (
    "notes_read",
    "dropped_no_course",
    "dropped_short_course",
    "dropped_duplicate_course",
    "dropped_other_note_of_admission",
    "dropped_no_hcfa_drg",
    "dropped_unmapped_drg",
    "dropped_rare_class",
    "kept",
    "n_classes",
    "train",
    "test",
)
MAX_SHORT_WORDS = 40  # courses of this many words or fewer are dropped
SPLIT_BY = ("subject", "admission")
DEFAULT_CHUNKSIZE = 5_000

OUTPUT_SCHEMA = pa.schema(
    [
        ("hadm_id", pa.int64()),
        ("subject_id", pa.int64()),
        ("note_id", pa.string()),
        ("text", pa.string()),
        ("drg", pa.int64()),
        ("description", pa.string()),
        ("mdc", pa.string()),
        ("principal", pa.string()),
        ("principal_id", pa.int64()),
        ("cc_mcc", pa.int64()),
        ("raw_description", pa.string()),
        ("raw_drg_code", pa.string()),
        ("mapping", pa.string()),
        ("course_rule", pa.string()),
        ("course_words", pa.int64()),
    ]
)
_SPILL_COLUMNS = ("note_id", "subject_id", "hadm_id", "note_seq", "charttime", "text", "course_rule", "course_words")
KEPT_NOTE_RULE = "the latest note of each admission: highest note_seq, then latest charttime, then last in the file"


def prepare(
    discharge: str | Path,
    drgcodes: str | Path,
    out: str | Path,
    *,
    split_by: Literal["subject", "admission"] = "subject",
    test_size: float = 0.1,
    min_class_count: int = 2,
    seed: int = 42,
    ontology: Ontology | str | Path | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    progress: bool = True,
) -> dict[str, int]:
    """Build ``out/train.parquet``, ``out/test.parquet``, ``out/prepare_report.json`` and ``out/flow.json``.

    ``discharge`` / ``drgcodes`` are MIMIC-IV's ``note/discharge.csv.gz`` and ``hosp/drgcodes.csv.gz``
    (gzip or plain). ``ontology`` is an :class:`Ontology`, a folder of v34 tables, or None for the
    packaged tables. Returns the flow (the content of ``flow.json``). Raises
    :class:`~clinrl.errors.DataError` for unusable input and :class:`ClinrlError` for bad options.
    """
    started = time.perf_counter()
    _check_options(split_by, test_size, min_class_count, chunksize)
    onto = _ontology(ontology)
    notes_src, codes_src = inspect_source(discharge), inspect_source(drgcodes)
    check_columns(notes_src, DISCHARGE_COLUMNS)
    check_columns(codes_src, DRGCODES_COLUMNS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_previous_outputs(out)  # flow.json first: from here on the folder does not look finished
    stale_spills = remove_stale_spills(out)
    run_id = uuid.uuid4().hex

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    code_issues = ReadIssues()
    labels = resolve_hcfa_labels(read_drgcodes(codes_src, code_issues), onto)
    timings["drgcodes_s"] = time.perf_counter() - tick

    with tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=out) as spill:
        tick = time.perf_counter()
        extracted = _extract(notes_src, Path(spill), chunksize, progress)
        timings["notes_s"] = time.perf_counter() - tick

        tick = time.perf_counter()
        other = _other_notes(extracted.meta)
        labelled = _label(extracted.meta, labels, min_class_count, other)
        side, split_info = _split(extracted.meta, labelled, split_by, test_size, seed)
        timings["label_split_s"] = time.perf_counter() - tick

        flow = _flow(extracted.counts, labelled, side)
        report = _report(
            notes_src, codes_src, extracted, code_issues, labels, labelled, split_info,
            params=dict(split_by=split_by, test_size=test_size, min_class_count=min_class_count,
                        seed=seed, chunksize=chunksize),
        )  # fmt: skip
        report["run_id"] = run_id
        report["data_kind"] = raw_notes_kind(notes_src.path)  # synthetic or MIMIC-IV: the licence of the outputs
        report["stale_spill_folders_removed"] = len(stale_spills)
        if flow["kept"] == 0:
            report["timings"] = _timings(timings, started, flow)
            write_json_atomic(out / "prepare_report.json", report)
            raise DataError(
                f"no note survived the filters (read {flow['notes_read']}); see {out / 'prepare_report.json'}",
                path=notes_src.path,
            )
        tick = time.perf_counter()
        _write_splits(extracted.parts, side, labels, onto, out, run_id)
        timings["write_s"] = time.perf_counter() - tick

    report["timings"] = _timings(timings, started, flow)
    write_dataset_card(out, {"train": "train.parquet", "test": "test.parquet"}, title="DRG coding data (clinrl drg prepare)",
                       kind=report["data_kind"], counts=flow, made_by="clinrl drg prepare")  # fmt: skip
    write_json_atomic(out / "prepare_report.json", report)
    write_json_atomic(out / "flow.json", flow)
    return flow


def _ontology(ontology: Ontology | str | Path | None) -> Ontology:
    if isinstance(ontology, Ontology):
        return ontology
    try:
        return load_ontology(ontology)
    except OntologyError as err:
        raise DataError(f"unusable MS-DRG tables: {err}", path=ontology) from None


def _check_options(split_by: str, test_size: float, min_class_count: int, chunksize: int) -> None:
    if split_by not in SPLIT_BY:
        raise ClinrlError(f"--split-by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise ClinrlError(f"--test-size must be between 0 and 1 (exclusive), got {test_size!r}")
    if min_class_count < 1:
        raise ClinrlError(f"--min-class-count must be at least 1, got {min_class_count}")
    if chunksize < 1:
        raise ClinrlError(f"--chunksize must be at least 1, got {chunksize}")


# --- step 1-4: stream notes, extract courses, drop missing / short / duplicate, spill to parquet ---------


@dataclass
class _Extracted:
    counts: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    note_types: Counter = field(default_factory=Counter)
    issues: ReadIssues = field(default_factory=ReadIssues)
    parts: list[Path] = field(default_factory=list)
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)  # row, subject_id, hadm_id of kept notes
    words: int = 0


def _extract(src: SourceFile, spill: Path, chunksize: int, progress: bool) -> _Extracted:
    result = _Extracted()
    seen: set[bytes] = set()
    metas: list[pd.DataFrame] = []
    n_kept = 0
    with _progress_bar(src.size, progress) as update:
        for chunk in iter_note_chunks(src, result.issues, chunksize=chunksize, on_progress=update):
            kept = _filter_chunk(chunk, seen, result)
            if kept.empty:
                continue
            kept.insert(0, "row", np.arange(n_kept, n_kept + len(kept), dtype=np.int64))
            n_kept += len(kept)
            part = spill / f"part-{len(result.parts):05d}.parquet"
            pq.write_table(pa.Table.from_pandas(kept, preserve_index=False), part, compression="lz4")
            result.parts.append(part)
            metas.append(
                kept[["row", "subject_id", "hadm_id", "note_seq", "charttime"]].assign(part=len(result.parts) - 1)
            )
    if result.counts["notes_read"] == 0:
        raise DataError("no usable note rows (only a header, or every row skipped)", path=src.path)
    result.meta = (
        pd.concat(metas, ignore_index=True)
        if metas
        else pd.DataFrame({"row": [], "subject_id": [], "hadm_id": [], "note_seq": [], "charttime": [], "part": []})
    )
    return result


def _filter_chunk(chunk: pd.DataFrame, seen: set[bytes], result: _Extracted) -> pd.DataFrame:
    """Steps 2-4 on one chunk; returns the kept notes in the spill layout."""
    counts = result.counts
    counts["notes_read"] += len(chunk)
    if "note_type" in chunk:
        result.note_types.update(chunk["note_type"].tolist())
    keep = np.zeros(len(chunk), dtype=bool)
    texts: list[str] = []
    rules: list[str] = []
    words: list[int] = []
    for i, note in enumerate(chunk["text"].tolist()):
        course = extract_course(note)
        if course is None:
            counts["dropped_no_course"] += 1
            continue
        result.rules[course.rule] += 1
        tokens = course.text.split()
        if len(tokens) <= MAX_SHORT_WORDS:
            counts["dropped_short_course"] += 1
            continue
        digest = hashlib.blake2b(" ".join(tokens).encode(), digest_size=16).digest()
        if digest in seen:
            counts["dropped_duplicate_course"] += 1
            continue
        seen.add(digest)
        keep[i] = True
        texts.append(course.text)
        rules.append(course.rule)
        words.append(len(tokens))
    result.words += sum(words)
    return pd.DataFrame(
        {
            "note_id": chunk["note_id"].to_numpy()[keep],
            "subject_id": chunk["subject_id"].to_numpy()[keep],
            "hadm_id": chunk["hadm_id"].to_numpy()[keep],
            "note_seq": chunk["note_seq"].to_numpy()[keep],
            "charttime": chunk["charttime"].to_numpy()[keep],
            "text": texts,
            "course_rule": rules,
            "course_words": np.asarray(words, dtype=np.int64),
        },
        columns=list(_SPILL_COLUMNS),
    )


@contextmanager
def _progress_bar(total_bytes: int, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(compressed_bytes_read, records_read)``, drawing a rich bar on stderr if enabled."""
    if not enabled:
        yield lambda done, records: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("reading notes"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("notes", total=total_bytes, records=0)
        yield lambda done, records: bar.update(task, completed=done, records=records)


# --- step 5: one note per admission -------------------------------------------------------------------


def _other_notes(meta: pd.DataFrame) -> np.ndarray:
    """Per meta row: True for a note that is not its admission's latest (:data:`KEPT_NOTE_RULE`).
    Notes with a blank ``hadm_id`` are never "other" (step 6 drops them)."""
    order = pd.DataFrame(
        {
            "hadm": meta["hadm_id"].to_numpy(dtype=float),
            "seq": np.nan_to_num(meta["note_seq"].to_numpy(dtype=float), nan=-np.inf),
            "time": meta["charttime"].astype(str).to_numpy(),
            "row": np.arange(len(meta)),
        }
    ).sort_values(["hadm", "seq", "time", "row"], kind="stable")
    other = order["hadm"].duplicated(keep="last").to_numpy() & ~np.isnan(order["hadm"].to_numpy())
    out = np.zeros(len(meta), dtype=bool)
    out[order["row"].to_numpy()[other]] = True
    return out


# --- step 6-8: labels --------------------------------------------------------------------------------


@dataclass
class _Labelled:
    drg: np.ndarray  # v34 code per kept-so-far row (meta order), -1 where dropped before step 7
    keep: np.ndarray  # rows that reach the split
    counts: dict[str, int]
    details: dict


def _label(meta: pd.DataFrame, labels: HcfaLabels, min_class_count: int, other: np.ndarray) -> _Labelled:
    """Steps 6-8 on the notes that survived step 5 (``other`` marks those that did not)."""
    hadm = meta["hadm_id"].to_numpy(dtype=float)
    blank = np.isnan(hadm)
    joined = labels.table.reindex(pd.Index(np.where(blank, -1, hadm).astype(np.int64)))
    status = joined["status"].to_numpy()
    missing = pd.isna(status)
    no_label = missing & ~other
    apr_only = no_label & ~blank & np.isin(np.where(blank, -1, hadm).astype(np.int64), labels.apr_only)

    unmapped = ~missing & ~other & (status != "ok")
    raw = joined["raw_description"].to_numpy()
    by_status = {
        s: dict(Counter(raw[unmapped & (status == s)].tolist()).most_common()) for s in ("unmappable", "unknown")
    }
    drg = np.where(~missing & ~other & ~unmapped, joined["drg"].to_numpy(dtype=float, na_value=-1), -1).astype(np.int64)
    labelled = drg >= 0
    class_sizes = pd.Series(drg[labelled]).value_counts()
    rare_classes = class_sizes[class_sizes < min_class_count]
    rare = labelled & np.isin(drg, rare_classes.index.to_numpy())
    keep = labelled & ~rare

    note_subject = meta["subject_id"].to_numpy(dtype=float)
    code_subject = joined["subject_id"].to_numpy(dtype=float)
    mismatch = labelled & ~np.isnan(code_subject) & (code_subject != note_subject)
    with_others = np.unique(hadm[other])
    details = {
        "dropped_other_note_of_admission": {
            "rule": KEPT_NOTE_RULE,
            "admissions": int(len(with_others)),
            "hadm_id_examples": [int(h) for h in with_others[:EXAMPLES_KEPT]],
        },
        "dropped_no_hcfa_drg": {
            "blank_hadm_id": int(blank.sum()),
            "apr_only_admission": int(apr_only.sum()),
            "admission_not_in_drgcodes": int((no_label & ~blank & ~apr_only).sum()),
        },
        "dropped_unmapped_drg": {
            "unmappable_notes": int(sum(by_status["unmappable"].values())),
            "unknown_notes": int(sum(by_status["unknown"].values())),
            "conflicting_hcfa_rows_notes": int((unmapped & (status == "conflict")).sum()),
            "unmappable_descriptions": by_status["unmappable"],
            "unknown_descriptions": by_status["unknown"],
        },
        "dropped_rare_class": {
            "classes": int(len(rare_classes)),
            "by_drg": {str(int(c)): int(n) for c, n in rare_classes.items()},
        },
        "kept_by_mapping": dict(Counter(joined["mapping"].to_numpy()[keep].tolist())),
        "subject_id_differs_from_drgcodes": int(mismatch.sum()),
    }
    counts = {
        "dropped_other_note_of_admission": int(other.sum()),
        "dropped_no_hcfa_drg": int(no_label.sum()),
        "dropped_unmapped_drg": int(unmapped.sum()),
        "dropped_rare_class": int(rare.sum()),
    }
    return _Labelled(drg, keep, counts, details)


# --- step 9: split -----------------------------------------------------------------------------------


def _split(
    meta: pd.DataFrame, labelled: _Labelled, split_by: str, test_size: float, seed: int
) -> tuple[np.ndarray, dict]:
    """Side per meta row: -1 dropped, 0 train, 1 test."""

    rows = np.flatnonzero(labelled.keep)
    labels = labelled.drg[rows]
    groups, grouped_by = None, "none (one row per admission)"
    if split_by == "subject":
        groups, grouped_by = meta["subject_id"].to_numpy()[rows], "subject_id"
    try:
        train, test = stratified_split(labels, test_size, seed, groups=groups)
    except ValueError as err:
        raise ClinrlError(f"cannot split: {err}") from None
    side = np.full(len(meta), -1, dtype=np.int8)
    side[rows[train]] = 0
    side[rows[test]] = 1
    info = {
        "split_by": split_by,
        "groups": grouped_by,
        "classes_in_test": int(len(np.unique(labels[test]))),
        "classes_in_train": int(len(np.unique(labels[train]))),
        "test_fraction": round(len(test) / len(rows), 6) if len(rows) else 0.0,
    }
    return side, info


def _flow(counts: Counter, labelled: _Labelled, side: np.ndarray) -> dict[str, int]:
    flow = {
        "notes_read": counts["notes_read"],
        "dropped_no_course": counts["dropped_no_course"],
        "dropped_short_course": counts["dropped_short_course"],
        "dropped_duplicate_course": counts["dropped_duplicate_course"],
        **labelled.counts,
        "kept": int(labelled.keep.sum()),
        "n_classes": int(len(np.unique(labelled.drg[labelled.keep]))),
        "train": int((side == 0).sum()),
        "test": int((side == 1).sum()),
    }
    flow = {k: int(flow[k]) for k in FLOW_KEYS}
    dropped = sum(v for k, v in flow.items() if k.startswith("dropped_"))
    assert flow["notes_read"] == flow["kept"] + dropped and flow["kept"] == flow["train"] + flow["test"], flow
    return flow


# --- output ------------------------------------------------------------------------------------------


def _write_splits(
    parts: list[Path], side: np.ndarray, labels: HcfaLabels, onto: Ontology, out: Path, run_id: str
) -> None:
    """Write train/test parquet, tagged with ``run_id`` (checked by :mod:`clinrl.drg.prep.prepared`)."""
    drg_columns = _drg_columns(onto)
    schema = OUTPUT_SCHEMA.with_metadata({RUN_KEY: run_id.encode()})
    with atomic_path(out / "train.parquet") as train_tmp, atomic_path(out / "test.parquet") as test_tmp:
        writers = [pq.ParquetWriter(p, schema, compression="zstd") for p in (train_tmp, test_tmp)]
        try:
            for part in parts:
                spilled = pq.read_table(part).to_pandas()
                part_side = side[spilled["row"].to_numpy()]
                spilled = spilled[part_side >= 0]
                part_side = part_side[part_side >= 0]
                if spilled.empty:
                    continue
                label = labels.table.loc[spilled["hadm_id"].to_numpy().astype(np.int64)]
                codes = label["drg"].to_numpy()
                frame = pd.DataFrame(
                    {
                        "hadm_id": spilled["hadm_id"].to_numpy().astype(np.int64),
                        "subject_id": spilled["subject_id"].to_numpy(),
                        "note_id": spilled["note_id"].to_numpy(),
                        "text": spilled["text"].to_numpy(),
                        "drg": codes,
                        **{name: column.reindex(codes).to_numpy() for name, column in drg_columns.items()},
                        "raw_description": label["raw_description"].to_numpy(),
                        "raw_drg_code": label["raw_drg_code"].to_numpy(),
                        "mapping": label["mapping"].to_numpy(),
                        "course_rule": spilled["course_rule"].to_numpy(),
                        "course_words": spilled["course_words"].to_numpy(),
                    }
                )
                for value, writer in enumerate(writers):
                    piece = frame[part_side == value]
                    if not piece.empty:
                        writer.write_table(pa.Table.from_pandas(piece, schema=OUTPUT_SCHEMA, preserve_index=False))
        finally:
            for writer in writers:
                writer.close()


def _drg_columns(onto: Ontology) -> dict[str, pd.Series]:
    """v34 attributes per code, as Series indexed by code (for vectorised lookups)."""
    codes = [d.code for d in onto]
    return {
        "description": pd.Series([d.description for d in onto], index=codes),
        "mdc": pd.Series([d.mdc for d in onto], index=codes),
        "principal": pd.Series([d.principal for d in onto], index=codes),
        "principal_id": pd.Series([d.principal_id for d in onto], index=codes),
        "cc_mcc": pd.Series([int(d.cc_mcc) for d in onto], index=codes),
    }


def _source_info(src: SourceFile, issues: ReadIssues | None = None) -> dict:
    info = {"path": str(src.path), "bytes": src.size, "gzip": src.gzip, "notes": list(src.notes)}
    if issues is not None:
        info["rows_skipped"] = issues.to_dict()
    return info


def _report(
    notes_src: SourceFile,
    codes_src: SourceFile,
    extracted: _Extracted,
    code_issues: ReadIssues,
    labels: HcfaLabels,
    labelled: _Labelled,
    split_info: dict,
    *,
    params: dict,
) -> dict:
    found = sum(extracted.rules.values())
    kept = int(labelled.keep.sum())
    return {
        "clinrl_version": __version__,
        "params": params,
        "discharge": {
            **_source_info(notes_src, extracted.issues),
            "note_types": dict(extracted.note_types),
            "courses_found_by_rule": dict(extracted.rules),
            "courses_found": found,
            "mean_words_after_dedupe": round(extracted.words / max(1, len(extracted.meta)), 1),
        },
        "drgcodes": {**_source_info(codes_src, code_issues), **labels.stats},
        "drops": labelled.details,
        "split": split_info,
        "kept": kept,
        "examples_kept_per_reason": EXAMPLES_KEPT,
    }


def _timings(timings: dict[str, float], started: float, flow: dict[str, int]) -> dict:
    total = time.perf_counter() - started
    notes_s = timings.get("notes_s", 0.0)
    return {
        **{k: round(v, 3) for k, v in timings.items()},
        "total_s": round(total, 3),
        "notes_per_s": round(flow["notes_read"] / total, 1) if total else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "reading_notes_per_s": round(flow["notes_read"] / notes_s, 1) if notes_s else None,
    }


def print_summary(flow: dict[str, int], report: dict, out: Path) -> None:
    """Print a concise rich table of the flow and the report's main figures on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"clinrl drg prepare → {out}", show_header=True)
    table.add_column("step")
    table.add_column("notes", justify="right")
    for key in FLOW_KEYS:
        table.add_row(key, f"{flow[key]:,}")
    skipped = report["discharge"]["rows_skipped"]["skipped"] + report["drgcodes"]["rows_skipped"]["skipped"]
    timings = report.get("timings", {})
    table.add_section()
    table.add_row("rows skipped (malformed)", f"{skipped:,}")
    table.add_row("conflicting HCFA admissions", f"{report['drgcodes']['admissions_with_conflicting_hcfa_rows']:,}")
    table.add_row("split groups", str(report["split"]["groups"]))
    if timings:
        table.add_row("notes/s", f"{timings['notes_per_s']:,.0f}")
        table.add_row("peak RSS (MB)", f"{timings['peak_rss_mb']:,.0f}")
    console = Console()
    console.print(table)
    for note in report["discharge"]["notes"] + report["drgcodes"]["notes"]:
        console.print(f"[yellow]note:[/] {note}")
