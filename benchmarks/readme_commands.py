"""Run every ```bash block of README.md as written, in order, and report which pass.

    python benchmarks/readme_commands.py [--readme README.md] [--only 3,4] [--list] [--include-long]

Blocks run from the repository root with ``.venv/bin`` first on PATH, each in its own ``bash -e`` (so a
block's shell variables and background jobs stay inside it; exported variables too). A block whose first line
is a ``# needs: <what>`` comment is skipped and listed with that reason — used for the few commands that
need a GPU, real weights or a remote model endpoint. ``# needs: long`` (e.g. ``make demo``) runs only with
``--include-long``. The last line printed is one JSON object: blocks, passed, failed, skipped, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
NEEDS = re.compile(r"^#\s*needs:\s*(.+)$")


def blocks(readme: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```bash block."""
    text = readme.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def needs(code: str) -> str | None:
    first = code.strip().splitlines()[0] if code.strip() else ""
    match = NEEDS.match(first.strip())
    return match.group(1).strip() if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--only", default=None, help="comma-separated block numbers (1-based) to run")
    parser.add_argument("--list", action="store_true", help="list the blocks and exit")
    parser.add_argument("--include-long", action="store_true", help="also run blocks marked '# needs: long'")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per block")
    args = parser.parse_args()

    found = blocks(args.readme)
    chosen = {int(x) for x in args.only.split(",")} if args.only else None
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    results = []
    start = time.perf_counter()
    for number, (line, code) in enumerate(found, start=1):
        reason = needs(code)
        if args.list:
            print(f"[{number}] README.md:{line} {'(needs: ' + reason + ')' if reason else ''}\n{code}")
            continue
        if chosen is not None and number not in chosen:
            continue
        if reason and not (reason == "long" and args.include_long):
            results.append({"block": number, "line": line, "status": "skipped", "needs": reason})
            print(f"[{number}] line {line}: skipped (needs: {reason})", file=sys.stderr)
            continue
        t = time.perf_counter()
        try:
            proc = subprocess.run(["bash", "-e", "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=args.timeout)
            status = "passed" if proc.returncode == 0 else "failed"
            tail = (proc.stdout + proc.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            status, tail = "failed", f"timed out after {args.timeout:.0f} s"
        seconds = round(time.perf_counter() - t, 1)
        results.append({"block": number, "line": line, "status": status, "seconds": seconds})
        print(f"[{number}] line {line}: {status} in {seconds} s", file=sys.stderr)
        if status == "failed":
            print(tail, file=sys.stderr)
    if args.list:
        return
    summary = {
        "blocks": len(results),
        "passed": sum(r["status"] == "passed" for r in results),
        "failed": [r["block"] for r in results if r["status"] == "failed"],
        "skipped": {r["block"]: r["needs"] for r in results if r["status"] == "skipped"},
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
