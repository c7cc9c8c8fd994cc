"""``clinrl recipes [GROUP] [--path GROUP/NAME]``: the packaged recipes, listed or located.

Recipes ship inside the package (``clinrl/recipes/{drg,prm,notes,accelerate}``), so they are the same after
``pip install clinrl`` as in a checkout. ``--path`` prints a file's location: to pass an accelerate config to
``accelerate launch --config_file``, or to copy a recipe as the start of one's own (``--config PATH``).
"""

from __future__ import annotations

from typing import Optional

import typer

__all__ = ["print_group", "recipes_command"]

# How each group's recipes are used, printed above the group's list.
_USE = {
    "drg": "clinrl drg sft|grpo --recipe NAME",
    "prm": "clinrl prm train --recipe NAME",
    "notes": "clinrl notes grpo --recipe NAME",
    "accelerate": 'accelerate launch --config_file "$(clinrl recipes --path accelerate/NAME)" -m clinrl …',
}


def print_group(group: str, *, prefix: bool = True) -> None:
    """One line per recipe of ``group``: ``group/name<TAB>description`` (``name<TAB>…`` without ``prefix``)."""
    from clinrl.config import list_recipes, recipe_description, resolve_recipe

    for name in list_recipes(group):
        shown = f"{group}/{name}" if prefix else name
        typer.echo(f"{shown}\t{recipe_description(resolve_recipe(name, group))}")


def recipes_command(
    group: Optional[str] = typer.Argument(None, help="drg, prm, notes or accelerate (default: all)."),
    path: Optional[str] = typer.Option(
        None, "--path", help="Print the file of GROUP/NAME (e.g. accelerate/zero3_cpu, prm/cpu_minilm) and exit."
    ),
) -> None:
    """List the packaged recipes with their descriptions, or print one's file path (--path)."""
    from clinrl.config import RECIPE_GROUPS, recipe_file
    from clinrl.errors import ClinrlError

    if path is not None:
        if group is not None:
            raise ClinrlError("give GROUP or --path GROUP/NAME, not both")
        typer.echo(str(recipe_file(path)))
        return
    if group is not None and group not in RECIPE_GROUPS:
        raise ClinrlError(f"unknown recipe group {group!r}; choose from {', '.join(RECIPE_GROUPS)}")
    for number, name in enumerate([group] if group else RECIPE_GROUPS):
        if group is None:
            typer.echo(f"{'' if number == 0 else chr(10)}# {name}: {_USE[name]}")
        print_group(name)
