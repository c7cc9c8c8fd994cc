"""The options every trainer shares: packaged recipes (``clinrl recipes``, ``--recipe``/``--config``), the root of
relative recipe paths (``--workdir`` > ``$CLINRL_HOME`` > the current folder) and opt-in tracking
(``--report-to``). Nothing here trains: every case stops before a model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinrl import tracking
from clinrl.cli import app
from clinrl.config import RECIPE_GROUPS, RECIPES_ROOT, list_recipes, resolve_paths, resolve_recipe
from clinrl.drg.train.sft import load_sft_config
from clinrl.errors import ClinrlError
from clinrl.prm.train import PRMTrainConfig
from tests.reliability.cli import assert_clean_error, run_cli

TRAINERS = {  # command → (recipe group, a recipe name with a typo, the name it should suggest)
    ("drg", "sft"): ("drg", "tiny/sfft", "tiny/sft"),
    ("drg", "grpo"): ("drg", "bets", "best"),
    ("prm", "train"): ("prm", "cpu_minlm", "cpu_minilm"),
    ("notes", "grpo"): ("notes", "grpo_prn", "grpo_prm"),
}


# ----------------------------------------------------------------------------------------- listing and locating


def test_recipes_lists_every_packaged_recipe_with_a_description(capsys):
    code, out, _ = run_cli(["recipes"], capsys)
    assert code == 0
    listed = dict(line.split("\t", 1) for line in out.splitlines() if line and not line.startswith("#"))
    on_disk = {f"{p.parent.relative_to(RECIPES_ROOT).as_posix()}/{p.stem}"
               for p in RECIPES_ROOT.rglob("*.yaml") if not p.name.startswith("_")}  # fmt: skip
    assert set(listed) == on_disk and {n.split("/")[0] for n in listed} == set(RECIPE_GROUPS)
    assert all(desc.strip() for desc in listed.values())
    code, out, _ = run_cli(["recipes", "prm"], capsys)
    assert code == 0 and {line.split("/")[0] for line in out.splitlines()} == {"prm"}
    code, out, _ = run_cli(["drg", "recipes"], capsys)  # names as --recipe takes them
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == list_recipes("drg")


def test_recipes_path_prints_the_packaged_file(capsys):
    code, out, _ = run_cli(["recipes", "--path", "accelerate/zero3_cpu"], capsys)
    assert code == 0 and Path(out.strip()) == RECIPES_ROOT / "accelerate" / "zero3_cpu.yaml"
    assert_clean_error(["recipes", "--path", "accelerate/zero3cpu"], capsys, "did you mean accelerate/zero3_cpu")
    assert_clean_error(["recipes", "nosuchgroup"], capsys, "unknown recipe group", "accelerate")


# ------------------------------------------------------------------------------- --recipe / --config, every trainer


@pytest.mark.parametrize("command", list(TRAINERS), ids="-".join)
def test_every_trainer_takes_a_recipe_name_or_a_file(command, capsys):
    group, typo, suggestion = TRAINERS[command]
    file = resolve_recipe(suggestion, group)
    assert file.is_file() and resolve_recipe(f"{group}/{suggestion}", group) == file  # as `clinrl recipes` prints it
    assert_clean_error([*command], capsys, "exactly one of --recipe NAME", f"clinrl recipes {group}")
    assert_clean_error([*command, "--recipe", suggestion, "--config", file], capsys, "exactly one of")
    assert_clean_error([*command, "--recipe", typo], capsys, f"did you mean {suggestion}", f"clinrl recipes {group}")
    help_text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    for option in ("--recipe", "--config", "--workdir", "--report-to", "--resume"):
        assert option in help_text, option
    assert all(choice in help_text for choice in tracking.CHOICES)


# ------------------------------------------------------------------------------------ the root of relative paths


def _tiny_inputs(root: Path) -> None:
    """The two inputs the tiny/sft recipe reads, as empty stand-ins (nothing loads them here)."""
    (root / "runs" / "tiny-drg" / "model").mkdir(parents=True)
    (root / "runs" / "tiny-drg" / "split").mkdir()
    (root / "runs" / "tiny-drg" / "split" / "sft.parquet").touch()


def test_relative_paths_resolve_against_workdir_then_home_then_cwd(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        _tiny_inputs(root)
    cfg = load_sft_config(resolve_recipe("tiny/sft"))
    monkeypatch.delenv("CLINRL_HOME", raising=False)
    monkeypatch.chdir(a)
    assert resolve_paths(cfg).model == str(a / "runs/tiny-drg/model")  # the current folder
    monkeypatch.setenv("CLINRL_HOME", str(b))
    home = resolve_paths(cfg)
    assert home.model == str(b / "runs/tiny-drg/model") and home.data == str(b / "runs/tiny-drg/split/sft.parquet")
    assert home.output_dir == str(b / "runs/tiny-drg/runs/sft")  # outputs need not exist yet
    assert resolve_paths(cfg, a).output_dir == str(a / "runs/tiny-drg/runs/sft")  # --workdir beats $CLINRL_HOME
    # absolute paths and hub names are left alone
    other = load_sft_config(
        resolve_recipe("tiny/sft"), {"model": "Qwen/Qwen2.5-0.5B", "output_dir": str(tmp_path / "o")}
    )
    kept = resolve_paths(other, a)
    assert kept.model == "Qwen/Qwen2.5-0.5B" and kept.output_dir == str(tmp_path / "o")


def test_prm_aliases_stay_and_lists_resolve(tmp_path):
    (tmp_path / "gold.json").touch()
    cfg = PRMTrainConfig(output_dir="runs/prm", model="tiny:qwen2", data=["demo", "gold.json"], tokens="llama3")
    out = resolve_paths(cfg, tmp_path)
    assert out.data == ["demo", str(tmp_path / "gold.json")] and out.model == "tiny:qwen2"
    assert out.tokens == "llama3" and out.output_dir == str(tmp_path / "runs/prm")
    assert resolve_paths(PRMTrainConfig(output_dir="o", data=["demo"]), tmp_path).model == "minilm"


def test_a_missing_input_names_the_resolved_path_and_the_root(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CLINRL_HOME", raising=False)
    line = assert_clean_error(["drg", "sft", "--recipe", "tiny/sft", "--workdir", tmp_path], capsys,
                              str(tmp_path / "runs/tiny-drg/model"), "--workdir", "clinrl drg tiny-workspace")  # fmt: skip
    assert f"resolve against {tmp_path} (--workdir" in line
    monkeypatch.setenv("CLINRL_HOME", str(tmp_path / "nowhere"))
    assert_clean_error(["prm", "train", "--recipe", "tiny_causal"], capsys, "$CLINRL_HOME", "nowhere", "not a folder")
    with pytest.raises(ClinrlError, match="data: not found: .*missing.json.*resolve against"):
        resolve_paths(PRMTrainConfig(output_dir="o", data=["missing.json"]), tmp_path)


# ----------------------------------------------------------------------------------------------------- tracking


def test_report_to_sets_the_tracker_of_every_kind_of_recipe(monkeypatch):
    monkeypatch.setattr(tracking, "_installed", lambda modules: True)
    sft = load_sft_config(resolve_recipe("tiny/sft"))
    assert sft.report_to == ["none"]  # nothing is reported unless asked
    assert tracking.apply_report_to(sft).report_to == ["none"]
    assert tracking.apply_report_to(sft, "tensorboard").report_to == ["tensorboard"]
    prm = PRMTrainConfig(output_dir="o", data=["demo"])
    assert tracking.apply_report_to(prm).report_to == ["none"]
    assert tracking.apply_report_to(prm, "mlflow").report_to == ["mlflow"]
    with pytest.raises(ClinrlError, match="'all' would report to every installed tracker"):
        tracking.apply_report_to(load_sft_config(resolve_recipe("tiny/sft"), {"report_to": "all"}))


@pytest.mark.parametrize(
    "command", [("drg", "grpo", "--recipe", "tiny/best"), ("prm", "train", "--recipe", "tiny_causal")]
)
def test_a_tracker_that_is_not_installed_fails_before_training(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tracking, "_installed", lambda modules: False)
    assert_clean_error([*command, "--report-to", "wandb", "--output_dir", tmp_path / "o"], capsys,
                       "--report-to", "'wandb' is not installed", "clinrl[tracking]")  # fmt: skip
    assert not (tmp_path / "o").exists()
