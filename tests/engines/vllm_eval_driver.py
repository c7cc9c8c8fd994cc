"""One vLLM engine, every `drg eval` path the engine tests check (run in its own process: vLLM spawns).

    python tests/engines/vllm_eval_driver.py MODEL DATA OUT

Writes under OUT: ``greedy/`` (24 cases, greedy), ``single/`` (12 cases, n 2, T 1), ``part0/`` and ``part1/``
(the same as two shards), ``constrained/`` (12 cases, n 2, T 1, answers restricted to v34 descriptions),
and prints a JSON line of timings last.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

GREEDY_CASES, CASES, PROMPT_TOKENS = 24, 12, 144


def main() -> None:
    from clinrl.drg.eval.evaluate import run_eval
    from clinrl.llm.backends import SamplingParams, VLLMBackend

    model, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    started = time.perf_counter()
    backend = VLLMBackend(model, gpu_memory_utilization=0.08, engine={"dtype": "float32", "enforce_eager": True})
    backend._engine()
    timings = {"engine_start_s": round(time.perf_counter() - started, 1)}
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=48, seed=0)
    sampled = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_new_tokens=48, seed=3)
    common = dict(max_prompt_tokens=PROMPT_TOKENS, progress=False, plots=False, meta={"model": model})
    runs = [
        ("greedy", greedy, dict(limit=GREEDY_CASES, batch_size=8)),
        ("single", sampled, dict(limit=CASES, batch_size=4)),
        ("part0", sampled, dict(limit=CASES, batch_size=4, shard=(0, 2))),
        ("part1", sampled, dict(limit=CASES, batch_size=4, shard=(1, 2))),
        ("constrained", sampled, dict(limit=CASES, batch_size=4, constrained=True)),
    ]
    for name, params, options in runs:
        t = time.perf_counter()
        metrics = run_eval(backend, data, params, out / name, **common, **options)
        timings[f"{name}_s"] = round(time.perf_counter() - t, 2)
        timings[f"{name}_cases_per_s"] = round(metrics["n_cases"] / max(time.perf_counter() - t, 1e-9), 2)
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
