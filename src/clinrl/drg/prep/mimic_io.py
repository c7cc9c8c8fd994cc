"""Read MIMIC-IV's ``note/discharge.csv.gz`` and ``hosp/drgcodes.csv.gz`` defensively.

Compression is sniffed from the first bytes (a plain CSV named ``.gz`` or gzip named ``.csv`` is read
and noted, other compressions are refused); columns are checked up front; notes are streamed in chunks
with pandas' C parser; NUL bytes (which that parser would silently cut a field at) are removed and
counted. Every column is parsed (no ``usecols``): with ``usecols`` pandas silently
accepts lines with too many fields, which would hide a broken row. User mistakes become a
:class:`~clinrl.errors.DataError` naming the file; rows that cannot be used (a non-integer id, a line
with too many fields) are skipped and counted in a :class:`ReadIssues`, never lost silently.

A MIMIC-IV admission's MS-DRG is its ``HCFA`` row in ``drgcodes`` (``APR`` rows are APR-DRGs);
:func:`resolve_hcfa_labels` turns those rows into one v34 label per admission.
"""

from __future__ import annotations

import gzip
import io
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pandas as pd

from clinrl.drg.ontology import Ontology
from clinrl.errors import DataError

__all__ = [
    "DISCHARGE_COLUMNS",
    "DRGCODES_COLUMNS",
    "HcfaLabels",
    "ReadIssues",
    "SourceFile",
    "check_columns",
    "inspect_source",
    "iter_note_chunks",
    "read_drgcodes",
    "read_header",
    "resolve_hcfa_labels",
]

DISCHARGE_COLUMNS = ("note_id", "subject_id", "hadm_id", "text")
DRGCODES_COLUMNS = ("hadm_id", "drg_type", "drg_code", "description")
EXAMPLES_KEPT = 10  # how many example record numbers / ids a report keeps per reason

_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSIONS = {b"BZh": "bzip2", b"PK\x03\x04": "zip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SKIPPED_LINE = re.compile(r"Skipping line (\d+)")
_TOO_LARGE = "{} above 2**53 - 1 (would lose precision)"


@dataclass(frozen=True)
class SourceFile:
    """An input file after sniffing: whether it is gzip, its size, and notes on its naming."""

    path: Path
    gzip: bool
    size: int
    notes: tuple[str, ...] = ()


def inspect_source(path: str | Path) -> SourceFile:
    """Check that ``path`` is a non-empty gzip or plain file; raise :class:`DataError` otherwise."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=p)
    if not p.is_file():
        raise DataError("not a regular file", path=p)
    size = p.stat().st_size
    if size == 0:
        raise DataError("file is empty", path=p)
    with p.open("rb") as handle:
        head = handle.read(8)
    for magic, name in _OTHER_COMPRESSIONS.items():
        if head.startswith(magic):
            raise DataError(f"{name}-compressed; expected a gzip-compressed or plain CSV", path=p)
    is_gzip = head.startswith(_GZIP_MAGIC)
    named_gz = p.suffix.lower() == ".gz"
    notes: tuple[str, ...] = ()
    if named_gz and not is_gzip:
        notes = ("named .gz but not gzip-compressed: read as plain CSV",)
    elif is_gzip and not named_gz:
        notes = ("gzip-compressed although not named .gz: decompressed",)
    return SourceFile(p, is_gzip, size, notes)


class _NulFilter(io.RawIOBase):
    """A byte stream with every NUL byte removed and counted in ``removed``.

    pandas' C parser ends a field at a NUL byte and silently drops the rest of it, which would cut a
    note short without a trace. In UTF-8 a 0x00 byte is only ever the NUL character, so removing it
    at the byte level is safe; the count goes into the report.
    """

    def __init__(self, inner: IO[bytes]):
        self.inner, self.removed = inner, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        while True:
            data = self.inner.read(len(view))
            if not data:
                return 0
            nuls = data.count(0)
            if nuls:
                self.removed += nuls
                data = data.replace(b"\x00", b"")
            if data:  # a read of only NULs must not look like the end of the file
                view[: len(data)] = data
                return len(data)


@contextmanager
def _open(src: SourceFile, issues: ReadIssues | None = None) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
    """The file's decompressed byte stream (NUL bytes removed, counted in ``issues``) and a function
    giving the compressed bytes read so far."""
    raw = src.path.open("rb")
    inner: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if src.gzip else raw
    nul_filter = _NulFilter(inner)
    stream = io.BufferedReader(nul_filter, buffer_size=1 << 20)
    try:
        yield stream, raw.tell
    finally:
        if issues is not None:
            issues.nul_bytes_removed += nul_filter.removed
        inner.close()
        raw.close()


@contextmanager
def _translate_errors(src: SourceFile, where: Callable[[], str] = lambda: "") -> Iterator[None]:
    """Turn decoding, decompression and CSV errors into a :class:`DataError` naming the file.

    ``where`` adds a position to the message (pandas reads ahead, so only a lower bound is known).
    """
    try:
        yield
    except UnicodeDecodeError:
        what = "neither gzip-compressed nor UTF-8 text" if src.notes and not src.gzip else "not UTF-8 text"
        raise DataError(f"undecodable bytes{where()}: the file is {what}", path=src.path) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"corrupt or truncated gzip data{where()} ({err})", path=src.path) from None
    except pd.errors.EmptyDataError:
        raise DataError("no header line (empty CSV)", path=src.path) from None
    except pd.errors.ParserError as err:
        raise DataError(f"CSV cannot be parsed{where()} ({str(err).strip()})", path=src.path) from None


def read_header(src: SourceFile) -> list[str]:
    """The CSV's column names."""
    with _open(src) as (stream, _), _translate_errors(src):
        return [str(c) for c in pd.read_csv(stream, nrows=0, encoding="utf-8").columns]


def check_columns(src: SourceFile, required: tuple[str, ...]) -> list[str]:
    """The header, after checking that it holds every ``required`` column (else a DataError)."""
    header = read_header(src)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (found: {_names(header)})",
            path=src.path,
            field=missing[0],
        )
    return header


def _names(header: list[str], most: int = 20, width: int = 40) -> str:
    """Column names for a message: at most ``most``, each cut to ``width`` characters and on one line.

    A broken header (an open quote) can swallow whole notes into one "name"; they must not reach the
    terminal or a log."""
    shown = []
    for name in header[:most]:
        flat = name.encode("unicode_escape").decode("ascii")
        shown.append(flat if len(flat) <= width else f"{flat[:width]}… ({len(name)} characters)")
    more = f", … {len(header) - most} more" if len(header) > most else ""
    return ", ".join(shown) + more


@dataclass
class ReadIssues:
    """Rows skipped while reading one file, by reason, with the first few record numbers of each.

    Record numbers are 1-based CSV records, the header not counted (a quoted multi-line note is one
    record); after a rejected record they may be off by the rejections earlier in the same chunk.
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[object]] = field(default_factory=dict)
    nul_bytes_removed: int = 0  # NUL bytes taken out of the text (records kept; see ``_NulFilter``)

    def add(self, reason: str, where: list[object]) -> None:
        if not where:
            return
        self.counts[reason] += len(where)
        kept = self.examples.setdefault(reason, [])
        kept.extend(where[: max(0, EXAMPLES_KEPT - len(kept))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "skipped": self.total,
            "by_reason": dict(self.counts),
            "examples": self.examples,
            "nul_bytes_removed": self.nul_bytes_removed,
        }


MAX_ID = 2**53 - 1  # the largest id that float64 (how ids travel, NaN marking a blank) holds exactly


class _Ids(NamedTuple):
    """A parsed id column: ``ids`` as float64 (NaN where blank or unusable) and masks of the rows
    that are blank, not a non-negative integer, or an integer above :data:`MAX_ID`."""

    ids: np.ndarray
    blank: np.ndarray
    malformed: np.ndarray
    too_large: np.ndarray


def _int_ids(values: pd.Series) -> _Ids:
    """Parse a column of id strings.

    Ids above :data:`MAX_ID` are flagged, not parsed: float64 rounds them (all 17+ digit ids, and a
    20-digit one also overflows int64), so two different admissions would share one key and a note
    would silently get another admission's DRG. MIMIC-IV's ids have 8 digits.
    """
    # Plain lists, not ``Series.str``: the cached accessor forms a reference cycle that keeps each
    # whole chunk alive until the garbage collector runs, which multiplies peak memory.
    text = np.array([str(v).strip() for v in values.tolist()], dtype=object)
    blank = text == ""
    number = np.asarray(pd.to_numeric(text, errors="coerce"), dtype=float)
    with np.errstate(invalid="ignore"):
        malformed = ~blank & (np.isnan(number) | (number != np.floor(number)) | (number < 0))
        # rounding is monotone and 2**53 is exact, so every value above MAX_ID parses to >= 2**53
        too_large = ~blank & ~malformed & (number > MAX_ID)
    return _Ids(np.where(blank | too_large, np.nan, number), blank, malformed, too_large)


def _record_numbers(offset: int, mask: np.ndarray) -> list[object]:
    return [int(offset + i + 1) for i in np.flatnonzero(mask)]


def _parser_skips(caught: list[warnings.WarningMessage], issues: ReadIssues) -> int:
    """Record the records pandas rejected (it reports them as lines, the header being line 1)."""
    records = [int(n) - 1 for w in caught for n in _SKIPPED_LINE.findall(str(w.message))]
    issues.add("unparseable record (wrong number of fields)", records)
    return len(records)


# Every field as text, nothing turned into NaN, malformed lines reported (and counted) instead of raising.
_CSV_OPTIONS: dict = dict(
    dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", on_bad_lines="warn", engine="c"
)


def iter_note_chunks(
    src: SourceFile,
    issues: ReadIssues,
    *,
    chunksize: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream the discharge notes as DataFrames of ``note_id, subject_id, hadm_id, text, note_seq,
    charttime`` (and ``note_type`` when the file has it).

    ``subject_id`` is int64 and ``hadm_id`` float64 (NaN where blank). Rows with a blank or non-integer
    ``subject_id``, a non-integer ``hadm_id`` or a blank ``note_id``, and lines with too many fields,
    are skipped and counted in ``issues``. After each chunk ``on_progress`` gets the compressed bytes
    and the records read so far.
    """
    offset = 0
    with (
        _open(src, issues) as (stream, tell),
        _translate_errors(src, lambda: f" after record {offset}" if offset else ""),
    ):
        reader = pd.read_csv(stream, chunksize=chunksize, **_CSV_OPTIONS)
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                chunk = next(reader, None)
            rejected = _parser_skips(caught, issues)
            if chunk is None:
                break
            subject, hadm = _int_ids(chunk["subject_id"]), _int_ids(chunk["hadm_id"])
            note_blank = np.array([not str(v).strip() for v in chunk["note_id"].tolist()], dtype=bool)
            issues.add("blank note_id", _record_numbers(offset, note_blank))
            subject_unusable = ~note_blank & (subject.blank | subject.malformed)
            issues.add("blank or non-integer subject_id", _record_numbers(offset, subject_unusable))
            bad = note_blank | subject.blank | subject.malformed
            issues.add(_TOO_LARGE.format("subject_id"), _record_numbers(offset, ~bad & subject.too_large))
            bad |= subject.too_large
            issues.add("non-integer hadm_id", _record_numbers(offset, ~bad & hadm.malformed))
            bad |= hadm.malformed
            issues.add(_TOO_LARGE.format("hadm_id"), _record_numbers(offset, ~bad & hadm.too_large))
            bad |= hadm.too_large
            good = ~bad
            out = pd.DataFrame(
                {
                    "note_id": chunk["note_id"].to_numpy()[good],
                    "subject_id": subject.ids[good].astype(np.int64),
                    "hadm_id": hadm.ids[good],
                    "text": chunk["text"].to_numpy()[good],
                }
            )
            if "note_type" in chunk:
                out["note_type"] = chunk["note_type"].to_numpy()[good]
            _add_note_order(out, chunk, good)
            offset += len(chunk) + rejected
            if on_progress is not None:
                on_progress(tell(), offset)
            yield out


def _add_note_order(out: pd.DataFrame, chunk: pd.DataFrame, good: np.ndarray) -> None:
    """Add ``note_seq`` (float, NaN where absent or not a number) and ``charttime`` (text, "" where
    absent): they only order the notes of one admission (which one is kept), so an unusable value
    ranks first instead of skipping the note."""
    seq = chunk["note_seq"].to_numpy()[good] if "note_seq" in chunk else np.full(int(good.sum()), "")
    out["note_seq"] = np.asarray(pd.to_numeric(seq, errors="coerce"), dtype=float)
    out["charttime"] = chunk["charttime"].to_numpy()[good] if "charttime" in chunk else ""


def read_drgcodes(src: SourceFile, issues: ReadIssues) -> pd.DataFrame:
    """All ``drgcodes`` rows: ``hadm_id`` (int64), ``subject_id`` (float64, NaN if absent/blank),
    ``drg_type`` (stripped, upper case), ``drg_code`` and ``description`` (strings).

    Rows with a blank or non-integer ``hadm_id`` and unparseable lines are skipped and counted.
    """
    with _open(src, issues) as (stream, _), _translate_errors(src):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            table = pd.read_csv(stream, **_CSV_OPTIONS)
    _parser_skips(caught, issues)
    hadm = _int_ids(table["hadm_id"])
    issues.add("blank hadm_id", _record_numbers(0, hadm.blank))
    issues.add("non-integer hadm_id", _record_numbers(0, hadm.malformed))
    issues.add(_TOO_LARGE.format("hadm_id"), _record_numbers(0, hadm.too_large))
    good = ~(hadm.blank | hadm.malformed | hadm.too_large)
    # an unusable subject_id here only weakens a cross-check (NaN), it never keys a join
    subject = _int_ids(table["subject_id"]).ids if "subject_id" in table else np.full(len(table), np.nan)
    return pd.DataFrame(
        {
            "hadm_id": hadm.ids[good].astype(np.int64),
            "subject_id": subject[good],
            "drg_type": table["drg_type"].str.strip().str.upper().to_numpy()[good],
            "drg_code": table["drg_code"].str.strip().to_numpy()[good],
            "description": table["description"].to_numpy()[good],
        }
    )


@dataclass
class HcfaLabels:
    """One MS-DRG label per admission, from its HCFA rows.

    ``table`` is indexed by ``hadm_id`` with columns ``status`` (``ok``, ``unmappable``, ``unknown`` or
    ``conflict``), ``drg`` (v34 code, -1 unless ok), ``mapping`` (``exact``/``mapped`` for ok rows, else
    the status), ``raw_description``, ``raw_drg_code`` and ``subject_id`` (of the first HCFA row).
    ``apr_only`` holds admissions with APR rows but no HCFA row.
    """

    table: pd.DataFrame
    apr_only: np.ndarray
    stats: dict


def resolve_hcfa_labels(codes: pd.DataFrame, ontology: Ontology) -> HcfaLabels:
    """Map every admission's HCFA rows to one v34 DRG.

    Rule for several HCFA rows: each row is mapped to v34 on its own; rows that agree on the v34 DRG
    (however their raw text is spelled) give that DRG, first row's text kept as ``raw_description``.
    Rows that lead to different outcomes (two DRGs, or a DRG and no DRG) make the label ambiguous:
    status ``conflict``, and the admission is dropped.
    """
    hcfa = codes[codes["drg_type"] == "HCFA"]
    results = {raw: ontology.to_v34(raw) for raw in pd.unique(hcfa["description"])}
    code = hcfa["description"].map(lambda raw: results[raw].drg.code if results[raw].drg else -1).to_numpy()
    hadm = hcfa["hadm_id"].to_numpy()
    outcomes = pd.Series(code).groupby(hadm, sort=False).nunique()
    rows_per = pd.Series(hadm).value_counts(sort=False)
    is_first = ~pd.Series(hadm).duplicated().to_numpy()
    first = hcfa[is_first].set_index("hadm_id")
    how = first["description"].map(lambda raw: results[raw].how).to_numpy()
    conflict = outcomes.reindex(first.index).to_numpy() > 1
    table = pd.DataFrame(
        {
            "status": np.where(conflict, "conflict", np.where(np.isin(how, ["exact", "mapped"]), "ok", how)),
            "drg": np.where(conflict, -1, code[is_first]),
            "mapping": np.where(conflict, "conflict", how),
            "raw_description": first["description"].to_numpy(),
            "raw_drg_code": first["drg_code"].to_numpy(),
            "subject_id": first["subject_id"].to_numpy(),
        },
        index=first.index,
    )
    several = (rows_per.reindex(first.index) > 1).to_numpy()
    hcfa_ids = first.index.to_numpy()
    apr_ids = pd.unique(codes.loc[codes["drg_type"] == "APR", "hadm_id"])
    apr_only = np.setdiff1d(apr_ids, hcfa_ids)
    stats = {
        "rows": int(len(codes)),
        "rows_by_drg_type": {str(k): int(v) for k, v in codes["drg_type"].value_counts().items()},
        "admissions_with_hcfa": int(len(first)),
        "admissions_apr_only": int(len(apr_only)),
        "admissions_with_several_hcfa_rows_agreeing": int((several & ~conflict).sum()),
        "admissions_with_conflicting_hcfa_rows": int(conflict.sum()),
        "conflicting_hadm_id_examples": [int(h) for h in first.index[conflict][:EXAMPLES_KEPT]],
        "distinct_hcfa_descriptions": len(results),
        "descriptions_by_mapping": dict(Counter(r.how for r in results.values())),
    }
    return HcfaLabels(table, apr_only, stats)
