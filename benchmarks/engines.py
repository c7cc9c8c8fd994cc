"""Benchmark: vLLM against transformers ``generate``, side by side in one run, at a real model's shape.

The model is a random-init Qwen2.5-0.5B-shaped Qwen2 (24 layers, hidden 896, 14 heads / 2 KV heads,
MLP 4,864, vocabulary 151,936, tied embeddings; no weights are downloaded). Its tokenizer is a byte-level
BPE trained on the synthetic notes, its vocabulary padded with unreachable entries to the model's size so
that every sampled id decodes. Measured, each engine in turn in this process, both in the same dtype
(``--dtype``, bf16 by default as on GPUs; this CPU has AMX, which both engines use for bf16), vLLM with its
graph compilation unless ``--eager``:

- **rollouts** — GRPO's generation shape: 8 prompts × G 8 × 128 new tokens (EOS ignored, so both produce
  exactly 8,192 tokens); new tokens per second;
- **drg eval** — ``clinrl drg eval``'s loop (:func:`clinrl.drg.eval.evaluate.run_eval`) on ``--eval-cases``
  synthetic test cases, n 2, 64 new tokens; cases per second;
- **PRM scoring** — the bundled dev verification cases, every candidate note, with a tiny causal PRM:
  the shared-prefix fast path (transformers) against vLLM prompt log-probabilities with prefix caching
  (``clinrl.prm.vllm_score``); notes per second and the largest |ΔP(+)|.

On a GPU run it unchanged (``--device cuda`` for transformers; vLLM finds the GPU itself) and add
``--grpo-step`` to time one GRPO step of the ``best`` recipe at this shape with and without vLLM rollouts.
Prints a JSON object last with every figure and the ratios (``*_speedup`` = vLLM / transformers).

    .venv-engines/bin/python benchmarks/engines.py [--out runs/bench-engines] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

QWEN25_05B = dict(
    hidden_size=896,
    num_layers=24,
    num_heads=14,
    num_kv_heads=2,
    intermediate_size=4864,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
VOCAB = 151_936


def padded_tokenizer(tokenizer, size: int):
    """``tokenizer`` with its BPE vocabulary padded to ``size`` entries (letters-only strings that no merge
    produces), so that a model of that vocabulary decodes every id it samples."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    next_id = max([*vocab.values(), *(t["id"] for t in data["added_tokens"])]) + 1
    i = 0
    while next_id < size:
        word, n = "", i
        for _ in range(4):
            word, n = word + "bcdfghjklmnpqrstvwxz"[n % 20], n // 20
        i += 1
        if "Ġq" + word not in vocab:
            vocab["Ġq" + word] = next_id
            next_id += 1
    padded = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
    )
    padded.chat_template = tokenizer.chat_template
    return padded


def build_model(out: Path, seed: int) -> tuple[Path, Path]:
    """The synthetic DRG workspace (data, tokenizer) and the 0.5B-shaped model folder."""
    from transformers import AutoTokenizer

    from clinrl.demo.workspace import build_tiny_workspace
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model

    ws = build_tiny_workspace(out / "ws", n_notes=600, classes=6, seed=seed)
    model_dir = out / "qwen25-05b-shape"
    if not (model_dir / "config.json").is_file():
        tokenizer = padded_tokenizer(AutoTokenizer.from_pretrained(ws.model), VOCAB)
        build_tiny_model(tokenizer, TinyModelConfig(arch="qwen2", seed=seed, **QWEN25_05B), out=model_dir)
    return model_dir, ws.prepared / "test.parquet"


def rollout_prompts(tokenizer, n: int, tokens: int = 96) -> list[list[int]]:
    """``n`` different prompts of ``tokens`` token ids each."""
    text = "patient admitted with community acquired pneumonia, treated with antibiotics and fluids. " * 20
    return [tokenizer(f"Case {i}: {text}", add_special_tokens=False)["input_ids"][:tokens] for i in range(n)]


def time_rollouts_hf(model_dir: Path, prompts: list[list[int]], group: int, new: int, device: str, dtype: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
    ids = torch.tensor(prompts, device=device)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=None,
            num_return_sequences=group,
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=0,
        )
    seconds = time.perf_counter() - started
    produced = (out.shape[1] - ids.shape[1]) * out.shape[0]
    del model
    return {"seconds": round(seconds, 2), "tokens": int(produced), "tokens_per_s": round(produced / seconds, 1)}


def time_rollouts_vllm(llm, prompts: list[list[int]], group: int, new: int) -> dict:
    from vllm import SamplingParams

    params = SamplingParams(
        n=group, temperature=1.0, top_p=1.0, max_tokens=new, ignore_eos=True, seed=0, detokenize=False
    )
    started = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    seconds = time.perf_counter() - started
    produced = sum(len(o.token_ids) for r in outs for o in r.outputs)
    return {"seconds": round(seconds, 2), "tokens": int(produced), "tokens_per_s": round(produced / seconds, 1)}


def time_eval(backend, data: Path, out: Path, cases: int) -> dict:
    import shutil

    from clinrl.drg.eval.evaluate import run_eval
    from clinrl.llm.backends import SamplingParams

    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=64, seed=0)
    started = time.perf_counter()
    metrics = run_eval(
        backend, data, params, out, limit=cases, batch_size=8, max_prompt_tokens=256, progress=False, plots=False
    )
    seconds = time.perf_counter() - started
    cases_done = metrics["n_cases"]
    return {"seconds": round(seconds, 2), "cases": cases_done, "cases_per_s": round(cases_done / seconds, 3)}


def time_prm(out: Path, cases: int, args) -> dict:
    """The shared-prefix fast path (transformers) against vLLM prompt scoring with prefix caching, on the
    first ``cases`` dev verification cases: a random-init causal PRM (benchmarks/prm_scoring.py's model:
    tokenizer trained on the dev texts, 2 layers, hidden 256) saved as a PRM folder."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from prm_scoring import _cases, build

    from clinrl.prm.format import SpecialTokens
    from clinrl.prm.model import PRMMeta, save_prm
    from clinrl.prm.score import ScoreConfig, load_scorer
    from clinrl.prm.vllm_score import VLLMPRMScorer

    data = REPO / "src" / "clinrl" / "data" / "prm"
    folder = out / "prm"
    if not (folder / "clinrl_prm.json").is_file():
        shape = argparse.Namespace(vocab=8000, hidden=256, layers=2)
        build(folder, data, shape)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        meta = PRMMeta(
            head="causal-lm",
            objective="prm",
            tokens=SpecialTokens.new(),
            loss_mode="special_token",
            notes_only=False,
            max_length=16384,
            dialogue_max_tokens=None,
            base_model="random:qwen2",
        )
        save_prm(folder, model, tokenizer, meta)
    chosen = _cases(data, cases)
    notes = sum(len(c.candidates) for c in chosen)
    fast = load_scorer(folder, ScoreConfig(fast=True))
    fast.model.to(torch.float32)
    started = time.perf_counter()
    reference = [s for c in chosen for s in fast.score_notes(c.candidates)]
    fast_s = time.perf_counter() - started
    del fast
    t = time.perf_counter()
    with VLLMPRMScorer(
        folder, ScoreConfig(), dtype="float32", enforce_eager=args.device == "cpu", max_model_len=16384
    ) as scorer:
        start_s = time.perf_counter() - t
        started = time.perf_counter()
        got = [s for c in chosen for s in scorer.score_notes(c.candidates)]
        vllm_s = time.perf_counter() - started
        cached = dict(scorer.stats)
    diff = max(abs(a.p_plus - b.p_plus) for x, y in zip(reference, got) for a, b in zip(x.slots, y.slots))
    return {
        "cases": len(chosen),
        "notes": notes,
        "fast_path_s": round(fast_s, 2),
        "vllm_s": round(vllm_s, 2),
        "vllm_engine_start_s": round(start_s, 1),
        "speedup": round(fast_s / vllm_s, 2),
        "max_abs_diff_p_plus": diff,
        "vllm_stats": cached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-engines")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--eval-cases", type=int, default=16)
    parser.add_argument("--prm-cases", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="transformers' device (cuda on a GPU)")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float32"],
        help="both engines, rollouts and eval (PRM scoring always float32, to compare P(+))",
    )
    parser.add_argument("--eager", action="store_true", help="vLLM without graph compilation (faster start)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir, test = build_model(args.out, args.seed)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = rollout_prompts(tokenizer, args.prompts)
    figures: dict = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "dtype": args.dtype,
        "vllm_mode": "eager" if args.eager else "compiled",
        "shape": "Qwen2.5-0.5B (random init)",
        "vocab": len(tokenizer),
        "rollout_shape": f"{args.prompts} prompts x G {args.group} x {args.new_tokens} new tokens",
    }

    hf = time_rollouts_hf(model_dir, prompts, args.group, args.new_tokens, args.device, args.dtype)
    from clinrl.llm.backends import TransformersBackend, VLLMBackend

    # on a CPU vLLM's memory share is of system memory and covers the weights (2 GB here) + KV cache
    vllm_backend = VLLMBackend(
        str(model_dir),
        engine={"dtype": args.dtype, "enforce_eager": args.eager},
        max_model_len=1024,
        gpu_memory_utilization=0.25 if args.device == "cpu" else None,
    )
    t = time.perf_counter()
    llm = vllm_backend._engine()
    figures["vllm_engine_start_s"] = round(time.perf_counter() - t, 1)
    vl = time_rollouts_vllm(llm, prompts, args.group, args.new_tokens)
    figures["rollouts"] = {"transformers": hf, "vllm": vl, "speedup": round(vl["tokens_per_s"] / hf["tokens_per_s"], 2)}

    ev_vllm = time_eval(vllm_backend, test, args.out / "eval-vllm", args.eval_cases)
    del llm, vllm_backend
    import gc

    gc.collect()
    hf_backend = TransformersBackend.from_path(str(model_dir), batch_size=8, device=args.device, dtype=args.dtype)
    ev_hf = time_eval(hf_backend, test, args.out / "eval-hf", args.eval_cases)
    figures["drg_eval"] = {
        "transformers": ev_hf,
        "vllm": ev_vllm,
        "speedup": round(ev_vllm["cases_per_s"] / ev_hf["cases_per_s"], 2),
    }
    del hf_backend
    gc.collect()
    figures["prm_scoring"] = time_prm(args.out, args.prm_cases, args)
    figures["minutes"] = round((time.perf_counter() - started) / 60, 1)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
