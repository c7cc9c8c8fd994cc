"""The ``clinrl`` command line. Each group lives in its own module; this one wires them together.

User mistakes (:class:`clinrl.errors.ClinrlError`) print one clear line and exit with status 2.

The commands only parse and call the Python API. Each imports what it runs inside its own body (the one
place where clinrl's own modules are imported lazily as a rule): the library pulls pandas, torch,
transformers or TRL, and ``clinrl --help``, a usage error or ``--show-config`` must not wait for them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from clinrl import __version__
from clinrl.cli._common import LogLevel, configure_logging, set_global_quiet
from clinrl.cli.drg import app as drg_app
from clinrl.cli.notes import app as notes_app
from clinrl.cli.prm import app as prm_app
from clinrl.cli.recipes import recipes_command
from clinrl.cli.serve import serve_command
from clinrl.errors import ClinrlError, one_line

app = typer.Typer(
    name="clinrl",
    help="Train and verify clinical LLMs with reinforcement learning. Options mean the same in every command: docs/cli.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(drg_app, name="drg", help="MS-DRG coding: data, rewards, training, evaluation.")
app.add_typer(prm_app, name="prm", help="Process-supervised reward models for clinical notes.")
app.add_typer(notes_app, name="notes", help="Note generation trained with a PRM reward (GRPO).")
app.command("serve")(serve_command)
app.command("recipes")(recipes_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    log_level: Optional[LogLevel] = typer.Option(
        None,
        "--log-level",
        envvar="CLINRL_LOG_LEVEL",
        help="Level of clinrl's log lines on stderr (default: warnings).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars in any command."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the clinrl version and exit."
    ),
) -> None:
    """Global options: logging and progress bars for whatever command follows, and the version."""
    configure_logging(log_level)
    set_global_quiet(quiet)


@app.command()
def version() -> None:
    """Print the clinrl version (also `clinrl --version`)."""
    typer.echo(__version__)


@app.command()
def merge(
    adapter: Path = typer.Option(..., "--adapter", help="A LoRA run's output folder (adapter_config.json inside)."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged full model."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the one the adapter names)."),
    dtype: Literal["float32", "bfloat16", "float16"] = typer.Option(
        "float32", "--dtype", help="Weights of the merged model."
    ),
) -> None:
    """Fold a LoRA adapter into its base model: a full model that from_pretrained, serve and vLLM load."""
    import json

    from clinrl.llm.merge import merge_adapter

    typer.echo(json.dumps(merge_adapter(adapter, out, base=base, dtype=dtype)))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(
        False, "--quick", help="Every stage at minimal sizes (a minute or two; numbers meaningless)."
    ),
    only: Optional[Literal["drg", "prm"]] = typer.Option(None, "--only", help="Run one half."),
    n_notes: Optional[int] = typer.Option(
        None, "--n-notes", min=100, help="Synthetic discharge notes for the DRG half."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: 1 for DRG, 2 for the PRM)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Run both systems end to end on built-in data (CPU, ≤ 25 min on 2 cores) and write report.html."""
    from dataclasses import replace

    from clinrl.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if quick else DemoConfig()
    cfg = replace(
        cfg,
        seed=seed,
        **({"n_notes": n_notes} if n_notes else {}),
        **({"drg_threads": threads, "prm_threads": threads} if threads else {}),
    )
    run_demo(out, cfg, parts=(only,) if only else ("drg", "prm"))


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        # Without standalone mode click returns (rather than raises) the code of a typer.Exit.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except ClinrlError as err:
        typer.secho(f"error: {one_line(err)}", err=True, fg="red")  # always one line, capped
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as err:  # click's usage errors (typer ≥ 0.26 raises those of its vendored click)
        if isinstance(err, _click_classes("ClickException")):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, _click_classes("Abort")):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise


def _click_classes(name: str) -> tuple[type, ...]:
    """``click.exceptions.<name>`` of click itself and of typer's vendored copy, where present."""
    import importlib

    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)
