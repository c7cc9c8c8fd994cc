"""Which files of a ``clinrl drg prepare`` folder belong to one finished run.

A run writes, in this order, ``train.parquet`` and ``test.parquet`` (each tagged with the run's id in
its parquet metadata), ``prepare_report.json`` (with the same ``run_id``) and ``flow.json`` last. It
first removes the previous run's outputs (``flow.json`` first), so a failed or killed run leaves no
mix of two runs, and no ``flow.json``. :func:`check_prepared_input` is what downstream steps
(``drg split``, ``drg eval``, ``drg difficulty``, training) run on a parquet they read: a prepare output
must sit beside the ``flow.json`` and the report of the run that wrote it. Parquet files not made by
``drg prepare`` (no run id, no prepare report beside them) are not checked.

Spill folders (``.prepare-<pid>-*``, course text on its way to the outputs) of runs that were killed
are removed by the next run in the same folder (:func:`remove_stale_spills`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clinrl.cards import remove_dataset_card
from clinrl.errors import DataError
from clinrl.io import process_alive

__all__ = [
    "FLOW",
    "OUTPUTS",
    "REPORT",
    "RUN_KEY",
    "SPILL_PREFIX",
    "check_prepared_input",
    "remove_previous_outputs",
    "remove_stale_spills",
    "run_id_of",
]

FLOW, REPORT = "flow.json", "prepare_report.json"
OUTPUTS = ("train.parquet", "test.parquet")
RUN_KEY = b"clinrl.prepare_run"  # parquet schema metadata key holding the run id
SPILL_PREFIX = ".prepare-"
_RERUN = "rerun `clinrl drg prepare` into this folder"


def run_id_of(path: str | Path) -> str | None:
    """The prepare run id in a parquet file's metadata; None if absent or the file is unreadable
    (the caller's reader then reports what is wrong with it)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # pyarrow raises several types for a non-parquet file
        return None
    value = metadata.get(RUN_KEY)
    return value.decode("utf-8", "replace") if value is not None else None


def _report_run_id(folder: Path) -> str | None:
    try:
        report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report.get("run_id") if isinstance(report, dict) else None


def check_prepared_input(path: str | Path) -> None:
    """Raise :class:`DataError` when ``path`` is a ``drg prepare`` output that is not part of one
    finished run: no ``flow.json`` beside it (the run failed or was killed), or a report of another
    run beside it. A parquet with neither a run id nor a prepare report beside it passes."""
    path = Path(path)
    folder = path.parent
    run = run_id_of(path)
    if run is None and not (path.name in OUTPUTS and (folder / REPORT).exists()):
        return
    if not (folder / FLOW).is_file():
        unfinished = f"an output of an unfinished `clinrl drg prepare` run (no {FLOW} beside it)"
        raise DataError(f"{unfinished}; {_RERUN}", path=path)
    if run is not None and _report_run_id(folder) != run:
        raise DataError(f"not from the `clinrl drg prepare` run whose {REPORT} sits beside it; {_RERUN}", path=path)


def remove_previous_outputs(out: Path) -> None:
    """Delete a previous run's outputs, ``flow.json`` first (the folder then no longer looks finished)."""
    for name in (FLOW, *OUTPUTS, REPORT):
        (out / name).unlink(missing_ok=True)

    remove_dataset_card(out)  # the card of the previous outputs (a README of the user's own stays)


def remove_stale_spills(out: Path) -> list[Path]:
    """Delete spill folders of runs that no longer run (``.prepare-<pid>-*`` with a dead pid, or a name
    without a pid, as older versions made them); a live run's folder is kept. Returns what was removed."""
    removed = []
    for spill in out.glob(f"{SPILL_PREFIX}*"):
        pid = spill.name[len(SPILL_PREFIX) :].split("-", 1)[0]
        if spill.is_dir() and not (pid.isdigit() and process_alive(int(pid))):
            shutil.rmtree(spill, ignore_errors=True)
            removed.append(spill)
    return removed
