"""``clinrl drg …``: MS-DRG coding commands. Heavy imports stay inside each command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

# Commands are added below, one function each.
