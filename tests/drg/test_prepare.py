"""``clinrl drg prepare`` end to end on a small MIMIC-IV-shaped fixture with known fates."""

from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clinrl.cli import main
from clinrl.drg.ontology import load_ontology
from clinrl.drg.prep.mimic import FLOW_KEYS, prepare
from clinrl.drg.prep.stratify import stratified_split
from clinrl.errors import ClinrlError, DataError
from tests.drg.mimic_fixture import (
    DRG_HEADER,
    GOOD,
    NOTE_HEADER,
    UNKNOWN,
    UNMAPPABLE,
    MimicFixture,
    build_fixture,
    render,
)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> MimicFixture:
    return build_fixture(tmp_path_factory.mktemp("mimic"))


@pytest.fixture(scope="module")
def prepared(fixture: MimicFixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("prepared")
    return prepare(fixture.discharge, fixture.drgcodes, out, progress=False), out


def _both(out: Path) -> pd.DataFrame:
    train, test = (pd.read_parquet(out / f"{side}.parquet").assign(side=side) for side in ("train", "test"))
    return pd.concat([train, test], ignore_index=True)


def test_flow_counts_match_how_the_fixture_was_built(fixture: MimicFixture, prepared: tuple[dict, Path]) -> None:
    flow, out = prepared
    assert json.loads((out / "flow.json").read_text()) == flow
    assert list(flow) == list(FLOW_KEYS) and all(type(v) is int for v in flow.values())
    expected = fixture.expected_flow()
    assert {k: flow[k] for k in expected} == expected
    assert flow["notes_read"] == flow["kept"] + sum(v for k, v in flow.items() if k.startswith("dropped_"))
    assert flow["kept"] == flow["train"] + flow["test"] > 0 and flow["test"] > 0
    # every drop step is exercised by the fixture
    assert all(flow[k] > 0 for k in FLOW_KEYS if k.startswith("dropped_"))


def test_outputs_hold_each_kept_course_with_its_v34_label(fixture: MimicFixture, prepared: tuple[dict, Path]) -> None:
    _, out = prepared
    rows = _both(out).set_index("note_id")
    kept = {n.note_id: n for n in fixture.kept_notes()}
    assert set(rows.index) == set(kept) and rows.index.is_unique
    onto = load_ontology()
    raw_of = {}
    codes = pd.read_csv(fixture.drgcodes, dtype=str, keep_default_na=False)
    for hadm, desc in zip(codes["hadm_id"], codes["description"]):
        raw_of.setdefault(hadm, desc)  # first HCFA/APR row: HCFA rows come first per admission
    for note_id, row in rows.iterrows():
        spec = kept[note_id]
        assert row["text"] == spec.course
        assert row["course_rule"] == spec.rule
        assert row["course_words"] == len(spec.course.split())
        assert (row["hadm_id"], row["subject_id"]) == (spec.hadm_id, spec.subject_id)
        drg = onto.to_v34(raw_of[str(spec.hadm_id)]).drg
        assert row["drg"] == drg.code and row["description"] == drg.description
        assert (row["mdc"], row["principal"], row["cc_mcc"]) == (drg.mdc, drg.principal, int(drg.cc_mcc))
        assert row["raw_description"] == raw_of[str(spec.hadm_id)]
        assert row["mapping"] == GOOD.get(spec.label, "exact")
    assert set(rows["mapping"]) == {"exact", "mapped"}


def test_report_explains_every_drop_and_skip(fixture: MimicFixture, prepared: tuple[dict, Path]) -> None:
    _, out = prepared
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["discharge"]["rows_skipped"]["by_reason"] == fixture.malformed_note_rows
    assert report["drgcodes"]["rows_skipped"]["by_reason"] == fixture.malformed_drg_rows
    assert report["drgcodes"]["admissions_with_conflicting_hcfa_rows"] == fixture.conflicting_admissions
    assert report["drgcodes"]["admissions_with_several_hcfa_rows_agreeing"] == fixture.agreeing_several_rows_admissions
    assert report["drgcodes"]["admissions_apr_only"] == fixture.apr_only_admissions
    drops = report["drops"]
    assert drops["dropped_no_hcfa_drg"] == dict(fixture.no_hcfa_reasons)
    expected_unmappable = Counter(d for d in (*UNMAPPABLE, UNMAPPABLE[0]))
    assert drops["dropped_unmapped_drg"]["unmappable_descriptions"] == dict(expected_unmappable)
    assert drops["dropped_unmapped_drg"]["unknown_descriptions"] == {UNKNOWN: 1}
    assert drops["dropped_unmapped_drg"]["conflicting_hcfa_rows_notes"] == fixture.conflicting_admissions
    rare = Counter(n.label for n, f in zip(fixture.notes, fixture.fates()) if f == "dropped_rare_class")
    assert sum(drops["dropped_rare_class"]["by_drg"].values()) == sum(rare.values())
    assert drops["dropped_rare_class"]["classes"] == len(rare)
    found = Counter(n.rule for n in fixture.notes if n.rule is not None)
    assert report["discharge"]["courses_found_by_rule"] == dict(found)
    assert set(report["timings"]) >= {"total_s", "notes_per_s", "peak_rss_mb"}


def test_subject_split_keeps_each_patient_on_one_side(prepared: tuple[dict, Path]) -> None:
    flow, out = prepared
    rows = _both(out)
    sides_per_subject = rows.groupby("subject_id")["side"].nunique()
    assert (sides_per_subject == 1).all()
    assert rows["subject_id"].duplicated().any()  # the fixture has patients with several admissions
    assert rows.groupby("hadm_id")["side"].nunique().max() == 1


def test_admission_split_reproduces_the_stratified_per_row_split(tmp_path: Path) -> None:
    fx = build_fixture(tmp_path, multi_note_admission=False)
    flow = prepare(fx.discharge, fx.drgcodes, tmp_path / "out", split_by="admission", progress=False)
    rows = _both(tmp_path / "out").set_index("note_id")
    kept = fx.kept_notes()  # file order, as prepare sees them
    labels = [rows.loc[n.note_id, "drg"] for n in kept]
    _, test_idx = stratified_split(labels, 0.1, 42)
    assert set(rows.index[rows["side"] == "test"]) == {kept[i].note_id for i in test_idx}
    assert flow["test"] == int(len(kept) * 0.1 + 0.5)  # the splitter rounds half up
    # stratified: every class keeps a train member, and the test side has as many classes as it can
    per_class = rows.groupby("drg")["side"].agg(lambda s: (s == "train").sum())
    assert (per_class > 0).all()
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["split"]["groups"].startswith("none")


def test_chunk_boundaries_do_not_change_the_result(fixture: MimicFixture, prepared, tmp_path: Path) -> None:
    flow, out = prepared
    small = prepare(fixture.discharge, fixture.drgcodes, tmp_path, chunksize=7, progress=False)
    assert small == flow
    assert _both(tmp_path).equals(_both(out))
    skipped = json.loads((tmp_path / "prepare_report.json").read_text())["discharge"]["rows_skipped"]
    assert skipped["by_reason"] == fixture.malformed_note_rows


def test_cli_prepare_prints_a_summary(fixture: MimicFixture, tmp_path: Path, capsys) -> None:
    main(["drg", "prepare", "--discharge", str(fixture.discharge), "--drgcodes", str(fixture.drgcodes),
          "--out", str(tmp_path), "--split-by", "admission", "--seed", "7"])  # fmt: skip
    printed = capsys.readouterr().out
    flow = json.loads((tmp_path / "flow.json").read_text())
    assert "dropped_duplicate_course" in printed and f"{flow['kept']:,}" in printed
    assert json.loads((tmp_path / "prepare_report.json").read_text())["params"]["seed"] == 7


# --- bad input ---------------------------------------------------------------------------------------


def _csv(path: Path, header: list[str], rows: list[list[str]], *, compress=gzip.compress) -> Path:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(compress(data) if compress else data)
    return path


def _notes(n: int = 3) -> list[list[str]]:
    from tests.drg.mimic_fixture import course_text

    return [[f"1-DS-{i}", "1", str(100 + i), "DS", "1", "", "", render("brief", course_text(60, str(i)))]
            for i in range(n)]  # fmt: skip


def _codes(n: int = 3, description: str = "CHEST PAIN") -> list[list[str]]:
    return [["1", str(100 + i), "HCFA", "313", description, "", ""] for i in range(n)]


@pytest.fixture
def good_codes(tmp_path: Path) -> Path:
    return _csv(tmp_path / "drgcodes.csv.gz", DRG_HEADER, _codes())


@pytest.mark.parametrize("missing", ["text", "hadm_id"])
def test_missing_discharge_column_names_file_and_column(tmp_path: Path, good_codes: Path, missing: str) -> None:
    keep = [i for i, c in enumerate(NOTE_HEADER) if c != missing]
    rows = [[r[i] for i in keep] for r in _notes()]
    notes = _csv(tmp_path / "discharge.csv.gz", [NOTE_HEADER[i] for i in keep], rows)
    with pytest.raises(DataError) as err:
        prepare(notes, good_codes, tmp_path / "out", progress=False)
    assert str(notes) in str(err.value) and missing in str(err.value) and err.value.field == missing


def test_missing_drgcodes_column_via_cli_is_one_clean_line(tmp_path: Path, capsys) -> None:
    notes = _csv(tmp_path / "discharge.csv.gz", NOTE_HEADER, _notes())
    header = [c for c in DRG_HEADER if c != "description"]
    codes = _csv(tmp_path / "drgcodes.csv.gz", header, [r[:4] + r[5:] for r in _codes()])
    with pytest.raises(SystemExit) as exit_:
        main(["drg", "prepare", "--discharge", str(notes), "--drgcodes", str(codes), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "description" in err and str(codes) in err and "Traceback" not in err


def test_wrong_compression_names_are_read_and_noted(tmp_path: Path) -> None:
    notes = _csv(tmp_path / "discharge.csv.gz", NOTE_HEADER, _notes(), compress=None)  # plain, named .gz
    codes = _csv(tmp_path / "drgcodes.csv", DRG_HEADER, _codes())  # gzip, named .csv
    flow = prepare(notes, codes, tmp_path / "out", progress=False)
    assert flow["kept"] == 3
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert "not gzip" in report["discharge"]["notes"][0] and "gzip-compressed" in report["drgcodes"]["notes"][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (bz2.compress(b"note_id,text\n"), "bzip2"),
        (b"\x00\xff\xfe\x80 not text at all \x81\x82", "UTF-8"),
        (gzip.compress(b"note_id,text\n" + bytes(range(48, 123)) * 999)[:-30], "gzip"),
        (gzip.compress(b""), "no header"),
    ],
    ids=["empty", "bzip2", "binary", "truncated-gzip", "empty-gzip"],
)
def test_unreadable_discharge_files_raise_data_error(
    tmp_path: Path, good_codes: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "discharge.csv.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        prepare(path, good_codes, tmp_path / "out", progress=False)
    assert message in str(err.value) and str(path) in str(err.value)


def test_undecodable_bytes_and_unclosed_quotes_in_the_middle(tmp_path: Path, good_codes: Path) -> None:
    header = ",".join(NOTE_HEADER).encode()
    for body, message in ((b'1-DS-1,1,100,DS,1,,,"caf\xe9"\n', "UTF-8"), (b'1-DS-1,1,100,DS,1,,,"open\n', "parsed")):
        path = tmp_path / "discharge.csv"
        path.write_bytes(header + b"\n" + body)
        with pytest.raises(DataError, match=message):
            prepare(path, good_codes, tmp_path / "out", progress=False)


def test_header_only_and_all_dropped_inputs(tmp_path: Path, good_codes: Path) -> None:
    empty = _csv(tmp_path / "empty.csv.gz", NOTE_HEADER, [])
    with pytest.raises(DataError, match="no usable note rows"):
        prepare(empty, good_codes, tmp_path / "out", progress=False)
    notes = _csv(tmp_path / "discharge.csv.gz", NOTE_HEADER, _notes())
    unknown = _csv(tmp_path / "codes.csv.gz", DRG_HEADER, _codes(description=UNKNOWN))
    with pytest.raises(DataError, match="no note survived"):
        prepare(notes, unknown, tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["drops"]["dropped_unmapped_drg"]["unknown_notes"] == 3
    assert not (tmp_path / "out" / "flow.json").exists() and not (tmp_path / "out" / "train.parquet").exists()


def test_failed_rerun_leaves_no_complete_looking_output(fixture: MimicFixture, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(fixture.discharge, fixture.drgcodes, out, progress=False)
    # A rerun that fails part-way through the notes (a bad byte far beyond the header).
    broken = _csv(tmp_path / "broken.csv", NOTE_HEADER, _notes(2000), compress=None)
    with broken.open("ab") as handle:
        handle.write(b'9-DS-9,9,9,DS,1,,,"caf\xe9"\n')
    with pytest.raises(DataError, match="UTF-8"):
        prepare(broken, fixture.drgcodes, out, chunksize=100, progress=False)
    # audit 2026-12-04 item 11: the previous run's parquet files used to stay beside a new report
    assert sorted(p.name for p in out.iterdir()) == []


def test_unusable_msdrg_folder_is_a_data_error(fixture: MimicFixture, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="DRG_34.tsv"):
        prepare(fixture.discharge, fixture.drgcodes, tmp_path / "out", ontology=tmp_path, progress=False)


@pytest.mark.parametrize(
    "options",
    [{"split_by": "patient"}, {"test_size": 1.0}, {"test_size": 0}, {"min_class_count": 0}, {"chunksize": 0}],
)
def test_bad_options_are_clinrl_errors(fixture: MimicFixture, tmp_path: Path, options: dict) -> None:
    with pytest.raises(ClinrlError):
        prepare(fixture.discharge, fixture.drgcodes, tmp_path, progress=False, **options)
    assert not any(tmp_path.iterdir())
