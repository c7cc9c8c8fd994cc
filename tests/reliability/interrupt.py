"""Run the real ``clinrl`` command line and SIGKILL it at a chosen point of checkpoint ``N``:

    python -m tests.reliability.interrupt {after-save|mid-save} N -- drg sft --config … [overrides]

``after-save``: right after ``checkpoint-N`` is complete (its ``trainer_state.json`` written), i.e. while
training step N+1. ``mid-save``: instead of writing ``checkpoint-N/trainer_state.json``, after the weights,
optimizer and RNG state are on disk: a kill while saving. Works for the TRL trainers (``TrainerState``)
and the PRM trainer (its own loop writes the same file name last).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _is_target(path: object, step: int) -> bool:
    p = Path(str(path))
    return p.name == "trainer_state.json" and p.parent.name == f"checkpoint-{step}"


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(how: str, step: int) -> None:
    from transformers.trainer_callback import TrainerState

    import clinrl.prm.train as prm_train

    original_state = TrainerState.save_to_json
    original_json = prm_train.write_json_atomic

    def save_to_json(self, json_path):
        if how == "mid-save" and _is_target(json_path, step):
            _die()
        original_state(self, json_path)
        if how == "after-save" and _is_target(json_path, step):
            _die()

    def write_json_atomic(path, obj, **kwargs):
        if how == "mid-save" and _is_target(path, step):
            _die()
        original_json(path, obj, **kwargs)
        if how == "after-save" and _is_target(path, step):
            _die()

    TrainerState.save_to_json = save_to_json
    prm_train.write_json_atomic = write_json_atomic


if __name__ == "__main__":
    how, step, sep, *argv = sys.argv[1:]
    assert how in ("after-save", "mid-save") and sep == "--", sys.argv
    import torch

    torch.set_num_threads(1)
    install(how, int(step))
    from clinrl.cli import main

    main(argv)
