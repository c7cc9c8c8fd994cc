"""Pure group logic for GRPO enhancements: which groups are degenerate, and the resampling loop.

A *group* is the ``G`` completions of one prompt; rewards arrive flat, group by group (rows
``g*G … g*G+G-1`` belong to group ``g``), the way TRL lays them out. Nothing here knows about models:
:func:`resample_until` drives a ``regenerate`` callback, so the loop is testable with scripted rewards.

Degenerate, by mode (REFERENCE A, "Enhancements ablated"):

- ``neutral`` / ``filter``: every (scorable) reward of the group is equal — zero variance, so the group
  has zero advantage and teaches nothing;
- ``positive``: zero variance, *or* no reward above ``positive_threshold`` (no completion did well).

Unscorable rewards (NaN) are ignored; a group with fewer than two scorable rewards has zero variance.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from clinrl.registry import Registry

__all__ = [
    "DEGENERACY",
    "ResampleResult",
    "TemperaturePicker",
    "degenerate_groups",
    "expand_groups",
    "resample_until",
]

Mode = Literal["neutral", "positive", "filter"]


def _zero_variance(values: Sequence[float], atol: float) -> bool:
    scorable = [v for v in values if not math.isnan(v)]
    return len(scorable) < 2 or max(scorable) - min(scorable) <= atol


def _no_positive(values: Sequence[float], threshold: float) -> bool:
    return not any(v > threshold for v in values if not math.isnan(v))


# mode -> predicate(group rewards, atol, positive_threshold) -> degenerate?
DEGENERACY: Registry[Callable[[Sequence[float], float, float], bool]] = Registry("mode", {
    "neutral": lambda r, atol, thr: _zero_variance(r, atol),
    "filter": lambda r, atol, thr: _zero_variance(r, atol),
    "positive": lambda r, atol, thr: _zero_variance(r, atol) or _no_positive(r, thr),
})  # fmt: skip


def _split(rewards: Sequence[float], num_generations: int) -> list[list[float]]:
    values = [float(v) for v in rewards]
    if num_generations < 1 or len(values) % num_generations:
        raise ValueError(f"{len(values)} rewards do not split into groups of num_generations={num_generations}")
    return [values[i : i + num_generations] for i in range(0, len(values), num_generations)]


def degenerate_groups(
    rewards: Sequence[float],
    num_generations: int,
    mode: str,
    *,
    atol: float = 1e-6,
    positive_threshold: float = 0.0,
) -> list[bool]:
    """One flag per group: True when the group is degenerate under ``mode`` (see the module docstring).

    ``rewards`` is flat (any sequence of floats, e.g. a 1-D tensor's ``tolist()``), group after group.
    """
    check = DEGENERACY[mode]  # UnknownName (a ValueError) with the choices
    return [check(group, atol, positive_threshold) for group in _split(rewards, num_generations)]


def expand_groups(flags: Sequence[bool], num_generations: int) -> list[bool]:
    """Per-group flags repeated to one per row (completion)."""
    return [bool(f) for f in flags for _ in range(num_generations)]


class TemperaturePicker:
    """Temperature for each retry round, from a fixed set: ``cycle`` walks the set in order,
    ``random`` draws uniformly with its own seeded generator (the same on every process)."""

    def __init__(self, temperatures: Sequence[float], schedule: str = "random", seed: int = 0):
        if not temperatures or any(not t > 0 for t in temperatures):
            raise ValueError(f"temperatures must be a non-empty set of positive values, got {list(temperatures)}")
        if schedule not in ("cycle", "random"):
            raise ValueError(f"unknown temperature schedule {schedule!r}; use cycle or random")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.schedule = schedule
        self._rng = random.Random(seed)
        self._count = 0

    def __call__(self) -> float:
        if self.schedule == "cycle":
            t = self.temperatures[self._count % len(self.temperatures)]
        else:
            t = self._rng.choice(self.temperatures)
        self._count += 1
        return t


@dataclass
class ResampleResult:
    """What :func:`resample_until` did.

    ``rewards``: final flat rewards (re-checked after every retry). ``retries[g]``: regenerations of
    group ``g`` (0 for a group that qualified at once). ``rounds``: retry rounds run; ``temperatures``:
    the temperature of each round; ``still_degenerate``: groups that hit the cap; ``extra_completions``:
    completions generated beyond the base ``G`` per prompt.
    """

    rewards: list[float]
    num_generations: int
    initially_degenerate: list[int]
    retries: list[int]
    rounds: int = 0
    temperatures: list[float] = field(default_factory=list)
    still_degenerate: list[int] = field(default_factory=list)

    @property
    def groups(self) -> int:
        return len(self.retries)

    @property
    def resampled(self) -> list[int]:
        """Groups regenerated at least once."""
        return [g for g, n in enumerate(self.retries) if n > 0]

    @property
    def fixed(self) -> list[int]:
        """Groups that were degenerate and qualified after some retries."""
        stuck = set(self.still_degenerate)
        return [g for g in self.resampled if g not in stuck]

    @property
    def extra_completions(self) -> int:
        return sum(self.retries) * self.num_generations

    def metrics(self) -> dict[str, float]:
        """Scalar summary, keyed for logging."""
        resampled = self.resampled
        return {
            "groups": float(self.groups),
            "frac_degenerate_initial": len(self.initially_degenerate) / max(self.groups, 1),
            "groups_resampled": float(len(resampled)),
            "groups_fixed": float(len(self.fixed)),
            "groups_still_degenerate": float(len(self.still_degenerate)),
            "rounds": float(self.rounds),
            "attempts_mean": (sum(self.retries[g] for g in resampled) / len(resampled)) if resampled else 0.0,
            "attempts_max": float(max(self.retries, default=0)),
            "extra_completions": float(self.extra_completions),
            "extra_cost_ratio": self.extra_completions / max(len(self.rewards), 1),
        }


Regenerate = Callable[[list[int], float], Sequence[Sequence[float]]]


def resample_until(
    rewards: Sequence[float],
    num_generations: int,
    mode: str,
    regenerate: Regenerate,
    *,
    max_retries: int = 12,
    temperature: Callable[[], float] | None = None,
    atol: float = 1e-6,
    positive_threshold: float = 0.0,
) -> ResampleResult:
    """Regenerate degenerate groups until each qualifies or has had ``max_retries`` regenerations.

    Each round calls ``regenerate(groups, temperature)`` once for all groups still degenerate; it must
    produce fresh completions for those groups (keeping them as the groups' current attempt) and return
    their *re-computed* rewards, one list of ``G`` per requested group, in order. Every group is then
    re-checked with the same rule; groups that qualify leave the loop, the others go to the next round.
    A group that reaches the cap keeps its last attempt. ``temperature`` picks each round's temperature
    (default: 1.0 always).
    """
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    pick = temperature or (lambda: 1.0)
    groups = _split(rewards, num_generations)

    def bad(values: Sequence[float]) -> bool:
        return degenerate_groups(values, num_generations, mode, atol=atol, positive_threshold=positive_threshold)[0]

    pending = [g for g, values in enumerate(groups) if bad(values)]
    result = ResampleResult([], num_generations, list(pending), [0] * len(groups))
    while pending and result.rounds < max_retries:
        t = pick()
        fresh = regenerate(list(pending), t)
        if len(fresh) != len(pending):
            raise ValueError(f"regenerate returned {len(fresh)} groups for {len(pending)} requested")
        result.rounds += 1
        result.temperatures.append(t)
        still = []
        for g, values in zip(pending, fresh):
            values = [float(v) for v in values]
            if len(values) != num_generations:
                raise ValueError(f"regenerate returned {len(values)} rewards for group {g}, need {num_generations}")
            groups[g] = values
            result.retries[g] += 1
            if bad(values):
                still.append(g)
        pending = still
    result.still_degenerate = pending
    result.rewards = [v for values in groups for v in values]
    return result
