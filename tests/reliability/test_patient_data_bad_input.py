"""Audit 2026-12-04, "patient data and bad input" (issue 16, items 9, 10, 13, 14): offline by default, schema
errors that never echo note text, one-line errors instead of tracebacks, and values no longer accepted silently.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinrl.errors import ClinrlError
from clinrl.prm.schema import note_to_dict
from tests.helpers.models import build_smallest_lm
from tests.helpers.servers import free_port
from tests.prm.note_factory import make_gold
from tests.reliability.cli import assert_clean_error

REPO = Path(__file__).resolve().parents[2]
SFT = REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "sft.yaml"
GRPO = REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "best.yaml"
PRM_TINY = REPO / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml"
MARKER = "ZEBRA-PATIENT-4242"
GOLD_DRG = "HEART FAILURE AND SHOCK WITH MCC"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_smallest_lm(tmp_path_factory.mktemp("lm"))


@pytest.fixture()
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    rows = [
        {"hadm_id": 10 + i, "text": f"Synthetic course {i}: treated, discharged.", "solution": GOLD_DRG}
        for i in range(2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def no_network(monkeypatch) -> list:
    """Every outgoing socket connection is recorded and refused (no request can leave the test)."""
    attempts: list = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.delenv("CLINRL_ALLOW_HUB", raising=False)
    monkeypatch.setenv("CLINRL_SERVE_TOKEN", "test-token")  # `serve` would warn about a missing token first
    return attempts


# ------------------------------------------------------------------------------------ item 9: offline by default
@pytest.mark.parametrize("command", ["eval", "predict", "serve"])
def test_mistyped_model_path_fails_at_once_without_a_request(tmp_path, capsys, cases, no_network, command):
    """`--model runs/nope` looks like a hub repo id: it used to be sent to the Hub for ~47 s of retries."""
    note = tmp_path / "note.txt"
    note.write_text("Brief Hospital Course: treated.", encoding="utf-8")
    argv = {
        "eval": ["drg", "eval", "--model", "runs/nope", "--data", cases, "--out", tmp_path / "ev", "--quiet"],
        "predict": ["drg", "predict", note, "--model", "runs/nope"],
        "serve": ["serve", "--model", "runs/nope", "--port", "0"],
    }[command]
    start = time.perf_counter()
    assert_clean_error(argv, capsys, "model folder not found: runs/nope", "CLINRL_ALLOW_HUB=1")
    assert time.perf_counter() - start < 2.0
    assert no_network == []  # not one connection attempt
    assert not (tmp_path / "ev").exists()


def test_importing_clinrl_turns_the_hub_off_unless_opted_in():
    code = "import os, clinrl; print(os.environ.get('HF_HUB_OFFLINE'))"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "CLINRL_ALLOW_HUB")}
    env["PYTHONPATH"] = str(REPO / "src")

    def run(extra: dict) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=60
        )
        return done.stdout.strip()

    assert run({}) == "1"
    assert run({"CLINRL_ALLOW_HUB": "1"}) == "None"  # opted in: the hub may be asked
    assert run({"HF_HUB_OFFLINE": "0"}) == "0"  # the user's own setting is kept


def test_resolve_model_local_first_hub_only_when_allowed(tmp_path, monkeypatch):
    from clinrl.llm.hub import resolve_model

    monkeypatch.delenv("CLINRL_ALLOW_HUB", raising=False)
    assert resolve_model(tmp_path) == str(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ClinrlError, match="not a model folder"):
        resolve_model(tmp_path / "file")
    with pytest.raises(ClinrlError, match="model folder not found"):
        resolve_model("someone/not-cached-model")
    monkeypatch.setenv("CLINRL_ALLOW_HUB", "1")
    assert resolve_model("someone/not-cached-model") == "someone/not-cached-model"


# ------------------------------------------------------------------- item 10: schema errors never echo values
def _note_with(field: str, value) -> dict:
    note = note_to_dict(make_gold([2, 1], case_id="T_1", dialogue="Doctor: hi. Patient: cough."))
    if field == "Step_score":
        note["Problems"][0]["Steps"][1]["Step_score"] = value
    elif field == "Problem_no":
        note["Problems"][1]["Problem_no"] = value
    elif field == "Error_level":
        note["Swapped_info"] = [{"Error_level": value, "Problem_no": "1", "Error_type": "x",
                                 "Original_content": "a", "New_content": "b"}]  # fmt: skip
    return note


BAD_VALUES = [
    ("Step_score", MARKER + "+" * 1_000_000, "Problems[0].Steps[1].Step_score"),  # a 1 MB label
    ("Problem_no", f"1. {MARKER} was seen in clinic", "Problems[1].Problem_no"),
    ("Error_level", f"Step {MARKER}", "Swapped_info[0].Error_level"),
]


@pytest.mark.parametrize(("field", "value", "where"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
@pytest.mark.parametrize("command", ["render", "check-labels"])
def test_cli_schema_error_names_the_place_not_the_value(tmp_path, capsys, field, value, where, command):
    path = tmp_path / "notes.json"
    path.write_text(json.dumps([_note_with(field, value)]), encoding="utf-8")
    argv = {"render": ["prm", "render", path, "--out", tmp_path / "r.jsonl"],
            "check-labels": ["prm", "check-labels", "--errors", path]}[command]  # fmt: skip
    line = assert_clean_error(argv, capsys, str(path), "row 0", where, f"a str of {len(value)} characters")
    assert MARKER not in line and len(line) < 400


def test_case_id_in_an_error_is_shown_only_when_it_is_a_short_id(tmp_path, capsys):
    note = _note_with("Step_score", "?")
    note["Case_id"] = f"{MARKER} " * 1000
    path = tmp_path / "notes.json"
    path.write_text(json.dumps([note]), encoding="utf-8")
    line = assert_clean_error(["prm", "render", path, "--out", tmp_path / "r.jsonl"], capsys, "case <a str of")
    assert MARKER not in line


class _Scorer:
    """What /v1/prm/score needs before the model runs (a JSON note fails in the schema, first)."""

    default_aggregate, tokens = "sum_log", None


@pytest.mark.parametrize(("field", "value", "where"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_server_422_names_the_field_not_the_value(field, value, where):
    import httpx

    from clinrl.serve import ServeSettings, create_app
    from tests.helpers.servers import serve_app

    app = create_app(ServeSettings(model_name="t", max_body_bytes=3_000_000), scorer=_Scorer(), token=None)
    with serve_app(app) as url:
        response = httpx.post(f"{url}/v1/prm/score", json={"note": _note_with(field, value)}, timeout=30)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert where in message and f"a str of {len(value)} characters" in message
    assert MARKER not in response.text and len(response.content) < 600


# ------------------------------------------------------------------ item 13: one line instead of a traceback
@pytest.fixture(scope="module")
def truncated_model(model_dir, tmp_path_factory) -> Path:
    import shutil

    cut = tmp_path_factory.mktemp("cut") / "model"
    shutil.copytree(model_dir, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return cut


def test_truncated_weights_are_one_line_in_eval_and_serve(tmp_path, capsys, cases, truncated_model, monkeypatch):
    monkeypatch.setenv("CLINRL_SERVE_TOKEN", "test-token")
    out = tmp_path / "ev"
    argv = ["drg", "eval", "--model", truncated_model, "--data", cases, "--out", out, "--quiet"]
    assert_clean_error(argv, capsys, "cannot load a causal LM", "SafetensorError")
    assert not (out / "eval_config.json").exists()
    assert_clean_error(["serve", "--model", truncated_model, "--port", "0"], capsys, "cannot load a causal LM")


def test_vllm_backend_without_vllm_leaves_no_config_behind(tmp_path, capsys, cases, model_dir):
    pytest.importorskip("transformers")
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    out = tmp_path / "ev"
    common = ["drg", "eval", "--model", model_dir, "--data", cases, "--out", out, "--quiet", "--samples", "1",
              "--temperature", "0", "--max-new-tokens", "2"]  # fmt: skip
    assert_clean_error([*common, "--backend", "vllm"], capsys, "pip install 'clinrl[vllm]'")
    assert not (out / "eval_config.json").exists() and not (out / "generations.jsonl").exists()
    from tests.reliability.cli import run_cli

    code, _, err = run_cli([*common, "--backend", "transformers"], capsys)  # the rerun is not refused
    assert code == 0, err
    assert json.loads((out / "eval_config.json").read_text())["backend"] == "transformers"


@pytest.mark.parametrize("kind", ["missing", "folder", "latin-1"])
@pytest.mark.parametrize("command", ["structure", "score"])
def test_bad_dialogue_file_is_one_line(tmp_path, capsys, kind, command):
    note = tmp_path / "note.txt"
    note.write_text("Cough:\n- Start inhaler.\n", encoding="utf-8")
    dialogue = tmp_path / "dialogue.txt"
    if kind == "folder":
        dialogue.mkdir()
    elif kind == "latin-1":
        dialogue.write_bytes(f"Patient: caf\xe9 {MARKER}".encode("latin-1"))
    expected = {"missing": "file not found", "folder": "is a folder", "latin-1": "not UTF-8"}[kind]
    if command == "structure":
        argv = ["prm", "structure", note, "--out", tmp_path / "s.json", "--dialogue", dialogue]
    else:  # the dialogue is read before the PRM loads: no model needed to see the error
        argv = ["prm", "score", "--model", tmp_path / "no-prm", "--notes", note, "--dialogue", dialogue,
                "--out", tmp_path / "s.json"]  # fmt: skip
    line = assert_clean_error(argv, capsys, str(dialogue), "--dialogue", expected)
    assert MARKER not in line


@pytest.mark.parametrize("command", [["drg", "sft", "--config", SFT], ["drg", "grpo", "--config", GRPO]])
def test_bad_learning_rate_is_refused_before_the_model_loads(capsys, command):
    # the model does not exist: the recipe check must come first (it used to fail only after loading)
    assert_clean_error([*command, "--model", "runs/nope", "--training.learning_rate", "-1"], capsys,
                       "training.learning_rate", "must be > 0, got -1.0")  # fmt: skip


def test_prm_learning_rate_is_refused_before_training(capsys, tmp_path):
    argv = ["prm", "train", "--config", PRM_TINY, "--training.learning_rate", "-1", "--output_dir", tmp_path / "o"]
    assert_clean_error(argv, capsys, "training.learning_rate", "must be > 0")
    assert not (tmp_path / "o").exists()


def test_report_to_a_tracker_that_is_not_installed(capsys):
    from transformers.integrations import get_available_reporting_integrations

    if "wandb" in get_available_reporting_integrations():
        pytest.skip("wandb is installed here")
    base = ["drg", "sft", "--config", SFT, "--model", "runs/nope"]
    assert_clean_error([*base, "--report_to", "wandb"], capsys, "report_to", "'wandb' is not installed")
    assert_clean_error([*base, "--report_to", "nosuch"], capsys, "report_to", "unknown tracker 'nosuch'")


# ----------------------------------------------------------------------- item 14: values accepted silently
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_below_one_is_refused_everywhere(tmp_path, capsys, cases, limit):
    expected = f"limit must be at least 1 (the first N rows), got {limit}"
    model = "runs/nope"  # checked before the model is needed
    assert_clean_error(["drg", "eval", "--model", model, "--data", cases, "--out", tmp_path / "e", "--limit", limit],
                       capsys, expected)  # fmt: skip
    assert_clean_error(["drg", "difficulty", "--model", model, "--data", cases, "--out", tmp_path / "d.jsonl",
                        "--limit", limit], capsys, expected)  # fmt: skip
    assert_clean_error(["drg", "distill-cot", "--endpoint", "http://127.0.0.1:9/v1", "--model", "t", "--data", cases,
                        "--out", tmp_path / "c.jsonl", "--limit", limit], capsys, expected)  # fmt: skip
    for command, recipe in (("sft", SFT), ("grpo", GRPO)):  # a recipe's limit: -3 used to mean "all but 3"
        assert_clean_error(["drg", command, "--config", recipe, "--limit", limit], capsys, expected)


def test_read_split_limit_is_the_first_n_rows_only(tmp_path):
    from clinrl.training import read_split

    with pytest.raises(ClinrlError, match="limit must be at least 1"):
        read_split(tmp_path / "any.parquet", limit=-3)


def test_score_k_above_n_is_an_error_naming_n(tmp_path, capsys):
    path = tmp_path / "generations.jsonl"
    record = {"hadm_id": 1, "solution": GOLD_DRG, "completions": [f"<think>x</think><answer>{GOLD_DRG}</answer>"] * 2}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert_clean_error(["drg", "score", "--generations", path, "--k", "3"], capsys, "k=3", "n=2", "1 to 2")
    assert_clean_error(["drg", "score", "--generations", path, "--k", "0"], capsys, "k=0")


def test_distill_against_a_dead_endpoint_names_the_cause_and_fails(tmp_path, capsys, cases):
    port = free_port()  # nothing listens there
    out = tmp_path / "cot.jsonl"
    start = time.perf_counter()
    line = assert_clean_error(
        ["drg", "distill-cot", "--endpoint", f"http://127.0.0.1:{port}/v1", "--model", "t", "--data", cases,
         "--out", out, "--request-retries", "0", "--quiet"],
        capsys, "every request failed", "2 cases", f"127.0.0.1:{port}", "ConnectError",
    )  # fmt: skip
    assert time.perf_counter() - start < 10 and "Synthetic course" not in line
    report = json.loads((tmp_path / "cot_report.json").read_text())
    assert report["request_errors"] == 2 and "ConnectError" in report["last_request_error"]
