"""The ``clinrl`` command line. Each group lives in its own module; this one wires them together.

User mistakes (:class:`clinrl.errors.ClinrlError`) print one clear line and exit with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from clinrl import __version__
from clinrl.cli.drg import app as drg_app
from clinrl.cli.prm import app as prm_app
from clinrl.errors import ClinrlError

app = typer.Typer(
    name="clinrl",
    help="Train and verify clinical LLMs with reinforcement learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(drg_app, name="drg", help="MS-DRG coding: data, rewards, training, evaluation.")
app.add_typer(prm_app, name="prm", help="Process-supervised reward models for clinical notes.")


@app.command()
def version() -> None:
    """Print the clinrl version."""
    typer.echo(__version__)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything the demo writes."),
    n_notes: int = typer.Option(4000, "--n-notes", help="Synthetic discharge notes for the DRG part."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Run both systems' pipelines end to end on built-in data (CPU)."""
    from clinrl.demo import run_demo

    run_demo(out, n_notes=n_notes, seed=seed)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        # Without standalone mode click returns (rather than raises) the code of a typer.Exit.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except ClinrlError as err:
        typer.secho(f"error: {err}", err=True, fg="red")
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as err:  # click's own usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(130)
        raise
