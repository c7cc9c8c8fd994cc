"""``clinrl drg scaling``: accuracy against log2(number of SFT examples) over several evaluated runs (the
study found both SFT and RL accuracy roughly linear in the log of the SFT set size).

A *run* is an evaluation folder (``clinrl drg eval --out DIR``) holding ``metrics.json``. Its number of
SFT examples is, first found wins:

1. ``metrics.json → eval.meta.sft_examples`` (``clinrl drg eval --sft-examples N`` records it);
2. ``cases`` of an ``sft_summary.json`` (written by ``clinrl drg sft``) in the run folder itself, or in the
   evaluated model's folder (``eval.meta.model``), following ``clinrl_recipe.json → model`` back from a
   GRPO run to the SFT run it started from (up to 4 steps).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinrl.drg.eval.plots import plot_scaling
from clinrl.errors import ClinrlError, DataError

__all__ = ["fit_log2", "metric_value", "run_point", "scaling_report"]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def metric_value(metrics: dict[str, Any], metric: str) -> float:
    """A dotted path into metrics: ``drg.pass@1``, ``principal.maj@k.8``, ``macro_f1``."""
    value: Any = metrics
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ClinrlError(f"metric {metric!r} not in metrics.json (at {part!r})")
        value = value[part]
    if not isinstance(value, (int, float)):
        raise ClinrlError(f"metric {metric!r} is not a number")
    return float(value)


def _sft_cases(folder: Path, hops: int = 4) -> tuple[int, str] | None:
    for _ in range(hops + 1):
        summary = _read_json(folder / "sft_summary.json")
        if summary and isinstance(summary.get("cases"), int):
            return summary["cases"], str(folder / "sft_summary.json")
        recipe = _read_json(folder / "clinrl_recipe.json")
        parent = recipe.get("model") if recipe else None
        if not isinstance(parent, str) or not Path(parent).is_dir():
            return None
        folder = Path(parent)
    return None


def run_point(run_dir: str | Path, metric: str = "drg.pass@1") -> dict[str, Any]:
    """``{"run", "sft_examples", "source", "value"}`` for one evaluated run (see module docstring)."""
    run = Path(run_dir)
    metrics = _read_json(run / "metrics.json")
    if metrics is None:
        raise DataError("no readable metrics.json (run `clinrl drg eval --out` first)", path=run)
    meta = (metrics.get("eval") or {}).get("meta") or {}
    found: tuple[int, str] | None = None
    if isinstance(meta.get("sft_examples"), int):
        found = (meta["sft_examples"], "metrics.json eval.meta.sft_examples")
    else:
        found = _sft_cases(run, hops=0)
        if found is None and isinstance(meta.get("model"), str):
            found = _sft_cases(Path(meta["model"]))
    if found is None:
        raise DataError(
            "cannot tell the number of SFT examples: record it with `clinrl drg eval --sft-examples N` "
            "or evaluate a model folder written by `clinrl drg sft`",
            path=run,
        )
    if found[0] < 1:
        raise DataError(f"number of SFT examples must be ≥ 1, got {found[0]}", path=run)
    return {"run": str(run), "sft_examples": found[0], "source": found[1], "value": metric_value(metrics, metric)}


def fit_log2(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | None]:
    """Least-squares ``y = intercept + slope · log2(x)`` and its R² (None when y is constant: undefined)."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ClinrlError("a fit needs runs with at least two different numbers of SFT examples")
    ts = [math.log2(x) for x in xs]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    sxx = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sxx
    intercept = my - slope * mt
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * t) ** 2 for t, y in zip(ts, ys))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - ss_res / ss_tot if ss_tot else None}


def scaling_report(
    runs: Sequence[str | Path], out_png: str | Path | None = None, metric: str = "drg.pass@1"
) -> dict[str, Any]:
    """Points for every run, the log2 fit (when ≥ 2 sizes) and, with ``out_png``, the plot."""

    points = sorted((run_point(r, metric) for r in runs), key=lambda p: p["sft_examples"])
    fit = (
        fit_log2([p["sft_examples"] for p in points], [p["value"] for p in points])
        if len({p["sft_examples"] for p in points}) >= 2
        else None
    )
    if out_png is not None:
        plot_scaling(points, out_png, fit, metric)
    return {"metric": metric, "points": points, "fit": fit, "plot": str(out_png) if out_png else None}
