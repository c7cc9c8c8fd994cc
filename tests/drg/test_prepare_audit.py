"""Audit 2026-12-04 (items 2, 11, 12): `drg prepare` keeps one note per admission so the whole chain
(prepare → split → eval / difficulty) agrees on ``hadm_id``; outputs of one finished run only; ids
beyond float64's exact range are rejected and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clinrl.drg.eval.evaluate import run_eval
from clinrl.drg.prep.cases import load_cases
from clinrl.drg.prep.mimic import prepare
from clinrl.drg.prep.split import SplitConfig, split_prepared
from clinrl.drg.prompts import format_completion
from clinrl.errors import DataError
from clinrl.llm.backends import SamplingParams
from tests.drg.mimic_fixture import MimicFixture, build_fixture


class FixedBackend:
    """A generation backend without a model: every prompt gets ``n`` copies of one completion."""

    name = "fixed"

    def __init__(self, text: str):
        self.text = text

    def generate(self, prompts, params):
        return [[self.text] * params.n for _ in prompts]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> MimicFixture:
    return build_fixture(tmp_path_factory.mktemp("mimic"), per_class=4)


@pytest.fixture(scope="module")
def prepared(fixture: MimicFixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(fixture.discharge, fixture.drgcodes, out, progress=False)
    return out


def test_prepare_keeps_the_latest_note_of_each_admission(fixture: MimicFixture, prepared: Path) -> None:
    several = {n.hadm_id for n in fixture.notes if n.fate == "dropped_other_note_of_admission"}
    assert len(several) == 2  # the fixture has two admissions with several notes
    both = pd.concat([pd.read_parquet(prepared / f"{side}.parquet") for side in ("train", "test")])
    assert not both["hadm_id"].duplicated().any()
    other = "dropped_other_note_of_admission"
    latest = {n.hadm_id: n.note_id for n in fixture.notes if n.hadm_id in several and n.fate != other}
    kept = both[both["hadm_id"].isin(several)].set_index("hadm_id")["note_id"].to_dict()
    assert kept == latest
    flow = json.loads((prepared / "flow.json").read_text())
    assert flow["dropped_other_note_of_admission"] == 3
    report = json.loads((prepared / "prepare_report.json").read_text())
    assert report["drops"]["dropped_other_note_of_admission"]["admissions"] == 2
    assert "note_seq" in report["drops"]["dropped_other_note_of_admission"]["rule"]


def test_prepare_split_eval_chain_accepts_every_output(prepared: Path, tmp_path: Path) -> None:
    # Before the fix both notes of an admission were kept: eval and difficulty refused the file
    # ("repeated hadm_id").
    split_prepared(prepared / "train.parquet", tmp_path / "split", SplitConfig(sft_ratio=0.5), progress=False)
    files = [prepared / "train.parquet", prepared / "test.parquet", tmp_path / "split" / "sft.parquet",
             tmp_path / "split" / "rl.parquet"]  # fmt: skip
    for path in files:
        assert load_cases(path, require_id=True)
    backend = FixedBackend(format_completion("HEART FAILURE AND SHOCK WITH MCC"))
    params = SamplingParams(n=2, temperature=0.6, top_p=0.95, max_new_tokens=8, seed=0)
    for i, path in enumerate((prepared / "train.parquet", prepared / "test.parquet")):
        metrics = run_eval(backend, path, params, tmp_path / f"eval{i}", batch_size=16, progress=False, plots=False)
        assert metrics["eval"]["generated_now"] == len(pd.read_parquet(path))


def _with_huge_ids(fixture: MimicFixture, tmp: Path) -> tuple[Path, Path, list[str]]:
    """The fixture plus notes whose hadm_id float64 cannot hold, and a drgcodes row for another such
    admission that rounds (and overflows int64) to the same number."""
    notes = pd.read_csv(fixture.discharge, dtype=str, keep_default_na=False, on_bad_lines="skip")
    codes = pd.read_csv(fixture.drgcodes, dtype=str, keep_default_na=False)
    donor = notes[notes["note_id"] == fixture.kept_notes()[0].note_id].iloc[0]  # a note that is kept
    extra_ids = {"huge-1": "12345678901234567890", "huge-2": "90071992547409931"}  # 20 and 17 digits
    rows = [donor.to_dict() | {"note_id": nid, "hadm_id": hadm, "text": donor["text"].replace("case-", f"{nid}-")}
            for nid, hadm in extra_ids.items()]  # fmt: skip
    label = codes[(codes["hadm_id"] == donor["hadm_id"]) & (codes["drg_type"].str.strip() == "HCFA")].iloc[0].to_dict()
    codes_rows = [label | {"hadm_id": "12345678901234567891"}, label | {"hadm_id": "90071992547409930"}]
    discharge, drgcodes = tmp / "discharge.csv", tmp / "drgcodes.csv"
    pd.concat([notes, pd.DataFrame(rows)]).to_csv(discharge, index=False)
    pd.concat([codes, pd.DataFrame(codes_rows)]).to_csv(drgcodes, index=False)
    return discharge, drgcodes, list(extra_ids)


def test_ids_beyond_float64_precision_are_rejected_and_counted(fixture: MimicFixture, tmp_path: Path) -> None:
    # Before the fix the 20-digit hadm_id overflowed int64 like the drgcodes row's, and the note took
    # that other admission's DRG; a 17-digit id rounded onto its neighbour's.
    discharge, drgcodes, huge_notes = _with_huge_ids(fixture, tmp_path)
    out = tmp_path / "out"
    prepare(discharge, drgcodes, out, progress=False)
    reason = "hadm_id above 2**53 - 1 (would lose precision)"
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["discharge"]["rows_skipped"]["by_reason"][reason] == 2
    assert report["drgcodes"]["rows_skipped"]["by_reason"][reason] == 2
    both = pd.concat([pd.read_parquet(out / f"{side}.parquet") for side in ("train", "test")])
    assert not both["note_id"].isin(huge_notes).any()
    assert both["hadm_id"].between(0, 2**53 - 1).all()


# --------------------------------------------------------------------------- item 11: one finished run


def _prepare(fixture: MimicFixture, out: Path, **options) -> Path:
    prepare(fixture.discharge, fixture.drgcodes, out, progress=False, **options)
    return out


def test_downstream_steps_refuse_outputs_of_an_unfinished_run(fixture: MimicFixture, tmp_path: Path, capsys) -> None:
    from tests.reliability.cli import assert_clean_error

    out = _prepare(fixture, tmp_path / "out")
    (out / "flow.json").unlink()  # what a run killed before its last write leaves
    assert_clean_error(["drg", "split", "--data", out / "train.parquet", "--out", tmp_path / "split"], capsys,
                       "train.parquet", "unfinished")  # fmt: skip
    with pytest.raises(DataError, match="unfinished"):
        load_cases(out / "test.parquet")
    assert not (tmp_path / "split").exists()


def test_downstream_steps_refuse_a_mix_of_two_runs(fixture: MimicFixture, tmp_path: Path, capsys) -> None:
    from tests.reliability.cli import assert_clean_error

    first = _prepare(fixture, tmp_path / "first")
    second = _prepare(fixture, tmp_path / "second", seed=7)
    (second / "train.parquet").write_bytes((first / "train.parquet").read_bytes())  # another run's file
    assert_clean_error(["drg", "split", "--data", second / "train.parquet", "--out", tmp_path / "split"], capsys,
                       "train.parquet", "not from the")  # fmt: skip
    with pytest.raises(DataError, match="not from the"):
        load_cases(second / "train.parquet")
    load_cases(second / "test.parquet")  # the run's own file is fine
    split_prepared(first / "train.parquet", tmp_path / "ok", progress=False)  # and so is a whole run


def test_a_rerun_replaces_every_output_and_removes_killed_runs_spill_folders(
    fixture: MimicFixture, tmp_path: Path
) -> None:
    import os

    out = _prepare(fixture, tmp_path / "out")
    first_run = json.loads((out / "prepare_report.json").read_text())["run_id"]
    dead = out / ".prepare-999999999-abc"  # a killed run's spill (no such process)
    legacy = out / ".prepare-k3j4h5g6"  # older versions' name, without a pid
    live = out / f".prepare-{os.getpid()}-live"  # a run still going: kept
    for folder in (dead, legacy, live):
        folder.mkdir()
        (folder / "part-00000.parquet").write_bytes(b"course text")
    _prepare(fixture, out)
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["run_id"] != first_run and report["stale_spill_folders_removed"] == 2
    assert not dead.exists() and not legacy.exists() and live.exists()
    from clinrl.drg.prep.prepared import run_id_of

    assert run_id_of(out / "train.parquet") == run_id_of(out / "test.parquet") == report["run_id"]


def test_a_rerun_refused_at_its_inputs_leaves_the_finished_run_whole(fixture: MimicFixture, tmp_path: Path) -> None:
    # (a rerun that fails part-way leaves nothing at all:
    # test_prepare.py::test_failed_rerun_leaves_no_complete_looking_output)
    out = _prepare(fixture, tmp_path / "out")
    run = json.loads((out / "prepare_report.json").read_text())["run_id"]
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"note_id,subject_id,hadm_id,text\n" + b'1-DS-1,1,2,"caf\xe9"\n')
    for discharge, drgcodes in ((fixture.discharge, tmp_path / "missing.csv.gz"), (broken, fixture.drgcodes)):
        with pytest.raises(DataError):
            prepare(discharge, drgcodes, out, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "flow.json", "prepare_report.json", "test.parquet", "train.parquet"]  # with its card
    assert json.loads((out / "prepare_report.json").read_text())["run_id"] == run
    load_cases(out / "train.parquet")  # still one finished run


_KILLED_RUN = """
import os, signal, sys
import clinrl.drg.prep.mimic as mimic

def killed(*args, **kwargs):  # SIGKILL once the courses are spilled, before any output is written
    os.kill(os.getpid(), signal.SIGKILL)

mimic._label = killed
mimic.prepare(sys.argv[1], sys.argv[2], sys.argv[3], progress=False, chunksize=20)
"""


def test_a_killed_run_leaves_nothing_usable_and_the_next_run_removes_its_spill(
    fixture: MimicFixture, tmp_path: Path, capsys
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.reliability.cli import assert_clean_error

    out = _prepare(fixture, tmp_path / "out")  # a finished run, then a rerun killed mid-way
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", _KILLED_RUN, fixture.discharge, fixture.drgcodes, out]
    assert subprocess.run(argv, env=env).returncode == -signal.SIGKILL
    spills = list(out.glob(".prepare-*"))
    assert len(spills) == 1 and list(spills[0].glob("part-*.parquet"))  # course text left behind
    assert not any((out / name).exists() for name in ("flow.json", "train.parquet", "test.parquet"))
    assert_clean_error(["drg", "split", "--data", out / "train.parquet", "--out", tmp_path / "split"], capsys,
                       "train.parquet", "not found")  # fmt: skip
    _prepare(fixture, out)
    assert not spills[0].exists() and not list(out.glob(".prepare-*"))
