"""SIGKILL ``clinrl drg eval`` and ``clinrl drg distill-cot`` mid-run (real CLI in a subprocess); a rerun
finishes without redoing settled rows, every case ends up exactly once and no output looks complete early.
(tests/drg/test_evaluate.py and test_distill.py simulate interruptions in-process; these kill the process.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinrl.cli import main
from tests.drg.tiny_training import tiny_workspace
from tests.reliability.test_interruptions import ENV, REPO

pytestmark = pytest.mark.slow


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_eval_killed_mid_run_reuses_finished_cases(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    ws = tiny_workspace()
    out, limit = tmp_path / "eval", 20  # of the 23 test cases
    argv = ["drg", "eval", "--model", str(ws.model), "--data", str(ws.root / "prep" / "test.parquet"), "--samples", "2",
            "--max-new-tokens", "24", "--batch-size", "1", "--limit", str(limit), "--out", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "clinrl", *argv], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    gen = out / "generations.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if gen.exists() and gen.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "metrics.json").exists() and not (out / "summary.md").exists()
    done_before = gen.read_bytes().count(b"\n")  # complete lines; a torn tail (no newline) is cut on rerun
    assert 3 <= done_before < limit
    main(argv)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["eval"]["reused"] == done_before and metrics["eval"]["generated_now"] == limit - done_before
    ids = [row["hadm_id"] for row in _lines(gen)]
    assert len(ids) == len(set(ids)) == limit and metrics["n_cases"] == limit


_GOLD = re.compile(r"the MS-DRG of this hospitalization is\n(.+)\n")


def test_distill_killed_mid_run_never_asks_the_teacher_twice(tmp_path, capsys, monkeypatch):
    from tests.drg.cot_fakes import prompt_text
    from tests.drg.split_data import make_prepared_frame
    from tests.helpers.fake_openai import FakeOpenAI

    n = 16
    frame = make_prepared_frame().head(n).copy()
    frame["text"] = [f"Synthetic course {i}: admitted, treated, discharged home." for i in range(n)]
    data = tmp_path / "train.parquet"
    frame.to_parquet(data, index=False)
    proc: list[subprocess.Popen] = []
    asked: list[str] = []

    def answer(body):
        text = prompt_text(body["messages"])
        asked.append(re.search(r"Synthetic course (\d+):", text).group(1))
        if len(asked) == 7 and proc:
            os.kill(proc[0].pid, signal.SIGKILL)  # the 7th request is in flight: its case is not settled
            time.sleep(0.2)
        gold = _GOLD.search(text).group(1).strip()
        return f"<think>The course shows the principal diagnosis and its severity.</think><answer>{gold}</answer>"

    out = tmp_path / "cot.jsonl"
    monkeypatch.setenv("CLINRL_TEST_KEY", "k")
    with FakeOpenAI(answer) as server:
        argv = ["drg", "distill-cot", "--endpoint", server.url, "--model", "teacher", "--data", str(data),
                "--out", str(out), "--concurrency", "1", "--api-key-env", "CLINRL_TEST_KEY", "--quiet"]  # fmt: skip
        proc.append(subprocess.Popen([sys.executable, "-m", "clinrl", *argv], cwd=REPO,
                                     env={**ENV, "CLINRL_TEST_KEY": "k"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE))  # fmt: skip
        assert proc[0].wait(240) == -signal.SIGKILL, proc[0].stderr.read().decode()[-2000:]
        assert not (out.parent / "cot_report.json").exists()
        settled = {str(row["hadm_id"]) for row in _lines(out)} if out.exists() else set()
        assert len(settled) == 6
        first_run = len(asked)
        main(argv)
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(asked) - first_run == n - len(settled)  # only the cases not yet written were asked again
    rows = _lines(out)
    assert len(rows) == n and len({r["hadm_id"] for r in rows}) == n
    assert summary["skipped_already_done"] == len(settled) and summary["missing_total"] == 0
