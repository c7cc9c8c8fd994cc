"""The distributed GRPO path on CPU: a few GRPO steps of a tiny recipe under 2 processes (gloo).

    python benchmarks/drg_distributed.py [--recipe tiny/best] [--steps 3] [--out runs/drg_distributed]

Builds the tiny workspace if needed (``benchmarks/drg_learnability.py --setup-only``), then runs

    torchrun --nproc_per_node 2 -m clinrl drg grpo --recipe tiny/best …

(accelerate's own multi-CPU launcher goes through mpirun; torchrun needs nothing extra, and
transformers picks the gloo backend for CPU processes.)
and checks that it exits 0 and reached the requested step. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="tiny/best")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--workspace", type=Path, default=REPO / "runs" / "tiny-drg")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "drg_distributed")
    a = parser.parse_args()

    if not (a.workspace / "model" / "config.json").is_file():
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "drg_learnability.py"),
                "--setup-only",
                "--out",
                str(a.workspace),
                "--threads",
                "1",
            ],
            check=True,
            cwd=REPO,
        )
    shutil.rmtree(a.out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(a.processes),
        "--master_port",
        str(a.port),
        "-m",
        "clinrl",
        "drg",
        "grpo",
        "--recipe",
        a.recipe,
        f"--model={a.workspace / 'model'}",
        f"--data={a.workspace / 'split' / 'rl.parquet'}",
        f"--output_dir={a.out}",
        f"--training.max_steps={a.steps}",
        "--training.save_strategy=no",
        # G 4 completions per prompt, 2 per process: each group spans both processes (tests the gathers)
        "--training.num_generations=4",
        "--training.per_device_train_batch_size=2",
        "--training.disable_tqdm=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    sys.stderr.write(proc.stderr[-4000:])
    summary_file = a.out / "grpo_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    ok = proc.returncode == 0 and summary.get("global_step") == a.steps
    print(
        json.dumps(
            {
                "recipe": a.recipe,
                "processes": a.processes,
                "backend": "gloo",
                "steps": summary.get("global_step"),
                "returncode": proc.returncode,
                "ok": ok,
                "seconds": round(seconds, 1),
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
