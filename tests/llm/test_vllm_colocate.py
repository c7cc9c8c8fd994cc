"""The vLLM colocate glue without vLLM: recipe engine options are checked, modules that share a weight
are re-processed after a reload, and trainers without a colocated engine are left alone. The engine tier
(tests/engines/test_vllm_grpo.py) runs the real thing."""

from __future__ import annotations

import pytest
import torch

from clinrl.errors import ClinrlError
from clinrl.llm import vllm_colocate


def test_unknown_engine_options_are_refused_before_anything_loads():
    with pytest.raises(ClinrlError, match="gpu_memory"):
        with vllm_colocate.engine_options({"enforce_eager": True, "gpu_memory": 0.5}):
            pass
    with vllm_colocate.engine_options({}):  # nothing to add: TRL's call is left as it is
        pass


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[torch.nn.Module] = []

    def process_weights_after_loading(self, module: torch.nn.Module) -> None:
        self.seen.append(module)


def test_modules_sharing_a_weight_are_processed_again():
    embed, head, other = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False), torch.nn.Linear(4, 4)
    head.weight = embed.weight  # tied, as vLLM ties an LM head to the embedding
    recorder = _Recorder()
    for module in (embed, head, other):
        module.quant_method = recorder
    vllm_colocate._reprocess_tied(torch.nn.ModuleList([embed, head, other]))
    assert recorder.seen == [embed, head]  # the untied layer was processed by the reload itself


def test_trainers_without_a_colocated_engine_are_left_alone():
    class Trainer:
        vllm_generation = None

    assert vllm_colocate.install_weight_sync(Trainer()) is False
    vllm_colocate.shutdown(Trainer())  # nothing to stop
