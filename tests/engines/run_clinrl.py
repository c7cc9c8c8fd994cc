"""What the engine tests launch on each rank: ``python -m tests.engines.run_clinrl [--kill-after N] [--] <clinrl argv>``.

* ``--kill-after N``: rank 0 SIGKILLs itself right after ``checkpoint-N`` is complete
  (:mod:`tests.reliability.interrupt`, ``after-save``); the launcher then stops the other rank.
* FSDP on CPU processes: accelerate (≤ 1.16) turns an FSDP config into plain DDP when the processes are
  CPU ones (its FSDP switch lists accelerator device types only), silently — a "FSDP" CPU run would
  test nothing. PyTorch's FSDP2 itself runs on CPU over gloo, so this test harness lifts that gate
  (:func:`allow_cpu_fsdp`) to run the real FSDP2 path here; on GPUs nothing changes.
"""

from __future__ import annotations

import os
import sys


def allow_cpu_fsdp() -> None:
    """Keep accelerate's FSDP mode (and plugin) for CPU processes when an FSDP config was launched."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = __init__


if __name__ == "__main__":
    args = sys.argv[1:]
    kill_after = None
    if args[:1] == ["--kill-after"]:
        kill_after, args = int(args[1]), args[2:]
    if args[:1] == ["--"]:  # (accelerate launch drops it)
        args = args[1:]
    allow_cpu_fsdp()
    if kill_after is not None:
        from tests.reliability.interrupt import install

        install("after-save", kill_after)
    from clinrl.cli import main

    main(args)
