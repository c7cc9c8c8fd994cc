"""Process-supervised reward models for clinical notes (the PRM-Clinic study, REFERENCE B)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def demo_data_dir() -> Path:
    """The bundled PRM-Clinic dev data (MIT licence): gold notes, dev verification tasks, A-Prefer dev."""
    return Path(str(resources.files("clinrl") / "data" / "prm"))
