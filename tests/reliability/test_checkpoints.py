"""Which checkpoint ``--resume`` picks when a run was killed while saving (no training needed)."""

from __future__ import annotations

import json
import logging

import pytest

from clinrl.errors import ClinrlError
from clinrl.training import checkpoint_complete, resume_checkpoint


def _checkpoint(root, step, state: str | None = '{"global_step": 1}'):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_half_written_checkpoints_are_skipped_with_a_warning(tmp_path, caplog):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, state=None)  # killed before the state file
    _checkpoint(tmp_path, 14, state='{"global_st')  # killed while writing it
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path, True) == str(tmp_path / "checkpoint-10")  # 10 > 2 numerically
    assert "checkpoint-12, checkpoint-14" in caplog.text
    assert not checkpoint_complete(tmp_path / "checkpoint-14") and checkpoint_complete(tmp_path / "checkpoint-2")


def test_only_incomplete_checkpoints_or_none(tmp_path):
    with pytest.raises(ClinrlError, match="no checkpoint"):
        resume_checkpoint(tmp_path / "missing", True)
    _checkpoint(tmp_path, 3, state=None)
    with pytest.raises(ClinrlError, match="no complete checkpoint.*1 incomplete: checkpoint-3"):
        resume_checkpoint(tmp_path, True)
    with pytest.raises(ClinrlError, match="already holds checkpoints"):  # a fresh run must not mix with it
        resume_checkpoint(tmp_path, False)
    assert resume_checkpoint(tmp_path / "fresh", False) is None


def test_state_file_that_is_not_an_object_is_incomplete(tmp_path):
    folder = _checkpoint(tmp_path, 1, state=json.dumps([1, 2]))
    assert not checkpoint_complete(folder)
