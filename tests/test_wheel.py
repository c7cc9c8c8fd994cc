"""The built wheel works without the source checkout: recipes are inside it, listed and loadable, and a
tiny recipe trains from a folder outside the checkout.

The wheel is built from a copy of the project files (so the checkout gets no build/ or egg-info), offline
(``--no-build-isolation --no-index``), then installed with ``pip install --no-deps --target`` into a
temporary folder; the CLI then runs with this venv's interpreter and ``PYTHONPATH`` set to that folder only,
from a working folder outside the checkout. The first check is that ``clinrl`` is imported from there, not
from the checkout (the editable install's path entry comes after ``PYTHONPATH``). About 30 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "src" / "clinrl" / "recipes"

pytestmark = pytest.mark.slow


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(site folder holding the installed wheel, environment that imports clinrl from there only)."""
    tmp = tmp_path_factory.mktemp("wheel")
    project = tmp / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, project / name)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    quiet = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp / "dist"), str(project)], cwd=tmp, env=quiet)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("clinrl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packed = {n for n in zf.namelist() if n.startswith("clinrl/recipes/") and n.endswith(".yaml")}
    shipped = {f"clinrl/{p.relative_to(RECIPES.parent).as_posix()}" for p in RECIPES.rglob("*.yaml")}
    assert shipped and packed == shipped, f"wheel lacks {len(shipped - packed)} of {len(shipped)} recipe files"
    site = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
         cwd=tmp, env=quiet)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLINRL_HOME")}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return site, env


def test_installed_wheel_lists_and_locates_its_recipes(installed, tmp_path):
    site, env = installed
    where = _run([sys.executable, "-c", "import clinrl; print(clinrl.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout  # not the checkout's src/
    listed = _run([sys.executable, "-m", "clinrl", "recipes"], cwd=tmp_path, env=env).stdout
    for name in ("drg/best", "drg/tiny/sft", "prm/cpu_minilm", "notes/grpo_prm", "accelerate/zero3_cpu"):
        assert f"{name}\t" in listed, name
    drg = _run([sys.executable, "-m", "clinrl", "drg", "recipes"], cwd=tmp_path, env=env).stdout
    assert "\ntiny/best\t" in drg and drg.count("\n") == listed.count("\ndrg/")
    path = _run([sys.executable, "-m", "clinrl", "recipes", "--path", "accelerate/zero3_cpu"], cwd=tmp_path, env=env)
    located = Path(path.stdout.strip())
    assert located.is_relative_to(site) and located.is_file() and "distributed_type" in located.read_text()


def test_installed_wheel_trains_a_tiny_recipe_outside_the_checkout(installed, tmp_path):
    _, env = installed
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    clinrl = [sys.executable, "-m", "clinrl"]
    _run([*clinrl, "drg", "tiny-workspace", "--workdir", str(root), "--n-notes", "200", "--classes", "6"],
         cwd=elsewhere, env=env)  # fmt: skip
    done = _run([*clinrl, "drg", "sft", "--recipe", "tiny/sft", "--workdir", str(root), "--trl.max_steps", "1",
                 "--trl.save_strategy", "no", "--trl.disable_tqdm", "true"], cwd=elsewhere, env=env)  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    out = root / "runs" / "tiny-drg" / "runs" / "sft"
    assert summary["global_step"] == 1 and Path(summary["output_dir"]) == out
    assert (out / "model.safetensors").is_file() and not (elsewhere / "runs").exists()
