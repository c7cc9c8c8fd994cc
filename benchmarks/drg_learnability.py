"""Does the RL loop learn? SFT a tiny local model on one synthetic split, GRPO it on another, and
evaluate both on held-out synthetic cases with the same sampling (CPU, minutes).

    python benchmarks/drg_learnability.py [--recipe tiny/vanilla_dense] [--out runs/learnability]
    python benchmarks/drg_learnability.py --setup-only --out runs/tiny-drg   # files the tiny recipes use

Pipeline: ``clinrl drg synth`` → ``prepare`` → ``split`` (50/50) → a byte-level BPE tokenizer trained on
the synthetic notes and prompts → a random-init 3-layer, 128-wide Qwen2 → SFT (answer-only targets,
stopped early so that the policy is only partly trained) → GRPO with a recipe from recipes/drg/ →
both evaluated on ≥ 200 test cases (n samples each, T 0.6, top-p 0.95). The last line printed is one
JSON object: recipe, sft_pass1, grpo_pass1, sft_maj, grpo_maj, n_test, minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from clinrl.drg.prompts import MS_DRG_PRIMER, QUESTION, SYSTEM_PROMPT  # noqa: E402

INSTRUCTION_TEXTS = [SYSTEM_PROMPT, MS_DRG_PRIMER, QUESTION]
CLINRL = [sys.executable, "-m", "clinrl"]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, cwd=REPO)


def setup(out: Path, n_notes: int, classes: int, seed: int, max_prompt_tokens: int) -> dict:
    """Synthetic data, split, tokenizer and random-init model under ``out`` (idempotent)."""
    import pandas as pd

    from clinrl.drg.prompts import format_completion
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer

    if not (out / "split" / "rl.parquet").is_file():
        run([*CLINRL, "drg", "synth", "--n", str(n_notes), "--out", str(out / "raw"), "--seed", str(seed),
             "--classes", str(classes), "--quiet"])
        run([*CLINRL, "drg", "prepare", "--discharge", str(out / "raw" / "discharge.csv.gz"), "--drgcodes",
             str(out / "raw" / "drgcodes.csv.gz"), "--out", str(out / "prep"), "--test-size", "0.12", "--quiet"])
        run([*CLINRL, "drg", "split", "--data", str(out / "prep" / "train.parquet"), "--out", str(out / "split"),
             "--sft-ratio", "0.5", "--seed", str(seed)])
    if not (out / "model" / "config.json").is_file():
        train = pd.read_parquet(out / "prep" / "train.parquet")
        texts = list(train["text"])
        texts += [format_completion(d) for d in train["description"].str.upper().unique()] * 20
        # The fixed instruction texts (system prompt, MS-DRG primer, question) become one token each:
        # the prompt text is unchanged, but a tiny model no longer spends ~200 of its positions on
        # boilerplate, which makes every step ~2x cheaper and leaves room for the course.
        tokenizer = train_tokenizer(texts, vocab_size=4096, extra_special_tokens=INSTRUCTION_TEXTS)
        build_tiny_model(tokenizer, TinyModelConfig(arch="qwen2", hidden_size=128, num_layers=3, seed=seed),
                         out=out / "model")
    return {"max_prompt_tokens": max_prompt_tokens}


def test_set(out: Path, tokenizer, n_test: int, max_prompt_tokens: int):
    import pandas as pd

    from clinrl.drg.ontology import load_ontology
    from clinrl.drg.prompts import build_messages, truncate_course

    test = pd.read_parquet(out / "prep" / "test.parquet").head(n_test)
    onto = load_ontology()
    prompts = [build_messages(truncate_course(t, tokenizer, max_prompt_tokens)) for t in test["text"]]
    golds = [onto.find(d).description for d in test["description"]]
    return prompts, golds


def dev_set(out: Path, tokenizer, max_prompt_tokens: int, n: int = 64):
    """A few RL-split cases to decide when SFT has produced a partly trained policy (not the test set)."""
    import pandas as pd

    from clinrl.drg.prompts import build_messages, truncate_course

    rl = pd.read_parquet(out / "split" / "rl.parquet").tail(n)
    return [build_messages(truncate_course(t, tokenizer, max_prompt_tokens)) for t in rl["text"]], list(rl["solution"])


class StopWhenPartlyTrained:
    """Trainer callback: every ``every`` steps, quick Pass@1 on dev cases (n 2); stop SFT at ``target``."""

    def __new__(cls, *args, **kwargs):
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def __init__(self, model_dir, prompts, golds, every, target):
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
                self.prompts, self.golds, self.every, self.target = prompts, golds, every, target
                self.history: list[tuple[int, float]] = []

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % self.every:
                    return
                from clinrl.drg.quick_eval import evaluate_policy

                result = evaluate_policy(model, self.tokenizer, self.prompts, self.golds, n=2, max_new_tokens=48,
                                         seed=state.global_step, progress=False)
                model.train()
                self.history.append((state.global_step, round(result.pass1, 3)))
                print(f"sft step {state.global_step}: dev Pass@1 {result.pass1:.3f}", file=sys.stderr, flush=True)
                if result.pass1 >= self.target:
                    control.should_training_stop = True

        return _Callback(*args, **kwargs)


def evaluate(model_dir: Path, prompts, golds, n: int, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clinrl.drg.quick_eval import evaluate_policy

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return evaluate_policy(model, tokenizer, prompts, golds, n=n, max_new_tokens=56, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "learnability")
    parser.add_argument("--recipe", default="tiny/no_kl", help="GRPO recipe name under recipes/drg/")
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
    from clinrl.drg.grpo import load_grpo_config, train_grpo
    from clinrl.drg.sft import load_sft_config, train_sft

    start = time.perf_counter()
    out = a.out.resolve()
    setup(out, a.n_notes, a.classes, a.seed, a.max_prompt_tokens)
    if a.setup_only:
        print(json.dumps({"out": str(out), "model": str(out / "model"), "split": str(out / "split")}))
        return
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    prompts, golds = test_set(out, tokenizer, a.n_test, a.max_prompt_tokens)

    sft_dir = out / "sft"
    if not (sft_dir / "sft_summary.json").is_file():
        import shutil

        shutil.rmtree(sft_dir, ignore_errors=True)
        dev_prompts, dev_golds = dev_set(out, tokenizer, a.max_prompt_tokens)
        stop = StopWhenPartlyTrained(out / "model", dev_prompts, dev_golds, a.sft_eval_every, a.sft_target)
        sft_cfg = load_sft_config(RECIPES_DIR / "tiny" / "sft.yaml", {
            "model": str(out / "model"), "data": str(out / "split" / "sft.parquet"), "output_dir": str(sft_dir),
            "limit": None, "max_prompt_tokens": a.max_prompt_tokens,
            "trl.max_length": a.max_prompt_tokens + 64, "trl.max_steps": a.sft_steps,
            "trl.learning_rate": a.sft_lr, "trl.per_device_train_batch_size": 16, "trl.save_strategy": "no",
            "trl.lr_scheduler_type": "constant", "trl.logging_steps": 20, "trl.seed": a.seed,
        })
        train_sft(sft_cfg, callbacks=[stop])
        print(json.dumps({"stage": "sft_dev", "history": stop.history}), file=sys.stderr)
    sft_eval = evaluate(sft_dir, prompts, golds, a.n_samples, a.seed)
    print(json.dumps({"stage": "sft", **sft_eval.as_dict()}), file=sys.stderr)

    grpo_dir = out / "grpo" / a.recipe.replace("/", "_")
    overrides = {
        "model": str(sft_dir), "data": str(out / "split" / "rl.parquet"), "output_dir": str(grpo_dir),
        "limit": None, "max_prompt_tokens": a.max_prompt_tokens,
        "trl.max_steps": a.grpo_steps, "trl.save_strategy": "no", "trl.logging_steps": 25, "trl.seed": a.seed,
        "trl.use_vllm": a.use_vllm,
        # rollouts: 4 prompts x G 8 per step, short completions (the answer-only format is ~35 tokens)
        "trl.num_generations": 8, "trl.per_device_train_batch_size": 16, "trl.max_completion_length": 48,
        "trl.learning_rate": a.grpo_lr, "trl.temperature": a.grpo_temperature,
        "trl.lr_scheduler_type": "constant_with_warmup", "trl.warmup_steps": 0.05,
    }
    overrides.update(dict(kv.split("=", 1) for kv in a.grpo))
    if grpo_dir.exists():
        import shutil

        shutil.rmtree(grpo_dir)
    grpo_cfg = load_grpo_config(resolve_recipe(a.recipe), overrides)
    train_grpo(grpo_cfg)
    grpo_eval = evaluate(grpo_dir, prompts, golds, a.n_samples, a.seed)
    print(json.dumps({"stage": "grpo", **grpo_eval.as_dict()}), file=sys.stderr)

    print(json.dumps({
        "recipe": a.recipe,
        "sft_pass1": round(100 * sft_eval.pass1, 1),
        "grpo_pass1": round(100 * grpo_eval.pass1, 1),
        "sft_maj": round(100 * sft_eval.maj, 1),
        "grpo_maj": round(100 * grpo_eval.maj, 1),
        "n_test": sft_eval.n_cases,
        "minutes": round((time.perf_counter() - start) / 60, 2),
    }))


if __name__ == "__main__":
    main()
