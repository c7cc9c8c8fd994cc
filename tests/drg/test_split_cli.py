import json
import subprocess
import sys

import pandas as pd
import pytest

from clinrl.cli import main
from tests.drg.split_data import CLASS_SIZES, write_prepared

N = sum(CLASS_SIZES.values())


@pytest.fixture()
def data(tmp_path):
    return write_prepared(tmp_path / "train.parquet")


def run(argv, capsys):
    """Run the CLI in-process; return (exit status, stderr)."""
    try:
        main(argv)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


def test_ratio_split(data, tmp_path, capsys):
    out = tmp_path / "ratio"
    status, err = run(["drg", "split", "--data", str(data), "--out", str(out), "--sft-ratio", "0.75"], capsys)
    assert status == 0, err
    report = json.loads((out / "split_report.json").read_text())
    assert report["mode"] == "ratio" and report["config"]["sft_ratio"] == 0.75
    sft, rl = pd.read_parquet(out / "sft.parquet"), pd.read_parquet(out / "rl.parquet")
    assert len(rl) == round(N * 0.25) and len(sft) + len(rl) == N
    assert f"sft {len(sft)} rows" in err and "Synthetic course" not in err  # no note text printed


def test_small_split(data, tmp_path, capsys):
    out = tmp_path / "small"
    argv = [
        "drg",
        "split",
        "--data",
        str(data),
        "--out",
        str(out),
        "--small",
        "--cold-start-fraction",
        "0.1",
        "--rl-fraction",
        "0.5",
        "--min-cases",
        "6",
        "--seed",
        "7",
    ]
    status, err = run(argv, capsys)
    assert status == 0, err
    report = json.loads((out / "split_report.json").read_text())
    rare = [k for k in CLASS_SIZES.values() if k < 6]
    assert report["mode"] == "small" and report["dropped_rare"] == {"classes": len(rare), "rows": sum(rare)}
    kept = N - sum(rare)
    assert report["sft"]["rows"] == round(kept * 0.1)
    assert report["sft"]["rows"] + report["rl"]["rows"] + report["unused_rows"] == kept


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--small", "--sft-ratio", "0.5"], "exclude each other"),
        (["--sft-ratio", "1.2"], "sft_ratio must be between 0 and 1"),
        (["--small", "--rl-fraction", "0"], "rl_fraction must be between 0 and 1"),
    ],
)
def test_user_mistakes_give_one_line(data, tmp_path, capsys, extra, message):
    status, err = run(["drg", "split", "--data", str(data), "--out", str(tmp_path / "o"), *extra], capsys)
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "sft.parquet").exists()


def test_bad_files(tmp_path, capsys):
    status, err = run(["drg", "split", "--data", str(tmp_path / "nope.parquet"), "--out", str(tmp_path)], capsys)
    assert status == 2 and "nope.parquet" in err and "not found" in err
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    status, err = run(["drg", "split", "--data", str(junk), "--out", str(tmp_path)], capsys)
    assert status == 2 and "cannot read as parquet" in err
    pd.DataFrame({"text": ["a"]}).to_parquet(tmp_path / "cols.parquet")
    status, err = run(["drg", "split", "--data", str(tmp_path / "cols.parquet"), "--out", str(tmp_path)], capsys)
    assert status == 2 and "missing column(s) description" in err


def test_console_entry_point(data, tmp_path):
    out = tmp_path / "via_module"
    proc = subprocess.run(
        [sys.executable, "-m", "clinrl", "drg", "split", "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "split_report.json").read_text())["config"]["sft_ratio"] == 0.9
