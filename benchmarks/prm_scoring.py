"""Benchmark: PRM scoring, the straightforward procedure vs the shared-prefix fast path.

On the dev verification cases (every candidate — gold + error samples — of the first ``--cases`` cases, all
100 by default), with a small locally initialised causal LM (a byte-level BPE tokenizer trained on the dev
dialogues and notes, vocabulary 8,000, the PRM special tokens added; a random-init Qwen2 model, hidden 256,
2 layers), score every candidate

- *reference*: one note at a time, full forward pass, logits at every position, then read the label slots;
- *fast*: the prompt+dialogue prefix once per case (KV cache), note continuations batched, LM head only at
  the structural-token positions (:mod:`clinrl.prm.fastpath`).

Timing: both procedures in this process, interleaved case by case (which one goes first alternates), after
one untimed warm-up case, so that load from other processes on a shared machine hits both alike. Memory:
each procedure again in its own subprocess on the first ``--memory-cases`` cases; the peak resident set
size during scoring minus the resident size just before it (Linux: the high-water mark is reset through
``/proc/self/clear_refs``, then read from ``VmHWM``). Unlike tracemalloc this counts torch's allocator.
Prints a JSON object last: ``{"reference_s", "fast_s", "speedup", "max_abs_diff", "peak_mb_reference",
"peak_mb_fast", "n_cases", "n_notes", …}``.

    .venv/bin/python benchmarks/prm_scoring.py [--cases 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cases(data: Path, n_cases: int):
    from clinrl.prm.evaluate import load_dev_cases

    return load_dev_cases(data)[0][:n_cases]


def build(out: Path, data: Path, args: argparse.Namespace) -> dict:
    """Tokenizer trained on the dev dialogues + notes, PRM tokens added, random Qwen2 model; saved to ``out``."""
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer
    from clinrl.prm.format import SpecialTokens

    cases = _cases(data, 100)
    texts = [c.candidates[0].dialogue for c in cases] + [n.text() for c in cases for n in c.candidates]
    tokenizer = train_tokenizer(texts, args.vocab)
    SpecialTokens.new().add_to_tokenizer(tokenizer)
    cfg = TinyModelConfig(arch="qwen2", hidden_size=args.hidden, num_layers=args.layers, num_heads=4, num_kv_heads=2,
                          intermediate_size=3 * args.hidden, max_position_embeddings=16384)  # fmt: skip
    model = build_tiny_model(tokenizer, cfg, out=out)
    return {"vocab": len(tokenizer), "hidden": args.hidden, "layers": args.layers,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}  # fmt: skip


def _scorers(model_dir: str, batch_size: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clinrl.prm.format import SpecialTokens
    from clinrl.prm.score import PRMScorer, ScoreConfig

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return {
        mode: PRMScorer(model, tokenizer, SpecialTokens.new(), config=ScoreConfig(fast=fast, batch_size=batch_size))
        for mode, fast in (("reference", False), ("fast", True))
    }, tokenizer


def timed(args: argparse.Namespace, model_dir: str) -> dict:
    """Both procedures, interleaved case by case; returns seconds and every slot probability per procedure."""
    import torch

    torch.set_num_threads(args.threads)
    scorers, tokenizer = _scorers(model_dir, args.batch_size)
    cases = _cases(Path(args.data), args.cases)
    for scorer in scorers.values():
        scorer.score_notes(cases[-1].candidates[:2])  # warm-up, untimed
        scorer.stats.clear()
    seconds = {mode: 0.0 for mode in scorers}
    probs: dict[str, list[list[float]]] = {mode: [] for mode in scorers}
    for k, case in enumerate(cases):
        order = ("reference", "fast") if k % 2 == 0 else ("fast", "reference")
        for mode in order:
            start = time.perf_counter()
            scored = scorers[mode].score_notes(case.candidates)
            seconds[mode] += time.perf_counter() - start
            probs[mode] += [[s.p_plus for s in n.slots] for n in scored]
        print(f"\rcase {k + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    tokens = sum(len(tokenizer(c.candidates[0].dialogue)["input_ids"]) for c in cases) / len(cases)
    return {"seconds": seconds, "probs": probs, "paths": dict(scorers["fast"].stats), "dialogue_tokens": tokens}


def worker(args: argparse.Namespace) -> None:
    """Memory of one procedure alone: peak RSS during scoring minus RSS before; written to ``--out``."""
    import torch

    torch.set_num_threads(args.threads)
    scorer = _scorers(args.model, args.batch_size)[0][args.worker]
    cases = _cases(Path(args.data), args.cases)
    scorer.score_notes(cases[-1].candidates[:2])  # warm-up: lazy initialisation is not scoring memory
    exact = _reset_peak()
    before = _status_kb("VmRSS")
    for case in cases:
        scorer.score_notes(case.candidates)
    peak = _status_kb("VmHWM")
    Path(args.out).write_text(json.dumps({"peak_mb": max(0, peak - before) / 1024, "peak_exact": exact}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="PRM data folder (default: the bundled dev data)")
    parser.add_argument("--cases", type=int, default=100, help="first N dev cases (all candidates of each)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--memory-cases", type=int, default=10, help="cases per memory subprocess")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per procedure (shared machine)")
    parser.add_argument("--worker", choices=["reference", "fast"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data is None:
        from clinrl.prm import demo_data_dir

        args.data = str(demo_data_dir())
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        info = build(model_dir, Path(args.data), args)
        memory = {}
        for mode in ("reference", "fast"):
            out = Path(tmp) / f"{mode}.json"
            cmd = [sys.executable, __file__, "--worker", mode, "--model", str(model_dir), "--out", str(out),
                   "--data", args.data, "--cases", str(min(args.memory_cases, args.cases)),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]  # fmt: skip
            print(f"memory: {mode} …", file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True)
            memory[mode] = json.loads(out.read_text())
        print("timing both, interleaved …", file=sys.stderr, flush=True)
        result = timed(args, str(model_dir))
    ref, fast = result["probs"]["reference"], result["probs"]["fast"]
    assert [len(x) for x in ref] == [len(x) for x in fast]
    diff = max(abs(a - b) for xs, ys in zip(ref, fast) for a, b in zip(xs, ys))
    seconds = result["seconds"]
    exact = memory["reference"]["peak_exact"] and memory["fast"]["peak_exact"]
    summary = {
        "reference_s": round(seconds["reference"], 2), "fast_s": round(seconds["fast"], 2),
        "speedup": round(seconds["reference"] / seconds["fast"], 2), "max_abs_diff": diff,
        "peak_mb_reference": round(memory["reference"]["peak_mb"], 1),
        "peak_mb_fast": round(memory["fast"]["peak_mb"], 1),
        "peak_mb_method": f"RSS high-water mark minus RSS before scoring, one subprocess per procedure, "
        f"first {min(args.memory_cases, args.cases)} cases" + ("" if exact else " (peak not reset: lifetime peak)"),
        "n_cases": args.cases, "n_notes": len(ref), "n_slots": sum(len(x) for x in ref),
        "mean_dialogue_tokens": round(result["dialogue_tokens"], 1), "batch_size": args.batch_size,
        "threads": args.threads, "paths_fast": result["paths"], "model": info, "dtype": "float32",
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
