"""Experiment tracking, opt-in: ``--report-to tensorboard|wandb|mlflow|none`` on every trainer.

Nothing is reported unless the user asks: a recipe resolves to ``report_to: none`` unless it names a
tracker (:func:`clinrl.config.build_config`), and the ``--report-to`` flag, when given, replaces the recipe's
choice. The trainers hand the choice to transformers' own integrations (``TrainingArguments.report_to``), so
the tracker's usual settings apply: TensorBoard writes event files under ``<output_dir>/runs``; MLflow logs to
``./mlruns`` unless ``MLFLOW_TRACKING_URI`` says otherwise; W&B sends to its server unless ``WANDB_MODE`` is
``offline`` or ``disabled`` (clinrl never sets or overrides ``WANDB_MODE``).

``report_to: all`` is refused: transformers would then report to every installed tracker, which would
contact W&B merely because ``wandb`` happens to be installed. A chosen tracker that is not installed is a
one-line error before any model loads (checked with :func:`importlib.util.find_spec`, without importing it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, TypeVar

from clinrl.errors import ClinrlError

__all__ = ["TRACKERS", "apply_report_to", "check_trackers"]

T = TypeVar("T")

# tracker → the modules transformers accepts for it (any one installed is enough)
TRACKERS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
}
CHOICES = ("none", *TRACKERS)


def _installed(modules: tuple[str, ...]) -> bool:
    for module in modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return True
        except (ImportError, ValueError):  # a broken or half-installed package counts as missing
            continue
    return False


def _names(report_to: Any) -> list[str]:
    if report_to is None:
        return ["none"]
    return [report_to] if isinstance(report_to, str) else [str(n) for n in report_to]


def check_trackers(report_to: Any, where: str = "--report-to") -> list[str]:
    """The tracker names of ``report_to`` (a name or a list), each one known and installed; ``none`` alone
    means no tracking. Anything else is a one-line :class:`ClinrlError` saying what to install or change."""
    names = _names(report_to)
    for name in names:
        if name == "all":
            raise ClinrlError(f"{where}: 'all' would report to every installed tracker (W&B included); "
                              f"name the trackers: {', '.join(TRACKERS)}")  # fmt: skip
        if name != "none" and name not in TRACKERS:
            raise ClinrlError(f"{where}: unknown tracker {name!r}; choose from {', '.join(CHOICES)}")
        if name in TRACKERS and not _installed(TRACKERS[name]):
            raise ClinrlError(f"{where}: tracker {name!r} is not installed "
                              f"(pip install 'clinrl[tracking]' or pip install {name}), or use --report-to none")  # fmt: skip
    return [n for n in names if n != "none"] or ["none"]


def apply_report_to(config: T, choice: str | None = None) -> T:
    """``config`` (a trainer recipe, :class:`clinrl.training.TrainerRecipe`) with the ``--report-to`` ``choice``
    set (``None``: keep the recipe's ``report_to``), after checking the resulting trackers."""
    current = choice if choice is not None else config.report_to
    names = check_trackers(current, "--report-to" if choice is not None else "report_to")
    return dataclasses.replace(config, report_to=names)
