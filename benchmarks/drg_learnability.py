"""Does the RL loop learn? SFT a tiny local model on one synthetic split, GRPO it on another, and
evaluate both on held-out synthetic cases with the same sampling (CPU, minutes).

    python benchmarks/drg_learnability.py [--recipe tiny/vanilla_dense] [--out runs/learnability]
    python benchmarks/drg_learnability.py --setup-only --out runs/tiny-drg   # = clinrl drg tiny-workspace

Pipeline: ``clinrl drg synth`` → ``prepare`` → ``split`` (50/50) → a byte-level BPE tokenizer trained on
the synthetic notes and prompts → a random-init 3-layer, 128-wide Qwen2 → SFT (answer-only targets,
stopped early so that the policy is only partly trained) → GRPO with a packaged drg recipe (`clinrl recipes drg`) →
both evaluated on ≥ 200 test cases (n samples each, T 0.6, top-p 0.95). The last line printed is one
JSON object: recipe, sft_pass1, grpo_pass1, sft_maj, grpo_maj, n_test, minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def evaluate(model_dir: Path, prompts, golds, n: int, seed: int) -> dict:
    """Metrics (``clinrl.drg.eval.metrics``) of ``n`` samples per prompt, T 0.6, top-p 0.95."""
    from clinrl.drg.eval.evaluate import evaluate_prompts
    from clinrl.llm.backends import SamplingParams, TransformersBackend

    backend = TransformersBackend.from_path(str(model_dir), batch_size=32, progress=True)
    params = SamplingParams(n=n, temperature=0.6, top_p=0.95, max_new_tokens=56, seed=seed)
    return evaluate_prompts(backend, prompts, golds, params, ks=[n])


def headline(metrics: dict) -> dict:
    n = str(metrics["n_samples"])
    return {
        "pass1": metrics["drg"]["pass@1"],
        "maj": metrics["drg"]["maj@k"][n],
        "pass_n": metrics["drg"]["pass@k"][n],
        "format_ok": 1 - metrics["format_failure_rate"],
        "invalid": metrics["invalid_answer_rate"],
        "n_cases": metrics["n_cases"],
        "n_samples": metrics["n_samples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "learnability")
    parser.add_argument("--recipe", default="tiny/no_kl", help="GRPO recipe name (clinrl recipes drg)")
    parser.add_argument("--n-notes", type=int, default=2400)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--n-test", type=int, default=240)
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--max-prompt-tokens", type=int, default=144)
    parser.add_argument("--sft-steps", type=int, default=300, help="cap on SFT steps")
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--sft-eval-every", type=int, default=30)
    parser.add_argument("--sft-target", type=float, default=0.22, help="stop SFT at this dev Pass@1")
    parser.add_argument("--grpo-steps", type=int, default=400)
    parser.add_argument("--grpo-lr", type=float, default=3e-5)
    parser.add_argument("--grpo-temperature", type=float, default=0.8)
    parser.add_argument("--grpo", nargs="*", default=[], help="extra GRPO overrides: key=value (dotted keys)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest on a busy 2-core box")
    parser.add_argument("--setup-only", action="store_true")
    parser.add_argument("--use-vllm", action="store_true", help="GPU only: vLLM colocate rollouts")
    a = parser.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from transformers import AutoTokenizer

    from clinrl.config import RECIPES_DIR, resolve_recipe
    from clinrl.demo.workspace import (
        build_tiny_workspace,
        grpo_overrides,
        partly_trained_stop,
        sft_overrides,
        tiny_prompts,
    )
    from clinrl.drg.train.grpo import load_grpo_config, train_grpo
    from clinrl.drg.train.sft import load_sft_config, train_sft

    start = time.perf_counter()
    out = a.out.resolve()
    ws = build_tiny_workspace(out, n_notes=a.n_notes, classes=a.classes, seed=a.seed, quiet=False)
    if a.setup_only:
        print(json.dumps({"out": str(out), "model": str(out / "model"), "split": str(out / "split")}))
        return
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    prompts, golds = tiny_prompts(out / "prep" / "test.parquet", tokenizer, a.max_prompt_tokens, head=a.n_test)

    sft_dir = out / "sft"
    if not (sft_dir / "sft_summary.json").is_file():
        import shutil

        shutil.rmtree(sft_dir, ignore_errors=True)
        dev_prompts, dev_golds = tiny_prompts(out / "split" / "rl.parquet", tokenizer, a.max_prompt_tokens, tail=64)
        stop = partly_trained_stop(out / "model", dev_prompts, dev_golds, every=a.sft_eval_every, target=a.sft_target)
        sft_cfg = load_sft_config(
            RECIPES_DIR / "tiny" / "sft.yaml",
            sft_overrides(
                ws,
                sft_dir,
                max_prompt_tokens=a.max_prompt_tokens,
                max_steps=a.sft_steps,
                learning_rate=a.sft_lr,
                logging_steps=20,
                seed=a.seed,
            ),
        )
        train_sft(sft_cfg, callbacks=[stop])
        print(json.dumps({"stage": "sft_dev", "history": stop.history}), file=sys.stderr)
    sft_eval = headline(evaluate(sft_dir, prompts, golds, a.n_samples, a.seed))
    print(json.dumps({"stage": "sft", **sft_eval}), file=sys.stderr)

    grpo_dir = out / "grpo" / a.recipe.replace("/", "_")
    overrides = grpo_overrides(
        ws,
        sft_dir,
        grpo_dir,
        max_prompt_tokens=a.max_prompt_tokens,
        max_steps=a.grpo_steps,
        learning_rate=a.grpo_lr,
        temperature=a.grpo_temperature,
        seed=a.seed,
    )
    overrides["training.use_vllm"] = a.use_vllm
    overrides.update(dict(kv.split("=", 1) for kv in a.grpo))
    if grpo_dir.exists():
        import shutil

        shutil.rmtree(grpo_dir)
    grpo_cfg = load_grpo_config(resolve_recipe(a.recipe), overrides)
    train_grpo(grpo_cfg)
    grpo_eval = headline(evaluate(grpo_dir, prompts, golds, a.n_samples, a.seed))
    print(json.dumps({"stage": "grpo", **grpo_eval}), file=sys.stderr)

    print(
        json.dumps(
            {
                "recipe": a.recipe,
                "sft_pass1": round(100 * sft_eval["pass1"], 1),
                "grpo_pass1": round(100 * grpo_eval["pass1"], 1),
                "sft_maj": round(100 * sft_eval["maj"], 1),
                "grpo_maj": round(100 * grpo_eval["maj"], 1),
                "n_test": sft_eval["n_cases"],
                "minutes": round((time.perf_counter() - start) / 60, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
