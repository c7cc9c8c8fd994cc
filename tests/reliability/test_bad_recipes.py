"""Broken YAML recipes through ``clinrl drg sft|grpo`` and ``clinrl prm train``: one clean error line, exit 2,
before any model is loaded. Complements tests/test_config.py (typing, overrides, cycles)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.config import RecipeError, coerce
from tests.reliability.cli import assert_clean_error

REPO = Path(__file__).resolve().parents[2]
SFT = REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "sft.yaml"
GRPO = REPO / "src" / "clinrl" / "recipes" / "drg" / "tiny" / "best.yaml"
PRM = REPO / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml"

# (id, recipe text after ``extends: <base>``, texts the error line must hold)
CASES = [
    ("unknown key", "bogus_key: 1\n", ["bogus_key", "unknown key"]),
    ("wrong type", "max_prompt_tokens: lots\n", ["max_prompt_tokens", "'lots'"]),
    ("bool for int", "max_prompt_tokens: true\n", ["max_prompt_tokens"]),
    ("unknown training key", "training:\n  learning_rat: 1.0e-5\n", ["training.learning_rat", "did you mean"]),
    ("training list for int", "training:\n  max_steps: [1, 2]\n", ["training.max_steps", "integer"]),
    ("training not a mapping", "training: 5\n", ["'training'", "mapping"]),
    ("old trl block, bad key", "trl:\n  learning_rat: 1.0e-5\n", ["training.learning_rat"]),
    ("NaN learning rate", "training:\n  learning_rate: .nan\n", ["training.learning_rate", "nan"]),
    ("duplicate key", "name: a\nname: b\n", ["'name' given twice", "line 3"]),
    ("unclosed list", "name: [a, b\n", ["not valid YAML", "line"]),
    ("python tag", "name: !!python/object/apply:os.system ['echo hi']\n", ["not valid YAML", "python/object"]),
    ("NUL character", "name: a\x00b\n", ["not valid YAML"]),
    ("tab indentation", "training:\n\tmax_steps: 1\n", ["not valid YAML"]),
    ("output_dir under training", "training:\n  output_dir: x\n", ["output_dir", "top level"]),
    ("seed under training", "training:\n  seed: 1\n", ["seed", "top level"]),
]
DRG_ONLY = {"wrong type", "bool for int"}  # the PRM has no max_prompt_tokens (an unknown key there)


def _recipe(tmp_path: Path, base: Path, body: str | bytes) -> Path:
    path = tmp_path / "bad.yaml"
    head = f"extends: {base}\n".encode()
    path.write_bytes(head + (body if isinstance(body, bytes) else body.encode()))
    return path


@pytest.mark.parametrize(("case", "body", "expected"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["sft", "grpo", "prm"])
def test_broken_recipes_are_one_clean_cli_error(tmp_path, capsys, case, body, expected, command):
    if command == "prm" and case in DRG_ONLY:
        expected = []
    base = {"sft": SFT, "grpo": GRPO, "prm": PRM}[command]
    path = _recipe(tmp_path, base, body)
    argv = ["prm", "train", "--config", path] if command == "prm" else ["drg", command, "--config", path]
    assert_clean_error(argv, capsys, *expected)


@pytest.mark.parametrize("command", [["drg", "sft", "--config"], ["prm", "train", "--config"]])
def test_undecodable_missing_and_non_mapping_recipes(tmp_path, capsys, command):
    latin = _recipe(tmp_path, SFT, "name: caf\xe9\n".encode("latin-1"))
    assert_clean_error([*command, latin], capsys, "not UTF-8")
    assert_clean_error([*command, tmp_path / "none.yaml"], capsys, "not found")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert_clean_error([*command, tmp_path / "list.yaml"], capsys, "mapping")
    (tmp_path / "up.yaml").write_text("extends: /etc/hostname\n")
    assert_clean_error([*command, tmp_path / "up.yaml"], capsys)


def test_bad_overrides_on_the_command_line(tmp_path, capsys):
    assert_clean_error(["drg", "sft", "--config", SFT, "--training.max_steps", "many"], capsys, "training.max_steps")
    assert_clean_error(["drg", "sft", "--config", SFT, "--nonsense", "1"], capsys, "nonsense")
    assert_clean_error(["drg", "sft", "--config", SFT, "--limit"], capsys, "no value")


def test_model_that_cannot_be_loaded_is_a_clean_error(tmp_path, capsys):
    """A model that cannot be loaded used to end in an OSError traceback."""
    assert_clean_error(
        ["drg", "sft", "--config", SFT, "--model", tmp_path / "missing"], capsys, "model folder not found"
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "rl.parquet").touch()  # inputs are checked for existence before the model loads: give one
    argv = [
        "drg",
        "grpo",
        "--config",
        GRPO,
        "--model",
        tmp_path / "empty",
        "--data",
        tmp_path / "rl.parquet",
        "--output_dir",
        tmp_path / "out",
    ]
    line = assert_clean_error(argv, capsys, "empty")
    assert "cannot load the tokenizer" in line


# ------------------------------------------------------------------------------- property: typing never crashes

ANNOTATIONS = [int, float, bool, str, int | None, float | None, list[str], list[int], dict, list[str] | str]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(value=VALUES, annotation=st.sampled_from(ANNOTATIONS))
def test_coerce_returns_the_type_or_a_recipe_error(value, annotation):
    try:
        out = coerce(value, annotation, "k", "r.yaml")
    except RecipeError as err:
        assert "key 'k" in str(err) and "r.yaml" in str(err)
        return
    if annotation in (int, float, bool, str):
        assert type(out) is annotation
    if annotation is float:
        assert out == out  # never NaN
