"""PNG plots for DRG runs (matplotlib, headless): training curves from TRL logs, the CC/MCC confusion
matrix of an evaluation, and accuracy against the number of SFT examples (``clinrl drg scaling``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinrl.drg.eval.metrics import score_generations
from clinrl.errors import ClinrlError, DataError
from clinrl.io import atomic_path

__all__ = [
    "CURVES",
    "find_trainer_state",
    "load_log_history",
    "plot_cc_mcc_confusion",
    "plot_scaling",
    "plot_training_curves",
    "pyplot",
]

# panel title -> log_history keys, first present wins (TRL GRPO and SFT names)
CURVES: dict[str, tuple[str, ...]] = {
    "reward": ("reward",),
    "completion length (tokens)": ("completions/mean_length", "completion_length"),
    "KL": ("kl",),
    "loss": ("loss",),
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return out


def find_trainer_state(run_dir: str | Path) -> Path | None:
    """``run_dir/trainer_state.json``, else the one in its highest ``checkpoint-N`` folder, else None."""
    root = Path(run_dir)
    if root.is_file():
        return root
    if (root / "trainer_state.json").is_file():
        return root / "trainer_state.json"
    checkpoints = sorted(root.glob("checkpoint-*/trainer_state.json"), key=lambda p: _step(p.parent.name))
    return checkpoints[-1] if checkpoints else None


def _step(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def load_log_history(source: Any) -> list[dict[str, Any]]:
    """TRL/transformers ``log_history`` from a list, a dict holding it, a ``trainer_state.json`` or a run
    folder (see :func:`find_trainer_state`)."""
    if isinstance(source, (str, Path)):
        path = find_trainer_state(source)
        if path is None:
            raise DataError("no trainer_state.json (in the folder or its checkpoints)", path=source)
        try:
            source = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"cannot read ({type(err).__name__})", path=path) from None
    if isinstance(source, Mapping):
        source = source.get("log_history")
    if not isinstance(source, list):
        raise ClinrlError("expected a log_history list (or a trainer_state.json holding one)")
    return [entry for entry in source if isinstance(entry, Mapping)]


def plot_training_curves(source: Any, out_png: str | Path) -> list[str]:
    """One panel per series of :data:`CURVES` found in the log history (reward, completion length and KL
    for GRPO; loss for SFT and GRPO), against the step; returns the panel titles drawn."""
    history = load_log_history(source)
    series: dict[str, tuple[list[float], list[float]]] = {}
    for title, keys in CURVES.items():
        for key in keys:
            points = [(e.get("step", i), e[key]) for i, e in enumerate(history) if isinstance(e.get(key), (int, float))]
            if points:
                series[f"{title}"] = ([p[0] for p in points], [p[1] for p in points])
                break
    if not series:
        raise ClinrlError(f"the log history has none of {', '.join(k for ks in CURVES.values() for k in ks)}")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), squeeze=False)
    for ax, (title, (xs, ys)) in zip(axes[0], series.items()):
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out_png)
    return list(series)


def _confusion_from(source: Any) -> dict[str, Any]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".jsonl":
            return score_generations(path)["cc_mcc_confusion"]
        if not path.is_file():
            raise DataError("file not found", path=path)
        source = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(source, Mapping) and "matrix" in source:
        return dict(source)
    if isinstance(source, Mapping) and "cc_mcc_confusion" in source:
        return source["cc_mcc_confusion"]
    if isinstance(source, Sequence):
        return score_generations(source)["cc_mcc_confusion"]
    raise ClinrlError("expected metrics (with cc_mcc_confusion), a generations.jsonl or generation records")


def plot_cc_mcc_confusion(source: Any, out_png: str | Path) -> Path:
    """Heat map of gold CC/MCC class (rows) against the predicted class or ``invalid`` (columns), from a
    metrics dict/``metrics.json``, a ``generations.jsonl`` or generation records. Colours are row shares;
    cells show sample counts."""
    confusion = _confusion_from(source)
    matrix = confusion["matrix"]
    rows = [i for i, r in enumerate(matrix) if sum(r) > 0] or list(range(len(matrix)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.6 * len(rows)))
    shares = [[c / max(sum(matrix[i]), 1) for c in matrix[i]] for i in rows]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for y, i in enumerate(rows):
        for x, count in enumerate(matrix[i]):
            ax.text(x, y, str(count), ha="center", va="center", color="white" if shares[y][x] > 0.6 else "black")
    ax.set_xticks(range(len(confusion["columns"])), confusion["columns"], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [confusion["labels"][i] for i in rows])
    ax.set_xlabel("predicted CC/MCC class")
    ax.set_ylabel("gold CC/MCC class")
    ax.set_title("CC/MCC confusion (samples)")
    fig.tight_layout()
    return _save(fig, out_png)


def _r2(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def plot_scaling(
    points: Sequence[Mapping[str, Any]],
    out_png: str | Path,
    fit: Mapping[str, float | None] | None = None,
    metric: str = "drg.pass@1",
) -> Path:
    """Accuracy (``value``) against ``sft_examples`` on a log2 axis, one dot per run (labelled with
    ``run``), and the line ``intercept + slope · log2(x)`` when ``fit`` is given."""
    import math

    if not points:
        raise ClinrlError("no runs to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = [p["sft_examples"] for p in points]
    ys = [100 * p["value"] for p in points]
    ax.scatter(xs, ys, zorder=3)
    for p, y in zip(points, ys):
        ax.annotate(
            Path(str(p.get("run", ""))).name,
            (p["sft_examples"], y),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    if fit is not None:
        lo, hi = math.log2(min(xs)), math.log2(max(xs))
        grid = [2 ** (lo + (hi - lo) * i / 50) for i in range(51)]
        ax.plot(
            grid,
            [100 * (fit["intercept"] + fit["slope"] * math.log2(x)) for x in grid],
            color="C1",
            label=f"{100 * fit['slope']:+.2f} pts per doubling, R² {_r2(fit.get('r2'))}",
        )
        ax.legend(fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("SFT examples")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_png)
