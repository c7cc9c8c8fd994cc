"""Cosine KL decay: the schedule and the callback that sets the trainer's beta."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.drg.train.kl import CosineKLCallback, cosine_beta


def test_cosine_endpoints_and_midpoint():
    assert cosine_beta(0.04, 0, 100) == pytest.approx(0.04)
    assert cosine_beta(0.04, 50, 100) == pytest.approx(0.02)
    assert cosine_beta(0.04, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine_beta(0.04, 150, 100) == pytest.approx(0.0, abs=1e-12)  # clipped past the end


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 10_000), st.data())
def test_cosine_is_monotone_and_bounded(beta, total, data):
    a = data.draw(st.integers(0, total))
    b = data.draw(st.integers(a, total))
    assert 0.0 <= cosine_beta(beta, b, total) <= cosine_beta(beta, a, total) <= beta + 1e-12


class FakeTrainer:
    def __init__(self, beta):
        self.beta = beta
        self.callbacks = []

    def add_callback(self, cb):
        self.callbacks.append(cb)


def test_callback_sets_trainer_beta_each_step_and_logs_it():
    trainer = FakeTrainer(0.04)
    cb = CosineKLCallback(0.04).attach(trainer)
    assert trainer.callbacks == [cb]
    seen = []
    for step in (0, 5, 10):
        state = SimpleNamespace(global_step=step, max_steps=10, log_history=[{"loss": 1.0}])
        cb.on_step_begin(None, state, None)
        logs = {}
        cb.on_log(None, state, None, logs=logs)
        seen.append(trainer.beta)
        assert logs["kl_beta"] == trainer.beta == state.log_history[-1]["kl_beta"]
    assert seen == pytest.approx([0.04, 0.02, 0.0], abs=1e-12)


def test_negative_beta_rejected():
    with pytest.raises(ValueError):
        CosineKLCallback(-0.1)
