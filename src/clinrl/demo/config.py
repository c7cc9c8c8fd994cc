"""Sizes of the demo: the defaults fit ≤ 25 minutes on 2 CPU cores; ``quick()`` runs every stage in a
minute or two (tests, a first look)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class DemoConfig:
    """What the demo runs. DRG: tiny Qwen2 on synthetic notes; PRM: the CPU MiniLM recipe on fewer notes."""

    seed: int = 0
    # torch threads: the tiny DRG model is fastest on 1 (overhead-bound); the MiniLM PRM gains from 2
    drg_threads: int = 1
    prm_threads: int = 2
    # DRG data and model
    n_notes: int = 2400
    classes: int = 19
    max_prompt_tokens: int = 144
    # DRG SFT: stop once a quick dev Pass@1 reaches sft_target (a partly trained policy, as a cold start)
    sft_max_steps: int = 300
    sft_target: float = 0.22
    sft_eval_every: int = 30
    sft_dev_cases: int = 64
    logging_steps: int = 10
    # DRG GRPO with the study's best configuration (DAPO loss + strict reward + cosine KL decay)
    grpo_recipe: str = "tiny/best"
    grpo_steps: int = 240
    grpo_batch: int = 16  # completions per step (num_generations 8 → 2 prompts)
    completion_tokens: int = 48
    # DRG evaluation before and after RL (n samples per case, T 0.6, top-p 0.95 as the study)
    n_test: int = 160
    n_samples: int = 4
    # PRM: the CPU default recipe, on max_notes of the gold + synthesized training notes
    prm_recipe: str = "prm/cpu_minilm.yaml"
    prm_notes: int = 600
    prm_eval_limit: int | None = None  # cases per verification task (None: all)

    @classmethod
    def quick(cls) -> DemoConfig:
        """Every stage, minimal sizes (the numbers mean nothing; the plumbing is real)."""
        return cls(
            n_notes=400,
            classes=8,
            sft_max_steps=6,
            sft_eval_every=3,
            sft_dev_cases=4,
            sft_target=1.1,
            logging_steps=1,
            grpo_steps=3,
            grpo_batch=8,
            completion_tokens=24,
            n_test=8,
            n_samples=2,
            prm_recipe="prm/tiny_causal.yaml",
            prm_notes=16,
            prm_eval_limit=2,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
