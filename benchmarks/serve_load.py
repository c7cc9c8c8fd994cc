"""Bounded load test of ``clinrl serve`` on 127.0.0.1 with a tiny model (CPU, about a minute).

    python benchmarks/serve_load.py [--requests 300] [--concurrency 16] [--slow-clients 32] [--model DIR]

Starts the real command line (``clinrl serve``, a separate process, bearer token from the environment) with a
random-init 2-layer, 32-wide Qwen2 (or ``--model``), then ``--concurrency`` clients send ``--requests``
requests in all: chat completions, streamed chat completions, DRG coding and health checks, round robin.
While they run, ``--slow-clients`` connections hold half-sent headers or bodies open (slowloris) and a few
requests with a wrong token or an oversize body are mixed in. Before and after, a greedy completion is taken
as the reference: the server must give the same one after the load.

Figures: throughput (requests/s), p50/p90/p99 latency of the answered requests per endpoint, the error rate
(any 5xx, connection error or timeout), requests shed with 429 (queue full, by design), and whether the
server is still up and still gives the reference completion; every request carries a marker string that must
not appear in the server's log. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

TOKEN = "serve-load-benchmark-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARKER = "ZZMARKER-PHI-LOAD"  # in every request: it must never reach the server log
COURSE = f"Brief Hospital Course:\n{MARKER} admitted with acute on chronic systolic heart failure; diuresed with IV furosemide.\n"


def _tiny_model(folder: Path) -> Path:
    import torch

    from clinrl.drg.prompts import build_messages, format_completion
    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer

    torch.manual_seed(0)
    texts = [m["content"] for m in build_messages(COURSE)] * 20 + [
        format_completion("HEART FAILURE AND SHOCK WITH MCC")
    ] * 5
    tokenizer = train_tokenizer(texts, vocab_size=512)
    build_tiny_model(tokenizer, TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                                intermediate_size=64), out=folder)  # fmt: skip
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "n": 0}
    ordered = sorted(values)
    pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # noqa: E731
    return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "n": len(values)}


def _request(kind: str, max_tokens: int) -> tuple[str, str, dict | None, dict]:
    chat = {"messages": [{"role": "user", "content": f"{MARKER} heart failure with fluid overload"}], "max_tokens": max_tokens,
            "temperature": 0}  # fmt: skip
    return {
        "chat": ("POST", "/v1/chat/completions", chat, AUTH),
        "stream": ("POST", "/v1/chat/completions", {**chat, "stream": True}, AUTH),
        "drg": ("POST", "/v1/drg/code", {"text": COURSE, "max_tokens": max_tokens}, AUTH),
        "health": ("GET", "/healthz", None, {}),
        "bad_auth": ("POST", "/v1/chat/completions", chat, {"Authorization": "Bearer wrong"}),
        "oversize": (
            "POST",
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x" * 2_000_000}]},
            AUTH,
        ),
    }[kind]


EXPECTED = {"bad_auth": 401, "oversize": 413}


async def _slowloris(port: int, n: int, stop: asyncio.Event) -> int:
    """Hold ``n`` connections with half-sent requests, sending a byte now and then; returns how many stayed open."""
    writers = []
    for i in range(n):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        if i % 2:
            head += f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n{{".encode()
        writer.write(head)
        writers.append(writer)
    while not stop.is_set():
        await asyncio.sleep(1)
        for writer in writers:
            if not writer.is_closing():
                writer.write(b" " if writers.index(writer) % 2 else b"X")
    open_now = sum(not w.is_closing() for w in writers)
    for writer in writers:
        writer.close()
    return open_now


async def _load(url: str, port: int, a: argparse.Namespace) -> dict:
    import httpx

    kinds = ["chat", "stream", "drg", "health", "chat", "stream", "drg", "chat"]
    plan = [kinds[i % len(kinds)] for i in range(a.requests)]
    for i in range(0, a.requests, max(1, a.requests // 10)):
        plan[i] = "bad_auth" if (i // max(1, a.requests // 10)) % 2 else "oversize"
    latencies: dict[str, list[float]] = {}
    outcome = {"answered": 0, "shed_429": 0, "expected_rejections": 0, "errors": 0, "error_examples": []}
    queue: asyncio.Queue = asyncio.Queue()
    for kind in plan:
        queue.put_nowait(kind)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            kind = queue.get_nowait()
            method, path, body, headers = _request(kind, a.max_tokens)
            start = time.perf_counter()
            try:
                if kind == "stream":
                    async with http.stream(method, url + path, json=body, headers=headers) as r:
                        text = "".join([chunk async for chunk in r.aiter_text()])
                        status = r.status_code
                        ok = status != 200 or text.rstrip().endswith("data: [DONE]")
                else:
                    r = await http.request(method, url + path, json=body, headers=headers)
                    status, ok = r.status_code, True
            except httpx.HTTPError as err:
                status, ok = type(err).__name__, False
            took = time.perf_counter() - start
            if kind in EXPECTED and status == EXPECTED[kind]:
                outcome["expected_rejections"] += 1
            elif status == 429:
                outcome["shed_429"] += 1
            elif status == 200 and ok and kind not in EXPECTED:
                outcome["answered"] += 1
                latencies.setdefault(kind, []).append(took)
            else:
                outcome["errors"] += 1
                if len(outcome["error_examples"]) < 5:
                    outcome["error_examples"].append(f"{kind}: {status}")

    stop = asyncio.Event()
    slow = asyncio.create_task(_slowloris(port, a.slow_clients, stop))
    limits = httpx.Limits(max_connections=a.concurrency, max_keepalive_connections=a.concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=a.timeout, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(a.concurrency)))
    seconds = time.perf_counter() - start
    stop.set()
    slow_open = await slow
    every = [x for values in latencies.values() for x in values]
    return {
        "requests": a.requests, "concurrency": a.concurrency, "seconds": round(seconds, 2),
        "throughput_rps": round(a.requests / seconds, 1), "answered_rps": round(outcome["answered"] / seconds, 1),
        **{k: v for k, v in outcome.items()}, "error_rate": round(outcome["errors"] / a.requests, 4),
        "latency_all": _percentiles(every), "latency": {k: _percentiles(v) for k, v in sorted(latencies.items())},
        "slow_clients": a.slow_clients, "slow_clients_still_open_at_end": slow_open,
    }  # fmt: skip


def _reference(url: str) -> str:
    import httpx

    body = {"messages": [{"role": "user", "content": "reference"}], "max_tokens": 16, "temperature": 0}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60).json()["choices"][0][
        "message"
    ]["content"]


@contextlib.contextmanager
def clinrl_server(model: Path, port: int, threads: int, options: list, log: Path) -> Iterator[tuple]:
    """``clinrl serve`` on 127.0.0.1:``port`` (tiny model name, bearer token, CPU), its output in ``log``;
    yields ``(process, log)`` once ``/healthz`` answers (exits with the log's tail if it never does) and
    stops the server afterwards."""
    import httpx

    env = {**os.environ, "CLINRL_SERVE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "clinrl", "serve", "--model", str(model), "--port", str(port), "--device", "cpu",
           "--threads", str(threads), "--model-name", "tiny", *map(str, options)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as log_file:
        server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield server, log
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="Causal LM folder (default: a tiny random-init model).")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slow-clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()

    import httpx

    with tempfile.TemporaryDirectory(prefix="clinrl-serve-load-") as tmp:
        model = a.model or _tiny_model(Path(tmp) / "model")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        options = ["--max-queue", a.max_queue, "--concurrency", a.max_concurrency, "--max-body-bytes", 1000000]
        with clinrl_server(model, port, a.threads, options, Path(tmp) / "server.log") as (server, log):
            before = _reference(url)
            result = asyncio.run(_load(url, port, a))
            health = httpx.get(url + "/healthz", timeout=10)
            after = _reference(url)
            result.update({
                "server_alive_after": server.poll() is None and health.status_code == 200,
                "same_answer_after": before == after,
                "queue_after": health.json().get("queue"),
                "server_log_lines": sum(1 for _ in log.open()),
                "marker_in_server_log": MARKER in log.read_text(errors="replace"),
                "max_queue": a.max_queue, "max_concurrency": a.max_concurrency, "max_tokens": a.max_tokens,
            })  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
