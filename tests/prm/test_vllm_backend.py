"""The PRM commands' ``--backend vllm`` where vLLM cannot run: one clean line, exit 2 (main venv, no vLLM).

The scoring itself through vLLM is tested in the engine tier: tests/engines/test_vllm_prm.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.tiny_prm import build_tiny_prm
from tests.reliability.cli import assert_clean_error, run_cli

DATA = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "data" / "prm"
GOLD, ERRORS = DATA / "verification_dev_gold.json.gz", DATA / "verification_dev_error.json.gz"


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory) -> Path:
    return build_tiny_prm(tmp_path_factory.mktemp("prm") / "model")


@pytest.fixture
def no_vllm(monkeypatch):
    """``import vllm`` fails, whether or not this venv has it."""
    monkeypatch.setitem(sys.modules, "vllm", None)


def _commands(model: Path, tmp_path: Path) -> dict[str, list]:
    dialogue = tmp_path / "dialogue.txt"
    dialogue.write_text("[doctor] how is the knee?\n[patient] better.", encoding="utf-8")
    note = tmp_path / "note.txt"
    note.write_text("Knee pain.\n- Ice and rest.", encoding="utf-8")
    csv, labels = DATA / "a_prefer_dev.csv", DATA / "a_prefer_dev_labels.csv"
    return {
        "score": ["prm", "score", "--model", model, "--notes", GOLD, "--out", tmp_path / "s.json"],
        "best-of-n": ["prm", "best-of-n", "--model", model, "--dialogue", dialogue, "--notes", note],
        "eval-selection": ["prm", "eval-selection", "--gold", GOLD, "--errors", ERRORS, "--scorer", "prm",
                           "--model", model, "--json", tmp_path / "e.json", "--limit", "1"],
        "eval-preference": ["prm", "eval-preference", "--csv", csv, "--labels", labels, "--scorer", "prm",
                            "--model", model],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["score", "best-of-n", "eval-selection", "eval-preference"])
def test_backend_vllm_without_vllm_is_one_clean_line(prm_dir, tmp_path, capsys, no_vllm, command):
    argv = _commands(prm_dir, tmp_path)[command] + ["--backend", "vllm"]
    assert_clean_error(argv, capsys, "--backend vllm needs vLLM", "pip install")


def test_backend_vllm_refuses_an_encoder_prm(tmp_path, capsys):
    model = build_tiny_prm(tmp_path / "encoder", head="token-classification")
    argv = _commands(model, tmp_path)["score"] + ["--backend", "vllm"]
    assert_clean_error(argv, capsys, "causal-LM PRMs only", "token-classification")


def test_unknown_backend_is_typers_invalid_choice_line(prm_dir, tmp_path, capsys):
    argv = _commands(prm_dir, tmp_path)["score"] + ["--backend", "onnx"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert "Invalid value for '--backend'" in err and "'onnx' is not one of 'transformers', 'vllm'" in err


def test_backend_vllm_refuses_a_vllm_without_raw_logprobs(prm_dir, tmp_path, capsys, monkeypatch):
    """Before logprobs_mode (vLLM < 0.10.2) returned log-probabilities may be processed ones: refused."""
    import dataclasses
    import types

    old = types.SimpleNamespace(__version__="0.9.2", EngineArgs=dataclasses.make_dataclass("EngineArgs", ["model"]))
    monkeypatch.setitem(sys.modules, "vllm", old)
    argv = _commands(prm_dir, tmp_path)["score"] + ["--backend", "vllm"]
    assert_clean_error(argv, capsys, "vLLM >= 0.10.2", "found 0.9.2")
