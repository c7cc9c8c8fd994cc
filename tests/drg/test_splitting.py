from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.prep.stratify import allocate_test_counts, stratified_sample, stratified_split


def _labels(sizes: dict[str, int], seed: int = 0) -> list[str]:
    labels = [c for c, k in sizes.items() for _ in range(k)]
    np.random.default_rng(seed).shuffle(labels)
    return labels


SIZES = {"a": 500, "b": 230, "c": 97, "d": 41, "e": 10, "f": 3, "g": 2, "h": 1}


def test_exact_size_partition_and_sorted():
    labels = _labels(SIZES)
    train, test = stratified_split(labels, 0.1, seed=42)
    assert len(test) == round(len(labels) * 0.1)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))


def test_stratification_and_per_class_guarantees():
    labels = _labels(SIZES)
    train, test = stratified_split(labels, 0.1, seed=1)
    n_test = Counter(labels[i] for i in test)
    n_train = Counter(labels[i] for i in train)
    for cls, k in SIZES.items():
        if k >= 2:
            assert n_train[cls] >= 1 and n_test[cls] >= 1, cls
        # within one seat of the ideal share, except where the >= 1 floors force a small class up
        if k >= 20:
            assert abs(n_test[cls] - k * 0.1) <= 1.0 + 1e-9, cls


@pytest.mark.parametrize("n, size", [(7, 0.5), (10, 0.25), (1001, 0.1), (999, 0.05)])
def test_rounding_half_up(n, size):
    labels = ["x"] * (n // 2) + ["y"] * (n - n // 2)
    _, test = stratified_split(labels, size, seed=0)
    assert len(test) == int(np.floor(n * size + 0.5))


def test_too_few_seats_for_every_class():
    # 4 test seats, 6 classes of 2: no class may lose its only train member, allocation stays exact.
    labels = _labels({c: 2 for c in "abcdef"} | {"z": 30})
    train, test = stratified_split(labels, 0.1, seed=3)
    assert len(test) == 4
    per_class = Counter(labels[i] for i in train)
    assert all(per_class[c] >= 1 for c in "abcdefz")


def test_deterministic_and_seed_sensitive():
    labels = _labels(SIZES)
    a = stratified_split(labels, 0.2, seed=7)
    b = stratified_split(labels, 0.2, seed=7)
    c = stratified_split(labels, 0.2, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_single_class_and_zero_size():
    train, test = stratified_split(["k"] * 50, 0.3, seed=0)
    assert len(test) == 15 and len(train) == 35
    train, test = stratified_split(_labels(SIZES), 0.0, seed=0)
    assert len(test) == 0 and len(train) == sum(SIZES.values())
    train, test = stratified_split([], 0.5, seed=0)
    assert len(train) == len(test) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_invalid_test_size(bad):
    with pytest.raises(ValueError, match="test_size"):
        stratified_split(["a", "b"] * 5, bad, seed=0)


def test_impossible_train_guarantee_raises():
    with pytest.raises(ValueError, match="no train member"):
        stratified_split(["a", "a", "b", "b"], 0.9, seed=0)


def test_groups_never_leak_and_keep_proportions():
    rng = np.random.default_rng(0)
    labels, groups = [], []
    for patient in range(600):
        for _ in range(rng.integers(1, 4)):  # 1-3 admissions per patient
            labels.append(str(rng.choice(list("abcde"), p=[0.4, 0.3, 0.15, 0.1, 0.05])))
            groups.append(patient)
    train, test = stratified_split(labels, 0.2, seed=5, groups=groups)
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert abs(len(test) - 0.2 * len(labels)) <= 0.02 * len(labels)
    total, in_test = Counter(labels), Counter(labels[i] for i in test)
    for cls, k in total.items():
        assert abs(in_test[cls] / k - 0.2) < 0.05, cls
    again = stratified_split(labels, 0.2, seed=5, groups=groups)
    assert np.array_equal(again[1], test)


def test_groups_keep_train_member_even_for_one_patient_class():
    labels = ["rare", "rare", "rare"] + ["common"] * 20
    groups = [0, 0, 0] + list(range(1, 21))
    train, test = stratified_split(labels, 0.5, seed=0, groups=groups)
    assert all(i in set(train) for i in (0, 1, 2))


def test_groups_length_mismatch():
    with pytest.raises(ValueError, match="groups"):
        stratified_split(["a"] * 4, 0.5, seed=0, groups=[1, 2])


def test_stratified_sample_is_test_side():
    labels = _labels(SIZES)
    sample = stratified_sample(labels, 0.05, seed=11)
    assert np.array_equal(sample, stratified_split(labels, 0.05, seed=11)[1])
    assert len(sample) == round(len(labels) * 0.05)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    size=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**32 - 1),
)
def test_allocation_properties(counts, size, seed):
    counts = np.array(counts)
    n = int(counts.sum())
    n_test = int(np.floor(n * size + 0.5))
    hi = np.where(counts >= 2, counts - 1, counts)
    if n_test > hi.sum():
        with pytest.raises(ValueError):
            allocate_test_counts(counts, n_test, np.random.default_rng(seed))
        return
    alloc = allocate_test_counts(counts, n_test, np.random.default_rng(seed))
    assert alloc.sum() == n_test
    assert np.all(alloc >= 0) and np.all(alloc <= hi)
    multi = counts >= 2
    if n_test >= multi.sum():
        assert np.all(alloc[multi] >= 1)
