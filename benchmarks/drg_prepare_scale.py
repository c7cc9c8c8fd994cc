"""Scale benchmark of ``clinrl drg prepare`` on SYNTHETIC MIMIC-shaped data.

Generates (or reuses) ``--n`` synthetic notes with ``clinrl.drg.synth.generate``, runs ``clinrl drg prepare`` as a
subprocess, and measures its wall time and peak resident memory: the prepare process's own high-water
mark (``VmHWM`` in ``/proc/PID/status``, which a sampler cannot miss) and the summed RSS of its process
tree, polled every 0.1 s; the larger is reported. (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is not used:
on Linux it counts the parent's resident pages at spawn time.) Prints progress to stderr and one JSON
object last on stdout.

    .venv/bin/python benchmarks/drg_prepare_scale.py                # 330,000 notes
    .venv/bin/python benchmarks/drg_prepare_scale.py --n 20000 --keep
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TARGET_NOTES_PER_S = 2000
TARGET_PEAK_RSS_MB = 4096


def log(message: str) -> None:
    print(f"[drg_prepare_scale] {message}", file=sys.stderr, flush=True)


def synthetic_data(data_dir: Path, n: int, seed: int, classes: int) -> dict:
    """Reuse ``data_dir`` if its manifest matches (n, seed, classes, generator fingerprint), else generate;
    returns the manifest."""
    from clinrl.drg.synth.generate import generator_fingerprint, write_synthetic

    manifest_path = data_dir / "synth_manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        wanted = (n, seed, classes, generator_fingerprint())
        same = (manifest.get("n"), manifest.get("seed"), len(manifest.get("classes", ())), manifest.get("fingerprint"))
        same = same == wanted
        if same and all((data_dir / f).exists() for f in manifest["files"].values()):
            log(f"reusing synthetic data in {data_dir} ({n} notes)")
            return manifest
    log(f"generating {n} synthetic notes into {data_dir}")
    summary = write_synthetic(data_dir, n, seed=seed, classes=classes, progress=True)
    log(f"generated in {summary.seconds:.1f} s")
    return json.loads(summary.manifest.read_text())


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of ``pid`` in bytes (0 if unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class TreePeak:
    """Polls a process's own high-water mark and the summed RSS of it and its descendants."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.peak = 0
        self.hwm = 0
        self._pid = pid
        self._stop = threading.Event()
        self._proc = psutil.Process(pid)
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
                self.hwm = max(self.hwm, _vm_hwm(self._pid))
            except psutil.Error:
                return
            self._stop.wait(interval)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.hwm, self.peak


def run_prepare(cmd: list[str], log_path: Path) -> tuple[int, float, float, float]:
    """Run ``cmd``; returns (exit code, seconds, its own peak RSS MB, process-tree peak RSS MB)."""
    with log_path.open("w") as log_file:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
        tree = TreePeak(child.pid)
        rc = child.wait()
        seconds = time.perf_counter() - start
        hwm, tree_peak = tree.stop()
    return rc, seconds, hwm / 2**20, tree_peak / 2**20


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=330_000, help="synthetic notes to generate (default 330000)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "runs" / "bench" / "drg_prepare_scale",
        help="where the synthetic data and prepare output go (default runs/bench/drg_prepare_scale)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the synthetic data (and output); a later run reuses data with the same n, seed, "
        "classes and generator version",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--classes", type=int, default=None, help="DRG classes in the synthetic data (default: all)")
    parser.add_argument("--split-by", default="subject", help="passed to prepare --split-by (default subject)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    from clinrl.drg.synth.generate import max_classes

    classes = args.classes or max_classes()
    info = machine()
    data_dir, out_dir = args.workdir / f"synth_n{args.n}_s{args.seed}_k{classes}", args.workdir / "prepared"
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = synthetic_data(data_dir, args.n, args.seed, classes)
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "clinrl",
        "drg",
        "prepare",
        "--discharge",
        str(data_dir / "discharge.csv.gz"),
        "--drgcodes",
        str(data_dir / "drgcodes.csv.gz"),
        "--out",
        str(out_dir),
        "--split-by",
        args.split_by,
        "--test-size",
        "0.1",
        "--min-class-count",
        "2",
        "--seed",
        "42",
    ]
    log("running: " + " ".join(cmd[1:]))
    log_path = args.workdir / "prepare.log"
    rc, seconds, single_mb, tree_mb = run_prepare(cmd, log_path)
    log(f"prepare exited {rc} after {seconds:.1f} s (log: {log_path})")

    flow: dict = {}
    flow_path = out_dir / "flow.json"
    if rc == 0 and flow_path.exists():
        flow = json.loads(flow_path.read_text())
    notes = int(flow["notes_read"]) if flow else None
    peak_mb = max(single_mb, tree_mb)
    expected = manifest["counts"]["expected_usable"]
    result = {
        "benchmark": "drg_prepare_scale",
        "synthetic": True,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "notes": notes,
        "seconds": round(seconds, 2),
        "notes_per_s": round(notes / seconds, 1) if notes and seconds else None,
        "peak_rss_mb": round(peak_mb, 1),
        "peak_rss_single_process_mb": round(single_mb, 1),
        "peak_rss_tree_mb": round(tree_mb, 1),
        "target_notes_per_s": TARGET_NOTES_PER_S,
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
        "prepare_exit_code": rc,
        "flow": {k: v for k, v in flow.items() if isinstance(v, int)},
        "synth_expected_usable": expected,
        "kept_equals_synth_expected_usable": flow.get("kept") == expected if flow else None,
        "synth_seconds": manifest.get("seconds"),
        "command": " ".join(cmd[1:]),
    }
    result["ok"] = bool(flow and result["notes_per_s"] >= TARGET_NOTES_PER_S and peak_mb <= TARGET_PEAK_RSS_MB)
    if rc != 0:
        log("prepare failed; last lines of its log:\n" + "\n".join(log_path.read_text().splitlines()[-15:]))
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if rc != 0:
        return 2
    return 1 if args.strict and not result["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
