"""Corrupt PRM-Clinic JSON and PRM strings: a clear error naming file/row/field, or a counted drop.

Complements tests/prm/test_notes.py and test_format.py (schema errors per field, not-gzip, not-a-list,
edited strings never crash), which are not repeated here.
"""

from __future__ import annotations

import copy
import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinrl.prm.format import PRMFormatError, SpecialTokens, parse_prm_string, render_prm_string
from clinrl.prm.schema import NoteSchemaError, load_notes, note_from_dict, note_to_dict
from tests.prm.note_factory import JSON, make_gold
from tests.reliability.cli import assert_clean_error, run_cli

GOOD = [
    note_to_dict(make_gold([2, 3], case_id=f"T_{i}", dialogue=f"Doctor: hi {i}. Patient: cough.")) for i in range(3)
]
GOOD_TEXT = json.dumps(GOOD)


def _damaged_gzip(offset: int) -> bytes:
    data = bytearray(gzip.compress(json.dumps(GOOD * 40).encode()))
    at = offset if offset >= 0 else len(data) // 2
    data[at : at + 8] = b"\xff" * 8
    return bytes(data)


# (id, file bytes, texts the one error line must hold)
BAD_FILES = [
    ("gzip crc mismatch", _damaged_gzip(-1), ["not readable as JSON"]),
    ("gzip bad deflate (zlib.error)", _damaged_gzip(10), ["not readable as JSON"]),
    ("gzip truncated", gzip.compress(GOOD_TEXT.encode())[:-20], ["not readable as JSON"]),
    ("latin-1", GOOD_TEXT.replace("hi", "h\u00e9").encode("latin-1"), ["utf-8"]),
    ("utf-16", GOOD_TEXT.encode("utf-16"), ["utf-8"]),
    ("raw NUL byte", GOOD_TEXT.replace("hi", "h\x00i").encode(), ["control character"]),
    ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
    (
        "duplicate key",
        GOOD_TEXT.replace('"Case_id": "T_1"', '"Case_id": "T_1", "Case_id": "T_9"').encode(),
        ["Case_id", "twice"],
    ),
    ("lone surrogate", GOOD_TEXT.replace("hi 2", "\\ud800").encode(), ["row 2", "T_2", "surrogate"]),
    (
        "integer beyond 64 bits",
        GOOD_TEXT.replace('"Case_no": 1', f'"Case_no": {10**30}', 1).encode(),
        ["row 0", "Case_no", "out of range"],
    ),
    ("NaN number", GOOD_TEXT.replace('"Case_no": 1', '"Case_no": NaN', 1).encode(), ["Case_no", "float"]),
    ("object, not a list", b'{"Problems": []}', ["JSON list"]),
    (
        "Steps is a string",
        GOOD_TEXT.replace('"Steps": [', '"Steps": "x", "S": [', 1).encode(),
        ["row 0", "Problems[0].Steps", "expected list"],
    ),
    ("empty file", b"", ["not readable"]),
]


@pytest.mark.parametrize(("case", "content", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
@pytest.mark.parametrize("command", ["build", "synth-errors", "check-labels", "render"])
def test_corrupt_note_files_are_one_clean_cli_error(tmp_path, capsys, case, content, expected, command):
    path = tmp_path / "notes.json"
    path.write_bytes(content)
    argv = {
        "build": ["prm", "build", "--gold", path, "--out", tmp_path / "out"],
        "synth-errors": ["prm", "synth-errors", "--gold", path, "--out", tmp_path / "err.json"],
        "check-labels": ["prm", "check-labels", "--errors", path],
        "render": ["prm", "render", path, "--out", tmp_path / "r.jsonl"],
    }[command]
    line = assert_clean_error(argv, capsys, str(path), *expected)
    assert len(line) < 600
    assert not (tmp_path / "out").exists() and not (tmp_path / "err.json").exists()


def test_directory_and_missing_file(tmp_path, capsys):
    (tmp_path / "d.json").mkdir()
    assert_clean_error(["prm", "build", "--gold", tmp_path / "d.json", "--out", tmp_path / "o"], capsys, "d.json")
    assert_clean_error(["prm", "build", "--gold", tmp_path / "x.json", "--out", tmp_path / "o"], capsys, "no such file")


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_TEXT.encode())
    assert [n.case_id for n in load_notes(path)] == ["T_0", "T_1", "T_2"]
    gz = tmp_path / "bom.json.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + GOOD_TEXT.encode()))
    assert len(load_notes(gz)) == 3


def test_empty_problems_and_empty_files_are_kept_and_counted(tmp_path, capsys):
    items = copy.deepcopy(GOOD)
    items[1]["Problems"] = []
    path = tmp_path / "g.json"
    path.write_text(json.dumps(items))
    code, _, err = run_cli(["prm", "build", "--gold", path, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["rows"] + sum(report["dropped"].values()) == 3  # every note is a row or a counted drop
    (tmp_path / "e.json").write_text("[]")
    code, _, err = run_cli(["prm", "build", "--gold", tmp_path / "e.json", "--out", tmp_path / "o2"], capsys)
    assert code == 0 and json.loads((tmp_path / "o2" / "build_report.json").read_text())["rows"] == 0


def test_unrenderable_and_duplicate_notes_are_counted_not_lost(tmp_path):
    from clinrl.prm.build import build_prm_dataset

    items = copy.deepcopy(GOOD) + [copy.deepcopy(GOOD[0])]
    items[2]["Problems"][0]["Steps"][0]["Step"] = "see <|reserved_special_token_2|> here"
    path = tmp_path / "g.json"
    path.write_text(json.dumps(items))
    report = build_prm_dataset([path], tmp_path / "out")
    assert report.rows == 2 and dict(report.dropped) == {"duplicate": 1, "unrenderable": 1}
    assert {r["case_id"] for r in report.dropped_rows} == {"T_0", "T_2"}


# ------------------------------------------------------------------ property: any field, any JSON value


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


ERROR_ITEM = json.loads(json.dumps({
    **GOOD[0], "Sample_no": 1, "Total_error_no": 1,
    "Swapped_info": [{"Error_level": "Step", "Problem_no": "1", "Step_no": "1", "Error_type": "Hallucination",
                      "Original_content": "a", "New_content": "b"}],
    "Removed_info": [{"Error_level": "Step", "Problem_no": "1", "Step_no": "2", "Change_type": "Step Incompleteness",
                      "Original_content": {"Step": "c", "Step_no": "2", "Step_score": "+"}}],
}))  # fmt: skip
ALL_PATHS = [p for p in _paths(ERROR_ITEM) if p]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(ALL_PATHS), value=JSON, delete=st.booleans())
def test_any_field_with_any_value_is_a_note_or_a_named_schema_error(path, value, delete):
    item = copy.deepcopy(ERROR_ITEM)
    node = item
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    try:
        note = note_from_dict(item, path="f.json", index=4)
    except NoteSchemaError as err:
        assert err.path == "f.json" and str(err.row).startswith("4") and err.field, err
        assert "\n" not in str(err)
        return
    json.dumps(note_to_dict(note))  # a note that loads can be saved


# --------------------------------------------------------------------- PRM strings: a token too many or few

T = SpecialTokens.llama3()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 3), min_size=0, max_size=3), data=st.data())
def test_one_token_missing_or_extra_never_parses(sizes, data):
    note = make_gold(sizes)
    text = render_prm_string(note, T)
    spans = [(i, i + len(tok)) for tok in T.all() for i in _find_all(text, tok)]
    if data.draw(st.booleans(), "insert") or not spans:
        token = data.draw(st.sampled_from(T.all()), "token")
        cut = data.draw(st.sampled_from(sorted({end for _, end in spans} | {len(text)})), "at")
        broken = text[:cut] + token + text[cut:]
    else:
        start, end = data.draw(st.sampled_from(spans), "drop")
        broken = text[:start] + text[end:]
    with pytest.raises(PRMFormatError):
        parse_prm_string(broken, T)


def _find_all(text: str, token: str) -> list[int]:
    out, at = [], text.find(token)
    while at >= 0:
        out.append(at)
        at = text.find(token, at + 1)
    return out


def test_parse_rejects_non_strings_and_huge_strings_fast():
    import time

    for value in (None, 5, b"bytes", ["list"]):
        with pytest.raises(PRMFormatError):
            parse_prm_string(value, T)  # type: ignore[arg-type]
    note = make_gold([3] * 2000)
    text = render_prm_string(note, T)
    start = time.perf_counter()
    assert len(parse_prm_string(text, T).problems) == 2000
    with pytest.raises(PRMFormatError):
        parse_prm_string(text + T.step, T)
    assert time.perf_counter() - start < 5
