"""The common trainer schema (clinrl.training): every shipped recipe builds its config, ``--show-config`` of the
four trainers (keys, values, sources), misspelt keys refused with the closest names before torch/trl are
imported, the overridable keys in ``--help``, and the shipped list of library fields matches the installed
libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinrl.cli import app
from clinrl.drg.train.grpo import DRGGRPOConfig
from clinrl.drg.train.sft import DRGSFTConfig
from clinrl.notes.grpo import NotesGRPOConfig
from clinrl.prm.train import PRMTrainConfig
from clinrl.training import (
    FIELDS_FILE,
    LIBRARY_CLASSES,
    TrainerRecipe,
    describe_library,
    load_trainer_config,
    resolved_rows,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "src" / "clinrl" / "recipes"
# (argv prefix, recipe class, recipe file) of the four trainer commands
TRAINERS = {
    "drg sft": (["drg", "sft", "--config"], DRGSFTConfig, RECIPES / "drg" / "tiny" / "sft.yaml"),
    "drg grpo": (["drg", "grpo", "--config"], DRGGRPOConfig, RECIPES / "drg" / "tiny" / "best.yaml"),
    "notes grpo": (["notes", "grpo", "--config"], NotesGRPOConfig, RECIPES / "notes" / "tiny" / "grpo_prm.yaml"),
    "prm train": (["prm", "train", "--config"], PRMTrainConfig, RECIPES / "prm" / "tiny_causal.yaml"),
}


def _class_of(path: Path) -> type[TrainerRecipe]:
    if path.parent.name == "prm":
        return PRMTrainConfig
    if "notes" in path.parts:
        return NotesGRPOConfig
    return DRGSFTConfig if path.name.startswith("sft") else DRGGRPOConfig


def _plain(config: TrainerRecipe) -> dict:
    return json.loads(json.dumps(asdict(config), default=lambda value: value.value))


SHIPPED = sorted(p for p in RECIPES.rglob("*.yaml") if "accelerate" not in p.parts and not p.name.startswith("_"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(RECIPES)) for p in SHIPPED])
def test_every_shipped_recipe_is_on_the_schema(path):
    """Light (shipped field list) and full (installed library) loads agree; no old key names are left."""
    text = path.read_text(encoding="utf-8")
    assert "\ntrl:" not in text and "model_name_or_path" not in text and "\ngold:" not in text
    light = load_trainer_config(_class_of(path), path, light=True)
    full = load_trainer_config(_class_of(path), path)
    assert isinstance(full, TrainerRecipe) and _plain(light) == _plain(full)  # enums (SchedulerType) as their values
    assert full.model and full.output_dir and full.report_to == ["none"] and full.training["push_to_hub"] is False


@pytest.mark.parametrize("trainer", TRAINERS)
def test_show_config_lists_every_key_with_its_source(trainer):
    _, cls, recipe = TRAINERS[trainer]
    rows = {key: (value, source) for key, value, source in resolved_rows(cls, recipe, ["--seed", "5"])}
    # our fields, including defaults the file does not set
    assert {"model", "data", "output_dir", "seed", "report_to", "name"} <= set(rows)
    assert rows["seed"] == (5, "override")
    assert rows["output_dir"][1].endswith(".yaml") and Path(rows["output_dir"][1]).is_file()
    assert rows["description"][1] in ("default", *(str(p) for p in RECIPES.rglob("*.yaml")))
    # the whole library block, under training.
    library = json.loads(FIELDS_FILE.read_text())["classes"][cls.TRAINING_CLASS]
    training = {k.removeprefix("training."): v for k, v in rows.items() if k.startswith("training.")}
    assert set(library) - set(cls.TOP_LEVEL) <= set(training)
    assert not set(cls.TOP_LEVEL) & set(training)  # output_dir/seed/report_to come from the top level
    untouched = next(k for k in ("adam_beta2", "optim") if k in training)
    assert training[untouched][1] == f"default ({cls.TRAINING_CLASS})"


def test_show_config_sources_follow_extends_and_overrides():
    path = RECIPES / "drg" / "tiny" / "best.yaml"
    rows = {k: (v, s) for k, v, s in resolved_rows(DRGGRPOConfig, path, ["--training.learning_rate", "1e-5"])}
    assert rows["kl_schedule"] == ("cosine", str(RECIPES / "drg" / "best.yaml"))  # a parent of the parent
    assert rows["output_dir"][1] == str(path)
    assert rows["training.learning_rate"] == (1e-5, "override")
    assert rows["training.loss_type"][1] == str(RECIPES / "drg" / "best.yaml")
    assert rows["lora.r"] == (16, "default")
    prm = {k: (v, s) for k, v, s in resolved_rows(PRMTrainConfig, RECIPES / "prm" / "llama31_8b_orm.yaml")}
    assert prm["training.save_total_limit"] == (2, "default (clinrl)")  # the PRM's own default, not the library's
    assert prm["training.learning_rate"] == (3e-5, str(RECIPES / "prm" / "llama31_8b.yaml"))
    assert prm["objective"] == ("orm", str(RECIPES / "prm" / "llama31_8b_orm.yaml"))


@pytest.mark.parametrize("trainer", TRAINERS)
def test_show_config_command_prints_and_exits_0(trainer):
    argv, _, recipe = TRAINERS[trainer]
    result = CliRunner().invoke(app, [*argv, str(recipe), "--show-config", "--output_dir", "elsewhere"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line and not line.startswith("#")}
    assert lines["output_dir"].split()[1] == "elsewhere" and lines["output_dir"].endswith("# override")
    assert "training.learning_rate" in lines and "training.output_dir" not in lines


@pytest.mark.parametrize("trainer", TRAINERS)
def test_help_lists_the_overridable_keys(trainer):
    argv, cls, _ = TRAINERS[trainer]
    result = CliRunner().invoke(app, [*argv[:-1], "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for key in (
        "--model",
        "--data",
        "--output_dir",
        "--seed",
        "--report_to",
        "--training.learning_rate",
        "--training.max_steps",
        "--show-config",
    ):
        assert key in text, key
    assert ("--lora.r" in text) == (cls is not PRMTrainConfig)


@pytest.mark.parametrize(
    ("trainer", "typo", "expected"),
    [
        ("drg grpo", "--training.learnig_rate", "did you mean training.learning_rate"),
        ("drg sft", "--lora.rr", "did you mean lora.r"),
        ("notes grpo", "--rewardz", "did you mean rewards"),
        ("prm train", "--loss_mod", "did you mean loss_mode"),
        ("prm train", "--training.max_step", "did you mean training.max_steps"),
        ("prm train", "--learning_rat", "did you mean training.learning_rate?"),  # a misspelt old PRM key
        ("drg grpo", "--max_steps", "a trl.GRPOConfig argument: set training.max_steps"),
    ],
)
def test_misspelt_override_suggests_before_heavy_imports(trainer, typo, expected):
    """The did-you-mean error comes from the light check: torch/transformers/trl are never imported."""
    argv, _, recipe = TRAINERS[trainer]
    code = (
        "import sys\nfrom clinrl.cli import main\n"
        f"try:\n    main({[*argv, str(recipe), typo, '1']!r})\n"
        "finally:\n    print('HEAVY', sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert run.returncode == 2, run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and expected in error[0], error
    assert "HEAVY []" in run.stdout


@pytest.mark.parametrize("library", LIBRARY_CLASSES)
def test_shipped_library_fields_match_the_installed_libraries(library):
    """clinrl/data/training_fields.json (the names, types and defaults --show-config and the early key check
    use) is what the installed trl/transformers have; regenerate with clinrl.training.write_training_fields()."""
    shipped = json.loads(FIELDS_FILE.read_text())["classes"][library]
    installed = describe_library(library)
    assert set(shipped) == set(installed), "run clinrl.training.write_training_fields() after upgrading"
    assert {k: v["type"] for k, v in shipped.items()} == {k: v["type"] for k, v in installed.items()}
    changed = [k for k in shipped if shipped[k]["default"] != installed[k]["default"]]
    assert not changed, changed


def test_run_from_cli_leaves_the_process_group_only_after_a_finished_run(monkeypatch, tmp_path):
    """After an error a rank must not wait in the closing barrier: the other ranks may be blocked in a
    collective it never joins (the engine tier once hung 600 s that way). It exits; the launcher stops the rest."""
    import clinrl.training as training

    left = []
    monkeypatch.setattr(training, "finish_distributed", lambda: left.append(True))
    recipe = ["--output_dir", str(tmp_path / "run")]
    path = RECIPES / "prm" / "tiny_causal.yaml"
    assert training.run_from_cli(PRMTrainConfig, lambda config, resume: "trained", path, recipe, False) == "trained"
    assert left == [True]

    def fail(config, resume):
        raise RuntimeError("a rank failed")

    with pytest.raises(RuntimeError, match="a rank failed"):
        training.run_from_cli(PRMTrainConfig, fail, path, recipe, False)
    assert left == [True]  # no barrier after the error
