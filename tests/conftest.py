"""Shared fixtures. The project's shared data sits in ../shared beside the checkout (CI has it there too);
override with CLINRL_SHARED=/path/to/shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLINRL_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED} (set CLINRL_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def prm_data(shared_dir: Path) -> Path:
    return shared_dir / "data" / "prm"


@pytest.fixture(scope="session")
def msdrg_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "msdrg"


@pytest.fixture(scope="module")
def onto():
    """The bundled MS-DRG v34 ontology."""
    from clinrl.drg.ontology import load_ontology

    return load_ontology()


@pytest.fixture(scope="module")
def rewards(onto):
    """Every registered DRG reward, built once."""
    from clinrl.drg.rewards import available_rewards, get_reward

    return {name: get_reward(name, ontology=onto) for name in available_rewards()}
