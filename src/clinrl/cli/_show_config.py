"""``--show-config`` and the override list in ``--help`` of the four trainer commands.

Kept apart from the commands so that each command adds one option and one call. The help text is built when
``--help`` is shown (a lazy ``epilog``), so importing the CLI does not import the trainers' config modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from clinrl.registry import import_target

SHOW_CONFIG_HELP = "Print the resolved recipe (every key, its value and where it came from) and exit; trains nothing."


def recipe_command(target: str) -> type[TyperCommand]:
    """A command class whose ``--help`` ends with the overridable keys of recipe class ``target``
    (``"clinrl.drg.train.grpo:DRGGRPOConfig"``)."""

    class RecipeCommand(TyperCommand):
        @property
        def epilog(self) -> str:  # type: ignore[override]
            from clinrl.training import override_help

            return override_help(import_target(target))

        @epilog.setter
        def epilog(self, value: Any) -> None:  # click sets it in __init__; the property wins
            pass

    return RecipeCommand


def show_config_and_exit(target: str, path: Path, overrides: Sequence[str]) -> None:
    """Print :func:`clinrl.training.show_config` for ``path`` with ``overrides`` and exit 0."""
    from clinrl.training import show_config

    typer.echo(show_config(import_target(target), path, list(overrides)))
    raise typer.Exit(0)
