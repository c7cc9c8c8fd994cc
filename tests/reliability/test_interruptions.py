"""SIGKILL the real ``clinrl`` training commands mid-run; ``--resume`` continues from the last *complete*
checkpoint to the same final step, and a killed run never looks finished.

Each run is a subprocess (``tests.reliability.interrupt``) killed at a chosen point of a checkpoint: right
after it is complete, or half-written (weights on disk, ``trainer_state.json`` not yet). Before
``clinrl.training.resume_checkpoint`` skipped half-written checkpoints, ``--resume`` picked the newest folder
whatever its state. The PRM case is also killed from outside at an arbitrary moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinrl.cli import main
from clinrl.errors import ClinrlError
from clinrl.training import checkpoint_complete, resume_checkpoint
from tests.drg.tiny_training import tiny_workspace

REPO = Path(__file__).resolve().parents[2]
DRG_RECIPES = REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny"
PRM_RECIPE = REPO / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}  # fmt: skip

pytestmark = pytest.mark.slow


def _cli_args(overrides: dict) -> list[str]:
    return [item for key, value in overrides.items() for item in (f"--{key}", str(value))]


def _killed(how: str, step: int, argv: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.reliability.interrupt", how, str(step), "--", *argv]
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    return done


def _checkpoints(out: Path) -> dict[str, bool]:
    return {p.name: checkpoint_complete(p) for p in sorted(out.glob("checkpoint-*"))}


def _resume_in_process(argv: list[str], capsys) -> str:
    import torch

    torch.set_num_threads(1)
    capsys.readouterr()
    main([*argv, "--resume"])
    return capsys.readouterr().out


def test_sft_killed_while_saving_resumes_from_the_last_complete_checkpoint(tmp_path, capsys):
    ws = tiny_workspace()
    out = tmp_path / "sft"
    overrides = ws.sft_overrides(
        out, **{"training.max_steps": 4, "training.save_strategy": "steps", "training.save_steps": 1}
    )
    argv = ["drg", "sft", "--config", DRG_RECIPES / "sft.yaml", *_cli_args(overrides)]
    _killed("mid-save", 3, argv)
    assert _checkpoints(out) == {"checkpoint-1": True, "checkpoint-2": True, "checkpoint-3": False}
    assert (out / "checkpoint-3" / "model.safetensors").is_file()  # half-written: weights without state
    assert not (out / "sft_summary.json").exists()  # the killed run does not look finished
    assert resume_checkpoint(out, True).endswith("checkpoint-2")
    with pytest.raises(ClinrlError, match="already holds checkpoints"):
        resume_checkpoint(out, False)
    summary = json.loads(_resume_in_process([str(a) for a in argv], capsys).strip().splitlines()[-1])
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 4
    state = json.loads((out / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]  # steps 3-4 redone once
    assert (out / "sft_summary.json").is_file() and not list(out.glob(".*.tmp"))


def test_grpo_killed_after_a_checkpoint_resumes_to_the_same_final_step(tmp_path, capsys):
    ws = tiny_workspace()
    out = tmp_path / "grpo"
    overrides = ws.grpo_overrides(
        out, **{"training.max_steps": 3, "training.save_strategy": "steps", "training.save_steps": 1}
    )
    argv = ["drg", "grpo", "--config", DRG_RECIPES / "vanilla_dense.yaml", *_cli_args(overrides)]
    _killed("after-save", 2, argv)
    assert _checkpoints(out) == {"checkpoint-1": True, "checkpoint-2": True}
    assert not (out / "grpo_summary.json").exists() and not (out / "model.safetensors").exists()
    summary = json.loads(_resume_in_process([str(a) for a in argv], capsys).strip().splitlines()[-1])
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 3
    assert (out / "grpo_summary.json").is_file()


def _prm_argv(out: Path, max_steps: int) -> list[str]:
    return ["prm", "train", "--config", str(PRM_RECIPE), "--output_dir", str(out), "--training.max_steps", str(max_steps),
            "--training.save_steps", "1", "--training.logging_steps", "1", "--max_notes", "8", "--max_length", "1024", "--progress", "false"]  # fmt: skip


def test_prm_killed_while_saving_resumes_to_the_same_final_step(tmp_path, capsys):
    """(tests/prm/test_train.py checks that a resumed PRM run gives the same weights as a straight one.)"""
    out = tmp_path / "prm"
    _killed("mid-save", 2, _prm_argv(out, 3))
    assert _checkpoints(out) == {"checkpoint-1": True, "checkpoint-2": False}
    assert not (out / "clinrl_prm.json").exists() and not (out / "train_report.json").exists()
    _resume_in_process(_prm_argv(out, 3), capsys)
    report = json.loads((out / "train_report.json").read_text())
    assert report["steps"] == 3 and report["resumed_from"].endswith("checkpoint-1")
    # the loss curve (transformers' log history, carried in the checkpoint): step 1 from the killed run, 2-3 redone once
    assert [step for step, _ in report["losses"]] == [1, 2, 3]


def test_prm_killed_from_outside_at_any_moment_never_looks_complete(tmp_path, capsys):
    out = tmp_path / "prm"
    proc = subprocess.Popen([sys.executable, "-m", "clinrl", *_prm_argv(out, 40)], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "checkpoint-2").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # most likely while checkpoint-2 is being written
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not (out / "clinrl_prm.json").exists() and not (out / "train_report.json").exists()
    last = resume_checkpoint(out, True)
    assert checkpoint_complete(last)
    done = int(Path(last).name.split("-")[1])
    argv = _prm_argv(out, done + 2)
    _resume_in_process(argv, capsys)
    assert json.loads((out / "train_report.json").read_text())["steps"] == done + 2
