"""Shared fixtures of the engine tier (`make test-engines`: vLLM's CPU build, DeepSpeed).

``drg_policy``: a tiny DRG workspace (600 synthetic notes, 6 DRGs, a random-init 3-layer 128-wide Qwen2)
and a policy SFT'd on it just long enough to write the answer format now and then, so that GRPO rewards
vary and its weights move. Built once per session (about a minute on 2 CPU cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_PROMPT_TOKENS = 144


@dataclass(frozen=True)
class DRGPolicy:
    root: Path
    model: Path  # random-init
    policy: Path  # SFT'd
    rl: Path
    test: Path


@pytest.fixture(scope="session")
def drg_policy(tmp_path_factory) -> DRGPolicy:
    from clinrl.config import resolve_recipe
    from clinrl.demo.workspace import build_tiny_workspace, sft_overrides
    from clinrl.drg.train.sft import load_sft_config, train_sft

    root = tmp_path_factory.mktemp("engines-drg")
    ws = build_tiny_workspace(root, n_notes=600, classes=6)
    overrides = sft_overrides(ws, root / "sft", max_prompt_tokens=MAX_PROMPT_TOKENS, max_steps=60, logging_steps=20)
    train_sft(load_sft_config(resolve_recipe("tiny/sft"), {**overrides, "training.disable_tqdm": True}))
    return DRGPolicy(root, ws.model, root / "sft", ws.split / "rl.parquet", ws.prepared / "test.parquet")


def run_clinrl(args: list[str], *, timeout: float = 600, driver: bool = False) -> subprocess.CompletedProcess:
    """``clinrl ARGS`` in a fresh process (vLLM spawns its engine core: the CLI is a guarded entry point);
    ``driver`` runs it through tests/engines/grpo_driver.py instead (which can break the weight sync)."""
    entry = [str(REPO / "tests" / "engines" / "grpo_driver.py")] if driver else ["-m", "clinrl"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "DS_ACCELERATOR": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [sys.executable, *entry, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def pytest_configure(config):
    """The engine tier's marker, registered here too so that this folder runs under any pytest configuration."""
    config.addinivalue_line("markers", "engine: needs the engine venv (deepspeed, vllm); run by make test-engines")
