"""Run ``clinrl`` in a fresh process, optionally with the colocated vLLM weight sync switched off.

    python tests/engines/grpo_driver.py [--break-sync] drg grpo --recipe …

``--break-sync`` makes every weight sync a no-op, so vLLM keeps sampling from the initial policy while
the trainer's weights move: the on-policy check (``sampling/sampling_logp_difference``) must then fail.
It exists only to show that the engine tests can fail; clinrl itself has no such switch.
"""

from __future__ import annotations

import sys


def _break_sync() -> None:
    from trl.generation import vllm_generation

    from clinrl.llm import vllm_colocate

    vllm_colocate._reload_sync = lambda generation: None  # type: ignore[assignment]
    vllm_generation.VLLMGeneration.sync_weights = lambda self: None  # type: ignore[assignment]


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--break-sync":
        _break_sync()
        argv = argv[1:]
    from clinrl.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
