"""Stratified train/test splits without scikit-learn.

Allocation: a class with ``n_c`` members gets the ideal test share ``q_c = n_c * n_test / n``; shares
are floored, clipped to ``[lo_c, hi_c]`` and the remaining seats are handed out by largest remainder
(ties broken by a seeded random key), so the total test count is exactly ``round(n * test_size)``
(half rounds up). ``hi_c = n_c - 1`` keeps one member of every class with two or more members in
train; ``lo_c = 1`` gives each such class one test member whenever there are at least as many test
seats as such classes. Singleton classes are unconstrained.

With ``groups`` (e.g. ``subject_id``), whole groups are assigned, in a seeded random order: first every
group that fits all its classes' quotas, then groups that bring the per-class test counts closer (L1)
to the quotas, never past the total and never taking a class's last train member. Proportions then
hold approximately (exactly when most groups are small), and no group is ever on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["stratified_sample", "stratified_split", "allocate_test_counts"]


def _codes(values: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Integer codes in order of first appearance (stable under hash randomisation)."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return codes, len(index)


def _check_size(test_size: float) -> None:
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ValueError(f"test_size must be a number in [0, 1), got {test_size!r}")
    if not (0.0 <= float(test_size) < 1.0):  # also rejects NaN
        raise ValueError(f"test_size must be in [0, 1), got {test_size!r}")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def allocate_test_counts(counts: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class test counts summing to ``n_test`` (largest remainder with the bounds in the module doc).

    Raises ValueError when ``n_test`` seats cannot be found while keeping one train member per class.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    multi = counts >= 2
    hi = np.where(multi, counts - 1, counts)
    if n_test > int(hi.sum()):
        raise ValueError(f"test size {n_test} of {n} leaves no train member for some class; lower test_size")
    lo = (multi & (n_test >= int(multi.sum()))).astype(np.int64)
    ideal = counts * (n_test / n) if n else counts.astype(float)
    alloc = np.clip(np.floor(ideal).astype(np.int64), lo, hi)
    tie = rng.random(len(counts))
    while (gap := n_test - int(alloc.sum())) != 0:
        step = 1 if gap > 0 else -1
        movable = np.flatnonzero(alloc < hi) if step > 0 else np.flatnonzero(alloc > lo)
        # Most under-served classes first when adding, most over-served first when removing.
        need = (ideal - alloc)[movable] * step
        order = movable[np.lexsort((tie[movable], -need))]
        alloc[order[: abs(gap)]] += step
    return alloc


def _group_assign(
    codes: np.ndarray,
    group_codes: np.ndarray,
    n_groups: int,
    quota: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean test mask assigning whole groups greedily towards the per-class quotas.

    Pass 1 takes groups that fit every class quota; pass 2 takes a remaining group when it lowers the
    L1 distance to the quotas without exceeding the total. No class ever loses its last train member.
    """
    by_group = np.argsort(group_codes, kind="stable")
    bounds = np.searchsorted(group_codes[by_group], np.arange(n_groups + 1))
    taken = np.zeros_like(quota)
    room = int(quota.sum())
    mask = np.zeros(len(codes), dtype=bool)
    members = []
    for g in rng.permutation(n_groups):
        rows = by_group[bounds[g] : bounds[g + 1]]
        classes, counts = np.unique(codes[rows], return_counts=True)
        members.append((rows, classes, counts))
    for strict in (True, False):
        for rows, classes, counts in members:
            if mask[rows[0]] or len(rows) > room:
                continue
            after = taken[classes] + counts
            if np.any(after > hi[classes]):
                continue
            if strict:
                take = bool(np.all(after <= quota[classes]))
            else:
                gain = np.abs(quota[classes] - after).sum() - np.abs(quota[classes] - taken[classes]).sum()
                take = gain < 0
            if take:
                taken[classes] = after
                room -= len(rows)
                mask[rows] = True
    return mask


def stratified_split(
    labels: Sequence[Hashable],
    test_size: float,
    seed: int,
    groups: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into sorted ``(train, test)`` arrays, stratified by ``labels``.

    Without ``groups`` the test side holds exactly ``round(len(labels) * test_size)`` rows. With
    ``groups`` every group lies wholly on one side and the sizes are approximate. Same inputs and seed,
    same split. Raises ValueError for a ``test_size`` outside [0, 1) or mismatched lengths.
    """
    _check_size(test_size)
    n = len(labels)
    if groups is not None and len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries but labels has {n}")
    rng = np.random.default_rng(seed)
    codes, n_classes = _codes(labels)
    counts = np.bincount(codes, minlength=n_classes)
    quota = allocate_test_counts(counts, _round_half_up(n * float(test_size)), rng)
    if groups is not None:
        group_codes, n_groups = _codes(groups)
        hi = np.where(counts >= 2, counts - 1, counts)
        mask = _group_assign(codes, group_codes, n_groups, quota, hi, rng)
    else:
        order = rng.permutation(n)
        order = order[np.argsort(codes[order], kind="stable")]  # random order within each class
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.arange(n) - starts[codes[order]]
        mask = np.zeros(n, dtype=bool)
        mask[order] = rank < quota[codes[order]]
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def stratified_sample(labels: Sequence[Hashable], fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified sample of ``round(n * fraction)`` rows (the test side of a split)."""
    return stratified_split(labels, fraction, seed)[1]
