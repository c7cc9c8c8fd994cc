"""The command-line vocabulary (docs/cli.md): --version, --log-level, choices, plain flags, hidden aliases,
the OpenAI option block. Everything here runs without a model (seconds)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from clinrl import __version__
from clinrl.cli._openai import OpenAIOptions, openai_options
from tests.reliability.cli import run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``clinrl argv``, colour codes removed."""
    code, out, err = run_cli(argv, capsys)
    return code, ANSI.sub("", out), ANSI.sub("", err)


def _help(argv, capsys) -> str:
    code, out, err = _run([*argv, "--help"], capsys)
    assert code == 0, err
    return out


def test_version_option_and_command_agree(capsys):
    assert _run(["--version"], capsys)[:2] == (0, f"{__version__}\n")
    assert _run(["version"], capsys)[:2] == (0, f"{__version__}\n")


@pytest.fixture
def clinrl_logger():
    """The ``clinrl`` logger's level and the root handlers, restored after the test."""
    logger, root = logging.getLogger("clinrl"), logging.getLogger()
    level, handlers = logger.level, list(root.handlers)
    yield logger
    logger.setLevel(level)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)


def test_log_level_sets_clinrl_loggers_only(clinrl_logger, capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.NOTSET)
    assert _run(["--log-level", "debug", "version"], capsys)[0] == 0
    assert clinrl_logger.getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("clinrl.drg.eval").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("httpx").isEnabledFor(logging.DEBUG)  # third-party loggers stay at warnings
    assert _run(["--log-level", "error", "version"], capsys)[0] == 0
    assert not logging.getLogger("clinrl.serve").isEnabledFor(logging.WARNING)


def test_log_level_from_the_environment_and_refused_when_unknown(clinrl_logger, capsys, monkeypatch):
    monkeypatch.setenv("CLINRL_LOG_LEVEL", "info")
    assert _run(["version"], capsys)[0] == 0
    assert clinrl_logger.getEffectiveLevel() == logging.INFO
    code, _, err = _run(["--log-level", "loud", "version"], capsys)
    assert code == 2 and "'loud' is not one of 'debug', 'info', 'warning', 'error'" in err
    assert "Traceback" not in err


def test_a_bad_choice_is_typers_one_line_error_before_anything_loads(tmp_path, capsys):
    code, _, err = _run(["prm", "eval-selection", "--gold", tmp_path / "missing.json", "--errors",
                         tmp_path / "missing.json", "--scorer", "medoidd", "--json", tmp_path / "r.json"], capsys)  # fmt: skip
    assert code == 2
    assert "Invalid value for '--scorer'" in err and "'medoidd' is not one of 'medoid', 'random'" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "argv, option, choices",
    [
        (["drg", "prepare"], "--split-by", "<subject|admission>"),
        (["drg", "eval"], "--backend", "<transformers|vllm|openai>"),
        (["drg", "distill-cot"], "--variant", "<explain|differential>"),
        (["prm", "eval-preference"], "--scorer", "<prm|orm|judge|lexical|random|length|first>"),
        (["prm", "score"], "--probability", "<full|binary>"),
    ],
)
def test_help_lists_the_choices(argv, option, choices, capsys):
    text = re.sub(r"[│\s]+", " ", _help(argv, capsys))  # rich wraps long choice lists across lines
    assert re.search(rf"{option} {re.escape(choices[:12])}", text), text


def test_boolean_flags_are_plain_in_help_and_take_no_value(tmp_path, capsys):
    text = _help(["drg", "split"], capsys)
    row = next(line for line in text.splitlines() if "--small" in line)
    assert "<bool>" not in row and "DRG-small" in row
    code, _, err = _run(["drg", "split", "--data", tmp_path / "x.parquet", "--out", tmp_path / "o", "--small",
                         "true"], capsys)  # fmt: skip
    assert code == 2 and "true" in err  # a flag takes no value: `true` is an unexpected extra argument


def test_hidden_alias_still_works_and_warns(tmp_path, capsys):
    code, out, err = _run(["drg", "synth", "--n", "12", "--out", tmp_path / "s", "--classes", "3", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(out)["notes"] == 12
    assert "warning: --n is deprecated, use --n-notes" in err
    assert "--n " not in _help(["drg", "synth"], capsys).replace("--n-notes", "")


def test_synth_n_notes_is_required(tmp_path, capsys):
    code, _, err = _run(["drg", "synth", "--out", tmp_path / "s"], capsys)
    assert code == 2 and "--n-notes" in err


def test_openai_block_is_the_same_on_every_endpoint_command(capsys):
    block = ("--endpoint", "--api-key-env", "--concurrency", "--timeout-s", "--request-retries", "--cache-dir")
    for argv in (["drg", "distill-cot"], ["drg", "eval"], ["drg", "predict"], ["prm", "synth-errors"],
                 ["prm", "structure"]):  # fmt: skip
        text = _help(argv, capsys)
        for option in block:
            assert option in text, (argv, option)
        assert "--timeout " not in text and "--max-tokens" not in text  # old spellings hidden


def test_endpoint_commands_refuse_a_missing_endpoint_with_one_line(tmp_path, capsys):
    gold = tmp_path / "gold.json"
    gold.write_text("[]")
    for argv in (
        ["prm", "synth-errors", "--gold", gold, "--out", tmp_path / "e.json", "--backend", "openai"],
        ["prm", "structure", gold, "--out", tmp_path / "s.json", "--backend", "openai", "--model", "m"],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and "needs --endpoint URL and --model NAME" in err and "Traceback" not in err


def test_old_timeout_spelling_reaches_the_client(monkeypatch):
    seen = {}

    @openai_options
    def command(name: str = "x", openai: OpenAIOptions = OpenAIOptions()) -> None:
        seen["openai"] = openai

    import typer
    from typer.testing import CliRunner

    tiny = typer.Typer()
    tiny.command()(command)
    result = CliRunner().invoke(tiny, ["--timeout", "7", "--concurrency", "3"])
    assert result.exit_code == 0, result.output
    assert seen["openai"].timeout_s == 7.0 and seen["openai"].concurrency == 3
    result = CliRunner().invoke(tiny, ["--timeout-s", "9"])
    assert seen["openai"].timeout_s == 9.0


def test_global_quiet_turns_every_progress_bar_off():
    from clinrl.cli._common import progress_on, set_global_quiet

    try:
        set_global_quiet(True)
        assert progress_on(False) is False
    finally:
        set_global_quiet(False)
    assert progress_on(False) is True and progress_on(True) is False


def test_root_help_names_the_conventions(capsys):
    assert "docs/cli.md" in _help([], capsys)
