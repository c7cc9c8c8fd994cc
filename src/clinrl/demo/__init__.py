"""``clinrl demo``: both systems end to end on built-in data, CPU only, then ``report.html``.

DRG: synthetic MIMIC-shaped notes → ``prepare`` (exclusion flow) → split → SFT of a tiny local model →
evaluation → GRPO (the study's best recipe) → evaluation. PRM: the bundled PRM-Clinic dev data → label check
→ error synthesis → CPU PRM → gold selection, step-level detection and A-Prefer dev accuracy → Best-of-N.
Stages that finished are not redone when the demo is run again into the same folder.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from clinrl.demo.config import DemoConfig
from clinrl.io import write_json_atomic

__all__ = ["DemoConfig", "run_demo"]

console = Console(stderr=True)


def _section(title: str) -> None:
    console.rule(f"[bold]{title}")


def _machine() -> str:
    import os

    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"


def run_demo(
    out: str | Path = "runs/demo", config: DemoConfig | None = None, *, parts: tuple[str, ...] = ("drg", "prm")
) -> dict[str, Any]:
    """Run the demo into ``out``; write ``summary.json`` and ``report.html``; return the summary."""
    import torch

    from clinrl.demo.report import write_report  # lazy: a cycle: the part imports this package

    cfg = config or DemoConfig()
    out = Path(out)
    seconds: dict[str, float] = {}
    summary: dict[str, Any] = {}
    start = time.perf_counter()
    if "drg" in parts:
        from clinrl.demo.drg import run_drg  # lazy: a cycle: the part imports this package

        t = time.perf_counter()
        torch.set_num_threads(cfg.drg_threads)
        summary["drg"] = run_drg(out / "drg", cfg, _section, console)
        seconds["drg"] = round(time.perf_counter() - t, 1)
    if "prm" in parts:
        from clinrl.demo.prm import run_prm  # lazy: a cycle: the part imports this package

        t = time.perf_counter()
        torch.set_num_threads(cfg.prm_threads)
        summary["prm"] = run_prm(out / "prm", cfg, _section, console)
        seconds["prm"] = round(time.perf_counter() - t, 1)
    seconds["total"] = round(time.perf_counter() - start, 1)
    summary["meta"] = {
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "seconds": seconds,
        "config": cfg.to_dict(),
    }
    write_json_atomic(out / "summary.json", summary)
    report = write_report(summary, out / "report.html")
    _section("done")
    _print_headline(summary, out, report)
    return summary


def _print_headline(summary: dict[str, Any], out: Path, report: Path) -> None:
    lines = []
    drg = summary.get("drg")
    if drg:
        flow = drg["flow"]
        before, after = drg["eval"]["sft"]["drg"]["pass@1"], drg["eval"]["grpo"]["drg"]["pass@1"]
        lines.append(
            f"DRG: {flow['notes_read']} notes read, {flow['kept']} kept in {flow['n_classes']} classes; "
            f"Pass@1 {100 * before:.1f} % after SFT → {100 * after:.1f} % after GRPO."
        )
    prm = summary.get("prm")
    if prm:
        sel = prm["selection"]["prm"]["sources"]
        accs = ", ".join(f"{k} {100 * v['accuracy']:.1f} %" for k, v in sel.items())
        pref = prm["preference"]["prm"]["accuracy"]
        lines.append(f"PRM: gold picked {accs} (random {_random_line(prm)}); A-Prefer dev {100 * pref:.1f} %.")
    lines.append(
        f"Report: {report}   (summary: {out / 'summary.json'}; took {summary['meta']['seconds']['total']:.0f} s)"
    )
    console.print("\n".join(lines))


def _random_line(prm: dict[str, Any]) -> str:
    return ", ".join(f"{100 * v['accuracy']:.1f} %" for v in prm["selection"]["random"]["sources"].values())
