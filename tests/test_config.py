"""Recipe loading: extends (with the source of every key), dotted overrides typed by our dataclass and TRL's,
clear errors with the closest valid names, the ``trl:`` → ``training:`` alias."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from trl import GRPOConfig

from clinrl.config import (
    RecipeError,
    apply_overrides,
    build_config,
    list_recipes,
    load_recipe,
    load_recipe_sources,
    parse_overrides,
    resolve_recipe,
)
from clinrl.training import LoraOptions


@dataclass
class Toy:
    model: str
    steps: int = 1
    rate: float = 0.5
    flag: bool = False
    names: list[str] = field(default_factory=list)
    maybe: int | None = None
    lora: LoraOptions = field(default_factory=LoraOptions)
    training: dict = field(default_factory=dict)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_deep_merges_and_child_wins(tmp_path):
    base = write(tmp_path / "base.yaml", "model: a\nsteps: 3\ntraining:\n  beta: 0.04\n  loss_type: grpo\n")
    frag = write(tmp_path / "frag.yaml", "steps: 5\n")
    child = write(
        tmp_path / "sub" / "child.yaml", "extends: [../base.yaml, ../frag.yaml]\ntraining:\n  loss_type: dapo\n"
    )
    data = load_recipe(child)
    assert data == {"model": "a", "steps": 5, "training": {"beta": 0.04, "loss_type": "dapo"}}
    _, sources = load_recipe_sources(child)
    assert sources == {
        "model": str(base.resolve()),
        "steps": str(frag.resolve()),
        "training.beta": str(base.resolve()),
        "training.loss_type": str(child.resolve()),
    }


def test_old_trl_block_and_overrides_are_read_as_training(tmp_path, caplog):
    """``trl:`` (and ``--trl.x``) is the old name of ``training:``: read with one warning; its seed/report_to
    move to the top level; both blocks in one file is an error."""
    import clinrl.config as config

    config._warned_old_key = False
    base = write(tmp_path / "base.yaml", "model: a\ntraining:\n  beta: 0.04\n")
    old = write(tmp_path / "old.yaml", "extends: base.yaml\ntrl:\n  loss_type: dapo\n  seed: 7\n")
    with caplog.at_level("WARNING", logger="clinrl.config"):
        assert load_recipe(old) == {"model": "a", "seed": 7, "training": {"beta": 0.04, "loss_type": "dapo"}}
        recipe, sources, overrides, _ = config.resolve_with_sources(base, ["--trl.beta", "0.1", "--trl.report_to", "x"])
    assert overrides == {"training.beta": "0.1", "report_to": "x"} and sources["training.beta"] == "override"
    assert recipe["training"]["beta"] == "0.1" and recipe["report_to"] == "x"
    assert sum("'trl' is now 'training'" in r.getMessage() for r in caplog.records) == 1  # once per process
    both = write(tmp_path / "both.yaml", "trl:\n  beta: 1\ntraining:\n  beta: 2\n")
    with pytest.raises(RecipeError, match="both 'trl' and 'training'"):
        load_recipe(both)


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(RecipeError, match="extends itself"):
        load_recipe(tmp_path / "a.yaml")


def test_overrides_are_typed_by_field(tmp_path):
    path = write(tmp_path / "r.yaml", "model: m\n")
    cfg = build_config(
        Toy,
        path,
        [
            "--steps",
            "7",
            "--rate=1e-5",
            "--flag",
            "true",
            "--names",
            "a,b",
            "--maybe",
            "null",
            "--lora.r",
            "4",
            "--training.learning_rate",
            "3e-6",
            "--training.num_generations=4",
            "--training.report_to",
            "none",
        ],
        training_class=GRPOConfig,
    )
    assert (cfg.steps, cfg.rate, cfg.flag, cfg.names, cfg.maybe, cfg.lora.r) == (7, 1e-5, True, ["a", "b"], None, 4)
    assert cfg.training["learning_rate"] == pytest.approx(3e-6) and isinstance(cfg.training["learning_rate"], float)
    assert cfg.training["num_generations"] == 4
    assert cfg.training["report_to"] == "none"


def test_yaml_floats_without_a_dot_become_numbers(tmp_path):
    # PyYAML reads 3e-6 as a string; the field type decides
    path = write(tmp_path / "r.yaml", "model: m\nrate: 3e-6\ntraining:\n  learning_rate: 1e-5\n")
    cfg = build_config(Toy, path, training_class=GRPOConfig)
    assert cfg.rate == pytest.approx(3e-6) and cfg.training["learning_rate"] == pytest.approx(1e-5)


def test_reporting_off_and_no_hub_by_default(tmp_path):
    cfg = build_config(Toy, write(tmp_path / "r.yaml", "model: m\n"), training_class=GRPOConfig)
    assert cfg.training["push_to_hub"] is False


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["--stepz", "1"], "stepz"),
        (["--steps", "many"], "steps"),
        (["--training.learning_rat", "1"], "training.learning_rat"),
        (["--training.num_generations", "2.5"], "training.num_generations"),
        (["--lora.rank", "2"], "lora.rank"),
        (["--flag", "maybe"], "flag"),
    ],
)
def test_bad_overrides_name_key_and_file(tmp_path, overrides, key):
    path = write(tmp_path / "r.yaml", "model: m\n")
    with pytest.raises(RecipeError) as err:
        build_config(Toy, path, overrides, training_class=GRPOConfig)
    assert repr(key) in str(err.value) and "r.yaml" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "suggestion"),
    [
        (["--stepz", "1"], "did you mean steps"),
        (["--lora.rank", "2"], "lora.r"),
        (["--training.learnig_rate", "1"], "did you mean training.learning_rate"),
    ],
)
def test_misspelt_keys_get_the_closest_names(tmp_path, overrides, suggestion):
    with pytest.raises(RecipeError, match=suggestion):
        build_config(Toy, write(tmp_path / "r.yaml", "model: m\n"), overrides, training_class=GRPOConfig)


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="'model'"):
        build_config(Toy, write(tmp_path / "r.yaml", "steps: 2\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        build_config(Toy, write(tmp_path / "bad.yaml", "model: [\n"))
    with pytest.raises(RecipeError, match="not found"):
        build_config(Toy, tmp_path / "nope.yaml")


def test_parse_overrides_forms_and_errors():
    assert parse_overrides(["--a.b", "1", "--c-d=x=y"]) == {"a.b": "1", "c_d": "x=y"}
    with pytest.raises(RecipeError, match="no value"):
        parse_overrides(["--a"])
    with pytest.raises(RecipeError, match="unexpected argument"):
        parse_overrides(["value"])
    assert apply_overrides({"training": {"beta": 1}}, {"training.loss_type": "dapo"}) == {
        "training": {"beta": 1, "loss_type": "dapo"}
    }


def test_recipe_names_resolve():
    names = list_recipes()
    assert "best" in names and "tiny/best" in names and not any(n.split("/")[-1].startswith("_") for n in names)
    assert resolve_recipe("best").name == "best.yaml"
    with pytest.raises(RecipeError, match="unknown recipe"):
        resolve_recipe("does_not_exist")


def test_cli_usage_errors_exit_2_without_traceback(capsys):
    import pytest

    from clinrl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["drg", "split"])  # a required option missing
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Missing" in err and "Traceback" not in err


def test_moved_run_helpers_still_import_from_config_with_a_warning():
    """resume_checkpoint & co. moved to clinrl.training (load_tokenizer to clinrl.llm.loading); the old import
    keeps working for one release so that code written against it does not break."""
    import clinrl.config as config
    from clinrl import training
    from clinrl.llm import loading

    with pytest.warns(DeprecationWarning, match="moved to clinrl.training.resume_checkpoint"):
        assert config.resume_checkpoint is training.resume_checkpoint
    with pytest.warns(DeprecationWarning, match="clinrl.llm.loading"):
        assert config.load_tokenizer is loading.load_tokenizer
    with pytest.raises(AttributeError):
        config.no_such_name  # noqa: B018
