"""One tiny training workspace shared by the SFT/GRPO/recipe tests (built once per session, ~5 s):
synthetic notes → prepare → 50/50 split, a tokenizer trained on them, a 2-layer 32-wide Qwen2, and a
difficulty tag file for the curriculum recipes. No clinical text: everything is SYNTHETIC."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from transformers import TrainerCallback

MAX_PROMPT_TOKENS = 480


@dataclass(frozen=True)
class TinyWorkspace:
    root: Path
    model: Path
    sft: Path
    rl: Path
    difficulty: Path

    def grpo_overrides(self, out: Path, **extra) -> dict:
        """Overrides that point a tiny GRPO recipe at this workspace and keep it to one short step."""
        return {
            "model": str(self.model),
            "data": str(self.rl),
            "output_dir": str(out),
            "limit": 8,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
            "difficulty_file": str(self.difficulty),
            "training.max_steps": 1,
            "training.num_generations": 2,
            "training.per_device_train_batch_size": 2,
            "training.max_completion_length": 8,
            "training.save_strategy": "no",
            "training.disable_tqdm": True,
            **extra,
        }

    def sft_overrides(self, out: Path, **extra) -> dict:
        return {
            "model": str(self.model),
            "data": str(self.sft),
            "output_dir": str(out),
            "limit": 8,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
            "training.max_length": MAX_PROMPT_TOKENS + 48,
            "training.max_steps": 2,
            "training.per_device_train_batch_size": 2,
            "training.save_strategy": "no",
            "training.disable_tqdm": True,
            **extra,
        }


@lru_cache(maxsize=1)
def tiny_workspace() -> TinyWorkspace:
    import pandas as pd
    import torch

    from clinrl.drg.prep.mimic import prepare
    from clinrl.drg.prep.split import SplitConfig, split_prepared
    from clinrl.drg.prompts import build_messages, format_completion
    from clinrl.drg.synth.generate import write_synthetic
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="clinrl-tiny-train-"))
    write_synthetic(root / "raw", 240, seed=1, classes=6, progress=False)
    prepare(root / "raw" / "discharge.csv.gz", root / "raw" / "drgcodes.csv.gz", root / "prep", progress=False)
    split_prepared(root / "prep" / "train.parquet", root / "split", SplitConfig(sft_ratio=0.5, seed=1))
    train = pd.read_parquet(root / "prep" / "train.parquet")
    texts = list(train["text"]) + [m["content"] for m in build_messages("")] * 20
    texts += [format_completion(d) for d in train["description"].str.upper().unique()] * 10
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    build_tiny_model(
        tokenizer,
        TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64),
        out=root / "model",
    )
    rl = pd.read_parquet(root / "split" / "rl.parquet")
    tags = ["easy", "hard", "mixed"]
    with (root / "difficulty.jsonl").open("w", encoding="utf-8") as fh:
        for i, hadm in enumerate(rl["hadm_id"]):
            fh.write(json.dumps({"hadm_id": int(hadm), "difficulty": tags[i % 3]}) + "\n")
    return TinyWorkspace(
        root, root / "model", root / "split" / "sft.parquet", root / "split" / "rl.parquet", root / "difficulty.jsonl"
    )


class StopAt(TrainerCallback):
    """Simulates an interruption: stop training after ``step`` optimizer steps."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
