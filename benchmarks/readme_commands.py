"""Run every ```bash block of README.md as written, in order, and report which pass.

    python benchmarks/readme_commands.py [--readme README.md] [--only 3,4] [--list] [--include-long]
                                         [--endpoint-server vllm [--endpoint-model DIR]]

Blocks run from the repository root with ``.venv/bin`` first on PATH, each in its own ``bash -e`` (so a
block's shell variables and background jobs stay inside it; exported variables too). A block whose first line
is a ``# needs: <what>`` comment is skipped and listed with that reason — used for the few commands that
need a GPU, real weights or a remote model endpoint. ``# needs: long`` (e.g. ``make demo``) runs only with
``--include-long``. The last line printed is one JSON object: blocks, passed, failed, skipped, seconds.

``--endpoint-server vllm`` runs the endpoint blocks too (``# needs: an OpenAI-compatible …`` and nothing
else): before the first one, vLLM's OpenAI server (``python -m vllm.entrypoints.openai.api_server``, with
the interpreter running this script, so run it from a venv with vLLM) starts on 127.0.0.1 at the port the
block's ``--endpoint`` URL names, serving a tiny model under the name the block's ``--model`` gives (e.g.
``Qwen/Qwen2.5-7B-Instruct`` → a random-init tiny Qwen2, answers capped at ``--endpoint-max-tokens``); the
block then runs exactly as written. The server is stopped by its pid at the end (also on failure). The
model is ``--endpoint-model DIR``, else a tiny DRG workspace built once under runs/readme-endpoint.
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


ENDPOINT = re.compile(r"--endpoint\s+http://127\.0\.0\.1:(\d+)/v1\s+--model\s+(\S+)")


def endpoint_block(reason: str | None) -> bool:
    """A block that needs an OpenAI-compatible endpoint and nothing more (not also a GPU)."""
    return bool(reason) and reason.startswith("an OpenAI-compatible") and " and a GPU" not in reason


def served(code: str) -> tuple[int, str]:
    """(port, model name) the block's ``--endpoint http://127.0.0.1:PORT/v1 --model NAME`` asks for; one pair."""
    pairs = {(int(port), name) for port, name in ENDPOINT.findall(code)}
    if len(pairs) != 1:
        raise SystemExit(f"an endpoint block must name one 127.0.0.1 endpoint and model, found {sorted(pairs)}")
    return pairs.pop()


class EndpointServer:
    """vLLM's OpenAI server for the endpoint blocks: started on first use, restarted if a block asks for
    another port or name, stopped by :meth:`close` (tests/helpers/vllm_server.py does the work)."""

    def __init__(self, model: Path | None, max_tokens: int, log_dir: Path):
        self.model, self.max_tokens, self.log_dir = model, max_tokens, log_dir
        self.key: tuple[int, str] | None = None
        self._context = None

    def ensure(self, port: int, name: str) -> None:
        if self.key == (port, name):
            return
        self.close()
        sys.path.insert(0, str(REPO))
        from tests.helpers.vllm_server import vllm_openai_server

        if self.model is None:
            from clinrl.demo.workspace import build_tiny_workspace

            self.model = build_tiny_workspace(REPO / "runs" / "readme-endpoint", n_notes=200, classes=6).model
        t = time.perf_counter()
        self._context = vllm_openai_server(self.model, name=name, port=port, log=self.log_dir / "vllm-server.log",
                                           max_new_tokens=self.max_tokens)  # fmt: skip
        self._context.__enter__()
        self.key = (port, name)
        print(f"vLLM OpenAI server up in {time.perf_counter() - t:.0f} s: 127.0.0.1:{port}, {name!r} = {self.model}",
              file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context, self.key = None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--only", default=None, help="comma-separated block numbers (1-based) to run")
    parser.add_argument("--list", action="store_true", help="list the blocks and exit")
    parser.add_argument("--include-long", action="store_true", help="also run blocks marked '# needs: long'")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per block")
    parser.add_argument(
        "--endpoint-server",
        choices=["vllm"],
        default=None,
        help="run the endpoint blocks against vLLM's OpenAI server started here",
    )
    parser.add_argument("--endpoint-model", type=Path, default=None, help="model folder the server serves")
    parser.add_argument("--endpoint-max-tokens", type=int, default=48, help="server-side cap on answer tokens")
    args = parser.parse_args()
    server = None
    if args.endpoint_server:
        server = EndpointServer(args.endpoint_model, args.endpoint_max_tokens, REPO / "runs")
    try:
        run(args, server)
    finally:
        if server is not None:
            server.close()


def run(args: argparse.Namespace, server: EndpointServer | None) -> None:
    """Run (or list) the chosen blocks and print the summary; exit 1 if any failed."""
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
        with_server = server is not None and endpoint_block(reason)
        if reason and not (reason == "long" and args.include_long) and not with_server:
            results.append({"block": number, "line": line, "status": "skipped", "needs": reason})
            print(f"[{number}] line {line}: skipped (needs: {reason})", file=sys.stderr)
            continue
        if with_server:
            server.ensure(*served(code))
        t = time.perf_counter()
        try:
            proc = subprocess.run(
                ["bash", "-e", "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout
            )
            status = "passed" if proc.returncode == 0 else "failed"
            tail = (proc.stdout + proc.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            status, tail = "failed", f"timed out after {args.timeout:.0f} s"
        seconds = round(time.perf_counter() - t, 1)
        results.append({"block": number, "line": line, "status": status, "seconds": seconds,
                        **({"endpoint": "vllm"} if with_server else {})})  # fmt: skip
        print(f"[{number}] line {line}: {status} in {seconds} s{' (vLLM server)' if with_server else ''}",
              file=sys.stderr)  # fmt: skip
        if status == "failed":
            print(tail, file=sys.stderr)
    if args.list:
        return
    summary = {
        "blocks": len(results),
        "passed": sum(r["status"] == "passed" for r in results),
        "failed": [r["block"] for r in results if r["status"] == "failed"],
        "skipped": {r["block"]: r["needs"] for r in results if r["status"] == "skipped"},
        "passed_against_vllm": [r["block"] for r in results if r.get("endpoint") and r["status"] == "passed"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
