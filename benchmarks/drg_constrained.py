"""What do constrained answers change? A partly trained tiny DRG coder evaluated twice on the same held-out
synthetic cases with the same sampling: free answers, then answers restricted to v34 descriptions (the
prefix-trie logits processor of ``clinrl.drg.eval.constrained``). CPU, a few minutes.

    python benchmarks/drg_constrained.py [--out runs/constrained] [--n-test 120] [--n-samples 4]

Pipeline: the learnability benchmark's setup (synthetic notes → prepare → split, a tokenizer and a
random-init 3-layer, 128-wide Qwen2; reused when present) → a short answer-only SFT (``--sft-steps``,
deliberately under-trained so that some answers are misspelled) → ``clinrl.drg.eval.evaluate.run_eval`` with
and without ``constrained=True``. The last line printed is one JSON object: per mode the invalid-answer
and format-failure rates, DRG Pass@1, Maj@n and Pass@n, and the minutes taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "constrained")
    parser.add_argument("--n-notes", type=int, default=2400)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--n-test", type=int, default=120)
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--max-prompt-tokens", type=int, default=144)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sft-steps", type=int, default=120)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from drg_learnability import setup

    from clinrl.config import RECIPES_DIR
    from clinrl.drg.eval.evaluate import run_eval
    from clinrl.drg.train.sft import load_sft_config, train_sft
    from clinrl.llm.backends import SamplingParams, TransformersBackend

    start = time.perf_counter()
    out = a.out.resolve()
    setup(out, a.n_notes, a.classes, a.seed, a.max_prompt_tokens)
    sft_dir = out / "sft"
    if not (sft_dir / "sft_summary.json").is_file():
        cfg = load_sft_config(
            RECIPES_DIR / "tiny" / "sft.yaml",
            {
                "model": str(out / "model"),
                "data": str(out / "split" / "sft.parquet"),
                "output_dir": str(sft_dir),
                "limit": None,
                "max_prompt_tokens": a.max_prompt_tokens,
                "training.max_length": a.max_prompt_tokens + 64,
                "training.max_steps": a.sft_steps,
                "training.learning_rate": a.sft_lr,
                "training.per_device_train_batch_size": 16,
                "training.save_strategy": "no",
                "training.lr_scheduler_type": "constant",
                "training.logging_steps": 20,
                "seed": a.seed,
            },
        )
        train_sft(cfg)
    sft_minutes = (time.perf_counter() - start) / 60
    backend = TransformersBackend.from_path(str(sft_dir), batch_size=32)
    params = SamplingParams(n=a.n_samples, temperature=0.6, top_p=0.95, max_new_tokens=a.max_new_tokens, seed=a.seed)
    n = str(a.n_samples)
    result: dict = {"n_test": a.n_test, "n_samples": a.n_samples, "sft_steps": a.sft_steps}
    for mode, constrained in (("free", False), ("constrained", True)):
        t0 = time.perf_counter()
        m = run_eval(
            backend,
            out / "prep" / "test.parquet",
            params,
            out / f"eval_{mode}",
            limit=a.n_test,
            constrained=constrained,
            batch_size=16,
            max_prompt_tokens=a.max_prompt_tokens,
            meta={"model": str(sft_dir)},
        )
        result[mode] = {
            "invalid_answer_rate": round(100 * m["invalid_answer_rate"], 1),
            "format_failure_rate": round(100 * m["format_failure_rate"], 1),
            "drg_pass1": round(100 * m["drg"]["pass@1"], 1),
            f"drg_maj{n}": round(100 * m["drg"]["maj@k"][n], 1),
            f"drg_pass{n}": round(100 * m["drg"]["pass@k"][n], 1),
            "principal_pass1": round(100 * m["principal"]["pass@1"], 1),
            "eval_minutes": round((time.perf_counter() - t0) / 60, 2),
        }
        print(json.dumps({"mode": mode, **result[mode]}), file=sys.stderr, flush=True)
    result["sft_minutes"] = round(sft_minutes, 2)
    result["minutes"] = round((time.perf_counter() - start) / 60, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
