"""The options every trainer command shares (``drg sft``, ``drg grpo``, ``prm train``, ``notes grpo``), in one place.

:func:`trainer_command` registers a command whose parameters are the shared ones — exactly one of
``--recipe NAME`` (a packaged recipe of the command's group) or ``--config PATH`` (any YAML file),
``--workdir DIR`` (the root that relative paths in the recipe resolve against), ``--report-to`` (opt-in
tracking), ``--resume`` and ``--show-config`` — plus the recipe overrides (``--key value``) as extra arguments. The decorated
function receives them as one :class:`TrainRequest`. A new shared option goes here, once.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from clinrl.cli._show_config import SHOW_CONFIG_HELP, recipe_command, show_config_and_exit

__all__ = ["TrainRequest", "trainer_command"]

TRAIN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


class ReportTo(str, enum.Enum):
    """``--report-to`` choices (see :mod:`clinrl.tracking`)."""

    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


@dataclass(frozen=True)
class TrainRequest:
    """What a trainer command was asked to do: the recipe file, the overrides, and the shared options."""

    recipe: Path
    overrides: list[str]
    resume: bool
    workdir: Optional[Path]
    report_to: Optional[str]

    def train(self, train_from_recipe: Callable[..., Any]) -> Any:
        """``train_from_recipe(recipe, overrides, resume=…, workdir=…, report_to=…)``: the entry each trainer
        module has (``run_from_cli``, ``train_from_recipe``), with this request; returns its summary."""
        return train_from_recipe(self.recipe, self.overrides, resume=self.resume, workdir=self.workdir,
                                 report_to=self.report_to)  # fmt: skip

    def train_and_print(self, train_from_recipe: Callable[..., Any]) -> None:
        """:meth:`train`, then the summary as one JSON line on stdout."""
        typer.echo(json.dumps(self.train(train_from_recipe), default=str))


def _recipe_file(group: str, config: Optional[Path], recipe: Optional[str]) -> Path:
    """``--config PATH`` as given, or the packaged file of ``--recipe NAME`` in ``group``; exactly one."""
    from clinrl.config import resolve_recipe
    from clinrl.errors import ClinrlError

    if (config is None) == (recipe is None):
        raise ClinrlError(
            f"give exactly one of --recipe NAME (list them with `clinrl recipes {group}`) or --config PATH"
        )
    return config if config is not None else resolve_recipe(recipe, group)


def trainer_command(app: typer.Typer, name: str, *, group: str, example: str, recipe_class: str) -> Callable:
    """Register ``fn(request: TrainRequest)`` as command ``name`` of ``app`` with the shared trainer options;
    ``group`` is the recipe group ``--recipe`` looks in, ``example`` a recipe name for the help text,
    ``recipe_class`` the config class (``"module:Class"``, imported lazily) behind ``--show-config`` and the
    override list that ``--help`` ends with."""

    def register(fn: Callable[[TrainRequest], None]) -> Callable[[TrainRequest], None]:
        def command(
            ctx: typer.Context,
            recipe: Optional[str] = typer.Option(
                None, "--recipe", help=f"Packaged recipe name, e.g. {example} (list: `clinrl recipes {group}`)."
            ),
            config: Optional[Path] = typer.Option(None, "--config", help="Or a recipe YAML file of your own."),
            workdir: Optional[Path] = typer.Option(
                None,
                "--workdir",
                help="Root for relative paths in the recipe (default: $CLINRL_HOME, else the current folder).",
            ),
            report_to: Optional[ReportTo] = typer.Option(
                None,
                "--report-to",
                case_sensitive=False,
                help="Track the run (default: the recipe's report_to, which is none unless it names a tracker).",
            ),
            resume: bool = typer.Option(
                False, "--resume", help="Continue from the last complete checkpoint in output_dir."
            ),
            show_config: bool = typer.Option(False, "--show-config", help=SHOW_CONFIG_HELP),
        ) -> None:
            path = _recipe_file(group, config, recipe)
            if show_config:
                show_config_and_exit(recipe_class, path, ctx.args)
            fn(TrainRequest(
                recipe=path, overrides=list(ctx.args), resume=resume, workdir=workdir,
                report_to=report_to.value if report_to is not None else None,
            ))  # fmt: skip

        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        app.command(name, context_settings=TRAIN_CONTEXT, cls=recipe_command(recipe_class))(command)
        return fn

    return register
