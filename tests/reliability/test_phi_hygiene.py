"""Patient-data hygiene: the main commands run on notes carrying a marker string; the marker must show up
in no stdout/stderr/log line and in no report or log file (only in the data outputs themselves), no
connection leaves the machine, telemetry is off by default and no recipe holds a secret."""

from __future__ import annotations

import gzip
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clinrl.prm.schema import save_notes
from tests.prm.note_factory import make_gold
from tests.reliability.cli import run_cli

MARKER = "ZZMARKER-PHI-1234"
REPO = Path(__file__).resolve().parents[2]
# Files that *are* the data (inputs, prepared splits, PRM strings, error samples): the marker belongs there.
DATA_OUTPUTS = {"discharge.csv.gz", "train.parquet", "test.parquet", "sft.parquet", "rl.parquet", "gold.json",
                "errors.json", "data.parquet", "dialogue.txt", "cand.txt"}  # fmt: skip
# A model trained on notes is patient data too: its tokenizer (trained on the notes for tiny models) and its
# weights may hold fragments of them. They are checked apart (see test below) and documented.
MODEL_FILES = {"tokenizer.json", "vocab.json", "merges.txt", "model.safetensors", "optimizer.pt"}


@pytest.fixture
def no_network(monkeypatch):
    """Refuse (and record) every connection that is not to the loopback interface."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def loopback(address) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and (
            host.startswith("127.") or host in ("::1", "localhost") or host.startswith("/")
        )

    def connect(self, address):
        if self.family != socket.AF_UNIX and not loopback(address):
            attempts.append(address)
            raise OSError(f"test: network call to {address} refused")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family != socket.AF_UNIX and not loopback(address):
            attempts.append(address)
            return 111
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


def _mark_discharge(path: Path) -> int:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["text"] = [
        t.replace("Name:", f"Name: {MARKER}", 1).replace(
            "Brief Hospital Course:\n", f"Brief Hospital Course:\n{MARKER} ", 1
        )
        for t in frame["text"]
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        frame.to_csv(fh, index=False)
    return int(frame["text"].str.contains(MARKER).sum())


def _gold(path: Path) -> Path:
    notes = []
    for i in range(6):
        texts = [[f"Assessment: {MARKER} knee pain day {i + j}." for j in range(3)], [f"Plan: {MARKER} rest {i}."] * 2]
        note = make_gold(
            [3, 2], case_id=f"C_{i}", dialogue=f"[doctor] hello {MARKER}. [patient] my knee {i}.", texts=texts
        )
        note.problems[0].header = f"Knee pain {MARKER}:"
        notes.append(note)
    save_notes(notes, path)
    return path


def _files_with_marker(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"report": [], "data": [], "model": []}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        elif path.suffix == ".parquet":  # compressed pages: search the decoded table
            data = pd.read_parquet(path).to_json().encode()
        if MARKER.encode() in data:
            kind = "data" if path.name in DATA_OUTPUTS else "model" if path.name in MODEL_FILES else "report"
            found[kind].append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
def test_marker_never_leaves_the_data(tmp_path, capfd, caplog, no_network):
    import torch

    torch.set_num_threads(1)
    caplog.set_level(logging.DEBUG)
    captured = []

    def cli(*argv):
        code, out, err = run_cli(argv, capfd)
        assert code == 0, err
        captured.append(out + err)
        return out

    # DRG: synth -> prepare -> split
    cli("drg", "synth", "--n-notes", "60", "--out", tmp_path / "raw", "--classes", "4", "--quiet")
    assert _mark_discharge(tmp_path / "raw" / "discharge.csv.gz") > 50
    cli("drg", "prepare", "--discharge", tmp_path / "raw" / "discharge.csv.gz", "--drgcodes",
        tmp_path / "raw" / "drgcodes.csv.gz", "--out", tmp_path / "prep")  # fmt: skip
    assert MARKER in pd.read_parquet(tmp_path / "prep" / "train.parquet")["text"].iloc[0]  # the data keeps it
    cli(
        "drg", "split", "--data", tmp_path / "prep" / "train.parquet", "--out", tmp_path / "split", "--sft-ratio", "0.5"
    )

    # PRM: synth-errors -> build -> check-labels -> train (tiny) -> score -> best-of-n
    gold = _gold(tmp_path / "prm" / "gold.json")
    errors = tmp_path / "prm" / "errors.json"
    cli("prm", "synth-errors", "--gold", gold, "--out", errors, "--per-note", "2", "--report")
    cli("prm", "build", "--gold", gold, "--errors", errors, "--out", tmp_path / "prm" / "build")
    cli("prm", "check-labels", "--errors", errors, "--gold", gold, "--json", tmp_path / "prm" / "labels.json")
    model = tmp_path / "prm" / "model"
    cli("prm", "train", "--config", REPO / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml", "--output_dir", model,
        "--data", f"[{gold}]", "--training.max_steps", "2", "--training.save_steps", "1", "--progress", "false")  # fmt: skip
    cli("prm", "score", "--model", model, "--notes", gold, "--out", tmp_path / "prm" / "scores.json")
    (tmp_path / "prm" / "dialogue.txt").write_text(f"[doctor] hi {MARKER}", encoding="utf-8")
    (tmp_path / "prm" / "cand.txt").write_text(f"Knee pain:\nPlan: {MARKER} rest.", encoding="utf-8")
    cli("prm", "best-of-n", "--model", model, "--dialogue", tmp_path / "prm" / "dialogue.txt", "--notes", gold,
        "--notes", tmp_path / "prm" / "cand.txt", "--json", tmp_path / "prm" / "ranking.json")  # fmt: skip

    logged = [r.getMessage() for r in caplog.records]
    assert not [text for text in captured if MARKER in text], "marker printed"
    assert not [m for m in logged if MARKER in m], "marker logged"
    found = _files_with_marker(tmp_path)
    assert found["report"] == [], f"marker in report/log files: {found['report']}"
    assert {Path(p).name for p in found["data"]} >= {"discharge.csv.gz", "train.parquet", "sft.parquet", "data.parquet"}
    assert no_network == [], f"network calls: {no_network}"


def test_no_network_fixture_refuses_outside_connections(no_network):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(OSError, match="refused"):
        sock.connect(("203.0.113.1", 443))
    assert no_network == [("203.0.113.1", 443)]


def test_telemetry_is_off_by_default():
    code = "import clinrl, huggingface_hub.constants as c; print(c.HF_HUB_DISABLE_TELEMETRY)"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def _all_recipes() -> list[Path]:
    return sorted(p for p in (REPO / "src" / "clinrl" / "recipes").rglob("*.yaml") if not p.name.startswith("_"))


def test_every_training_recipe_reports_nowhere():
    """TRL recipes resolve to report_to none / no hub push; no recipe names a tracker or the hub."""
    from clinrl.config import load_recipe

    trackers = re.compile(r"\b(wandb|comet|mlflow|neptune|clearml|tensorboard|dagshub|swanlab)\b", re.I)
    for path in _all_recipes():
        recipe = load_recipe(path)
        training = recipe.get("training") or {}
        assert "trl" not in recipe and "report_to" not in training, path  # the old block / the old place
        assert recipe.get("report_to", "none") in ("none", ["none"], [], None), path
        assert not training.get("push_to_hub", False) and not recipe.get("push_to_hub", False), path
        assert not trackers.search(path.read_text(encoding="utf-8")), path


def test_build_config_defaults_reporting_off(tmp_path):
    from trl import GRPOConfig

    from clinrl.config import build_config
    from clinrl.drg.train.grpo import DRGGRPOConfig

    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: d\noutput_dir: o\n", encoding="utf-8")
    cfg = build_config(DRGGRPOConfig, path, training_class=GRPOConfig)
    assert cfg.report_to == ["none"] and cfg.training["push_to_hub"] is False


SECRET = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{20,}|xox[bap]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(api[_-]?key|secret|password|passwd|bearer|auth[_-]?token)\b\s*[:=]\s*['\"]?(?!\$\{)[A-Za-z0-9+/_.-]{8,})",
    re.I,
)


def test_no_secrets_in_recipes_or_configs():
    files = [*(REPO / "src" / "clinrl" / "recipes").rglob("*"), *(REPO / "src").rglob("*.yaml"), *(REPO / "src").rglob("*.json"),
             REPO / "pyproject.toml", *(REPO / "benchmarks").rglob("*.yaml")]  # fmt: skip
    hits = []
    for path in (p for p in files if p.is_file()):
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if SECRET.search(line):
                hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:80]}")
    assert hits == []
    assert SECRET.search("api_key: sk-abcdefghijklmnopqrstuv") and SECRET.search("password = hunter2hunter2")
    assert not SECRET.search("api_key_env: OPENAI_API_KEY")  # naming an environment variable is the right way
