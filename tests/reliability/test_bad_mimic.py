"""Corrupt MIMIC-IV inputs for ``clinrl drg prepare``: every one is a clear error or a counted drop.

Complements tests/drg/test_prepare.py (missing columns, bzip2, binary, truncated gzip, header-only, bad
bytes and open quotes mid-file, failed reruns), which is not repeated here.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinrl.drg.prep.mimic import FLOW_KEYS, prepare
from clinrl.errors import ClinrlError
from tests.drg.mimic_fixture import DRG_HEADER, NOTE_HEADER, course_text, render
from tests.reliability.cli import assert_clean_error, run_cli

N = 4


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _notes(n: int = N) -> list[list[str]]:
    return [[f"1-DS-{i}", "1", str(100 + i), "DS", "1", "", "", render("brief", course_text(60, str(i)))]
            for i in range(n)]  # fmt: skip


def _codes(n: int = N, description: str = "CHEST PAIN") -> list[list[str]]:
    return [["1", str(100 + i), "HCFA", "313", description, "", ""] for i in range(n)]


GOOD_NOTES = _csv(NOTE_HEADER, _notes()).encode()
GOOD_CODES = _csv(DRG_HEADER, _codes()).encode()


def _write(tmp_path: Path, notes: bytes, codes: bytes = GOOD_CODES) -> tuple[Path, Path]:
    (tmp_path / "discharge.csv.gz").write_bytes(notes)
    (tmp_path / "drgcodes.csv.gz").write_bytes(codes)
    return tmp_path / "discharge.csv.gz", tmp_path / "drgcodes.csv.gz"


def _prepare_cli(notes: Path, codes: Path, out: Path) -> list[str]:
    return ["drg", "prepare", "--discharge", notes, "--drgcodes", codes, "--out", out, "--quiet",
            "--min-class-count", "1"]  # fmt: skip


def _corrupt_middle(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[len(broken) // 2 : len(broken) // 2 + 16] = b"\xff" * 16
    return bytes(broken)


def _bad_deflate(data: bytes) -> bytes:
    broken = bytearray(data)
    broken[10:16] = b"\xff" * 6  # right after the gzip header: zlib.error, not a CRC mismatch
    return bytes(broken)


# (id, discharge bytes, drgcodes bytes, texts the one error line must hold; the file named is added)
ERRORS = [
    (
        "upper-case column names",
        _csv([c.upper() for c in NOTE_HEADER], _notes()).encode(),
        GOOD_CODES,
        ["missing columns note_id", "found: NOTE_ID"],
        "discharge",
    ),
    (
        "renamed text column",
        _csv([*NOTE_HEADER[:-1], "note_text"], _notes()).encode(),
        GOOD_CODES,
        ["missing column text"],
        "discharge",
    ),
    (
        "renamed drgcodes column",
        GOOD_NOTES,
        _csv([*DRG_HEADER[:4], "drg_description", *DRG_HEADER[5:]], _codes()).encode(),
        ["missing column description"],
        "drgcodes",
    ),
    ("semicolon separated", GOOD_NOTES.replace(b",", b";"), GOOD_CODES, ["missing columns"], "discharge"),
    (
        "latin-1 text",
        _csv(NOTE_HEADER, _notes()).replace("Hospital", "H\u00f4spital").encode("latin-1"),
        GOOD_CODES,
        ["UTF-8"],
        "discharge",
    ),
    ("utf-16 text", GOOD_NOTES.decode().encode("utf-16"), GOOD_CODES, ["UTF-8"], "discharge"),
    (
        "latin-1 drgcodes",
        GOOD_NOTES,
        _csv(DRG_HEADER, _codes(description="CH\u00c9ST PAIN")).encode("latin-1"),
        ["UTF-8"],
        "drgcodes",
    ),
    (
        "gzip corrupt in the middle",
        _corrupt_middle(gzip.compress(GOOD_NOTES * 20)),
        GOOD_CODES,
        ["corrupt or truncated gzip"],
        "discharge",
    ),
    (
        "gzip bad deflate data",
        _bad_deflate(gzip.compress(GOOD_NOTES)),
        GOOD_CODES,
        ["corrupt or truncated gzip"],
        "discharge",
    ),
    (
        "gzip drgcodes truncated",
        GOOD_NOTES,
        gzip.compress(GOOD_CODES * 50)[:-40],
        ["corrupt or truncated gzip"],
        "drgcodes",
    ),
    ("zip archive", b"PK\x03\x04" + GOOD_NOTES, GOOD_CODES, ["zip-compressed"], "discharge"),
]


@pytest.mark.parametrize(("case", "notes", "codes", "expected", "which"), ERRORS, ids=[e[0] for e in ERRORS])
def test_corrupt_files_are_one_clean_cli_error(tmp_path, capsys, case, notes, codes, expected, which) -> None:
    paths = dict(zip(("discharge", "drgcodes"), _write(tmp_path, notes, codes)))
    assert_clean_error(_prepare_cli(paths["discharge"], paths["drgcodes"], tmp_path / "out"), capsys,
                       str(paths[which]), *expected)  # fmt: skip
    assert not (tmp_path / "out" / "flow.json").exists()


def test_a_directory_or_missing_file_is_a_clean_error(tmp_path, capsys) -> None:
    (tmp_path / "folder.csv").mkdir()
    codes = tmp_path / "drgcodes.csv"
    codes.write_bytes(GOOD_CODES)
    assert_clean_error(_prepare_cli(tmp_path / "folder.csv", codes, tmp_path / "o"), capsys, "not a regular file")
    assert_clean_error(_prepare_cli(tmp_path / "nope.csv", codes, tmp_path / "o"), capsys, "file not found")


def _run(tmp_path: Path, notes: bytes, codes: bytes = GOOD_CODES) -> tuple[dict, dict, pd.DataFrame]:
    flow = prepare(*_write(tmp_path, notes, codes), tmp_path / "out", min_class_count=1, progress=False)
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    kept = pd.concat([pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "test")])
    assert flow["notes_read"] == flow["kept"] + sum(flow[k] for k in FLOW_KEYS if k.startswith("dropped_"))
    return flow, report, kept.sort_values("note_id").reset_index(drop=True)


def test_nul_bytes_are_removed_and_counted_not_a_cut_note(tmp_path: Path) -> None:
    """pandas' C parser ends a field at NUL and drops the rest: that cut notes short without a trace."""
    rows = _notes()
    clean = rows[1][-1]
    rows[1][-1] = clean.replace("case-1", "case-\x001", 1)  # inside the hospital course
    rows[2][0] = "1-DS-\x002"
    flow, report, kept = _run(tmp_path, gzip.compress(_csv(NOTE_HEADER, rows).encode()))
    assert flow["kept"] == N
    assert report["discharge"]["rows_skipped"]["nul_bytes_removed"] == 2
    assert "case-1" in kept.loc[1, "text"] and "\x00" not in "".join(kept["text"])
    assert kept.loc[1, "text"] == kept.loc[1, "text"].strip() and len(kept.loc[1, "text"].split()) == 60
    assert list(kept["note_id"]) == [f"1-DS-{i}" for i in range(N)]


def test_nul_in_drgcodes_keeps_the_label(tmp_path: Path) -> None:
    flow, report, kept = _run(tmp_path, GOOD_NOTES, GOOD_CODES.replace(b"CHEST", b"CH\x00EST"))
    assert flow["kept"] == N and set(kept["description"]) == {"CHEST PAIN"}
    assert report["drgcodes"]["rows_skipped"]["nul_bytes_removed"] == N


def test_huge_field_is_read_whole(tmp_path: Path) -> None:
    rows = _notes()
    rows[0][-1] = rows[0][-1].replace("case-0)", "case-0) " + "lorem " * 2_000_000, 1)  # ~12 MB course
    flow, _, kept = _run(tmp_path, gzip.compress(_csv(NOTE_HEADER, rows).encode()))
    assert flow["kept"] == N and len(kept.loc[0, "text"].split()) == 60 + 2_000_000


def test_duplicate_keys_are_counted(tmp_path: Path) -> None:
    rows = _notes()
    notes = _csv(NOTE_HEADER, rows + [rows[0], [*rows[1][:-1], rows[1][-1] + " "]]).encode()
    codes = _csv(DRG_HEADER, _codes() + _codes()[:2]).encode()  # two admissions coded twice (agreeing)
    flow, report, kept = _run(tmp_path, notes, codes)
    assert flow["notes_read"] == N + 2 and flow["dropped_duplicate_course"] == 2 and flow["kept"] == N
    assert report["drgcodes"]["admissions_with_several_hcfa_rows_agreeing"] == 2
    conflict = _csv(DRG_HEADER, _codes() + [["1", "100", "HCFA", "1", "SYNCOPE & COLLAPSE", "", ""]]).encode()
    (tmp_path / "conflict").mkdir()
    flow, report, _ = _run(tmp_path / "conflict", notes, conflict)
    assert report["drgcodes"]["admissions_with_conflicting_hcfa_rows"] == 1
    assert flow["dropped_unmapped_drg"] == 1 and flow["kept"] == N - 1  # admission 100's labels disagree


def test_short_and_long_rows_are_counted(tmp_path: Path) -> None:
    notes = GOOD_NOTES + b"1-DS-77,1\n" + b'1-DS-78,1,178,DS,1,,,"text",surplus\n'
    codes = GOOD_CODES + b"1,200,HCFA,313,CHEST PAIN,,,,surplus\n" + b"x,abc,HCFA,313,CHEST PAIN,,\n"
    flow, report, _ = _run(tmp_path, notes, codes)
    assert flow["kept"] == N
    assert report["discharge"]["rows_skipped"]["by_reason"] == {"unparseable record (wrong number of fields)": 1}
    assert flow["notes_read"] == N + 1 and flow["dropped_no_course"] == 1  # the short row: no text, counted
    assert report["drgcodes"]["rows_skipped"]["skipped"] == 2


def test_bom_and_crlf_are_read(tmp_path: Path) -> None:
    flow, _, _ = _run(tmp_path, b"\xef\xbb\xbf" + GOOD_NOTES.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + GOOD_CODES)
    assert flow["kept"] == N


# ------------------------------------------------------------------------------ property: random damage

_MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "quote", "nul", "newline", "comma"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=4),
)


def _mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, where, payload in mutations:
        i = int(where * len(buf))
        if kind == "flip":
            buf[i] ^= payload[0] or 1
        elif kind == "insert":
            buf[i:i] = payload
        elif kind == "delete":
            del buf[i : i + len(payload)]
        else:
            buf[i:i] = {"quote": b'"', "nul": b"\x00", "newline": b"\n", "comma": b","}[kind]
    return bytes(buf)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4), gzipped=st.booleans(), target=st.booleans())
def test_randomly_damaged_files_never_crash_or_lose_rows_silently(tmp_path_factory, mutations, gzipped, target):
    tmp = tmp_path_factory.mktemp("damaged")
    notes, codes = GOOD_NOTES, GOOD_CODES
    if target:
        notes = _mutate(notes, mutations)
    else:
        codes = _mutate(codes, mutations)
    plain_notes = notes
    if gzipped:
        notes, codes = gzip.compress(notes), gzip.compress(codes)
    try:
        flow = prepare(*_write(tmp, notes, codes), tmp / "out", min_class_count=1, progress=False)
    except ClinrlError as err:
        assert str(err) and "\n" not in str(err)
        assert not (tmp / "out" / "flow.json").exists()
        return
    report = json.loads((tmp / "out" / "prepare_report.json").read_text())
    skipped = report["discharge"]["rows_skipped"]["skipped"]
    assert flow["notes_read"] == flow["kept"] + sum(flow[k] for k in FLOW_KEYS if k.startswith("dropped_"))
    assert flow["kept"] == flow["train"] + flow["test"]
    # every CSV record is a note read or a counted skip (pandas skips blank lines: they are not records).
    # The reader removes NUL bytes (and reports how many), so the oracle reads the file without them too:
    # otherwise a line holding only NULs would count as pandas' header and the real header as a record.
    plain_notes = plain_notes.replace(b"\x00", b"")
    records = len(pd.read_csv(io.BytesIO(plain_notes), dtype=str, keep_default_na=False, on_bad_lines="skip"))
    assert flow["notes_read"] + skipped >= records


def test_cli_success_output_is_json_free_of_tracebacks(tmp_path: Path, capsys) -> None:
    notes, codes = _write(tmp_path, GOOD_NOTES)
    code, out, err = run_cli(_prepare_cli(notes, codes, tmp_path / "out"), capsys)
    assert code == 0 and "Traceback" not in err and (tmp_path / "out" / "flow.json").exists()


def test_real_process_exit_status_and_one_stderr_line(tmp_path: Path) -> None:
    """The installed entry point, not just ``main()``: status 2 and exactly one line on stderr."""
    import subprocess
    import sys

    notes, codes = _write(tmp_path, _corrupt_middle(gzip.compress(GOOD_NOTES * 20)))
    done = subprocess.run([sys.executable, "-m", "clinrl", *map(str, _prepare_cli(notes, codes, tmp_path / "o"))],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and str(notes) in done.stderr
