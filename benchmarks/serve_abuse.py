"""Abuse check of ``clinrl serve`` on 127.0.0.1 (issue 16, item 6): is the single worker given back within
1 s of a time-out or of a client hanging up, and is a normal request served meanwhile? CPU, about a minute.

    python benchmarks/serve_abuse.py [--timeout-s 3] [--prompt-tokens 40000] [--abandoned 8] [--model DIR]

Starts the real command line (``clinrl serve --timeout-s 3``, one worker, default caps) with the tiny
random-init model of ``serve_load.py`` (or ``--model``) and runs, one after another:

- ``prompt_40k``: a 40,000-token prompt to ``/v1/completions``, ``/v1/chat/completions`` and a streamed
  completion, a normal request sent 0.2 s after each. (Before the fix: 504 at 3 s, worker busy 31-41 s,
  the normal request 504 too.)
- ``timeout``: the longest prompt the server takes (``--max-prompt-tokens``, 8,192) and ``max_tokens``
  2,048 (seconds of work on this model), a normal request sent 1 s later; the big one gets 504 at 3 s.
- ``abandoned``: 8 non-streamed long requests whose clients hang up once the queue holds them all, then a
  normal request. (Before: the 8 ran one after another and the new one waited 17 s.)
- ``stream_hangup``: a streamed long request whose client reads one event and hangs up.
- ``stop_200kb``: a 200 KB stop string (before: held the worker 10 s).

For each: the big request's status and seconds, ``worker_freed_s`` (from its answer or the hang-up until
``/healthz`` shows no request running or waiting; the normal request sent meanwhile counts in it) and the
normal request's status and seconds. The last
line printed is one JSON object; ``ok`` is true when every ``worker_freed_s`` ≤ 1 and every normal request
got 200.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import AUTH, TOKEN, _free_port, _tiny_model, clinrl_server  # noqa: E402  (this folder's sibling)

NORMAL = {
    "messages": [{"role": "user", "content": "heart failure with fluid overload"}],
    "max_tokens": 8,
    "temperature": 0,
}


def _text_of(tokenizer, n_tokens: int) -> str:
    """Clinical-looking text of exactly about ``n_tokens`` tokens under ``tokenizer``."""
    unit = "Patient admitted with acute on chronic systolic heart failure, diuresed with IV furosemide. "
    per = len(tokenizer(unit, add_special_tokens=False)["input_ids"])
    return unit * max(1, n_tokens // per)


def _queue(http, url: str) -> dict:
    return http.get(url + "/healthz", timeout=10).json()["queue"]


def _freed_after(http, url: str, since: float, limit: float = 60.0) -> float:
    """Seconds from ``since`` (perf_counter) until no request runs or waits."""
    while True:
        q = _queue(http, url)
        if q["running"] == 0 and q["waiting"] == 0:
            return round(time.perf_counter() - since, 3)
        if time.perf_counter() - since > limit:
            return float("inf")
        time.sleep(0.01)


def _timed(http, method: str, url: str, **kwargs) -> tuple[object, float, float]:
    """(status or error name, seconds, perf_counter at the answer)."""
    start = time.perf_counter()
    try:
        status: object = http.request(method, url, timeout=120, **kwargs).status_code
    except Exception as err:  # noqa: BLE001  (reported as a figure)
        status = type(err).__name__
    end = time.perf_counter()
    return status, round(end - start, 3), end


def _with_normal(http, url: str, path: str, body: dict, delay: float) -> dict:
    """Send ``body`` to ``path``; ``delay`` s later a normal chat request; then wait for the worker.
    ``worker_jobs``: jobs the worker ran meanwhile (1 = the normal request only: the big one never got it)."""
    big: dict = {}
    completed = _queue(http, url)["completed"]

    def send() -> None:
        big["status"], big["seconds"], big["answered_at"] = _timed(http, "POST", url + path, json=body, headers=AUTH)

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(delay)
    normal_status, normal_s, _ = _timed(http, "POST", url + "/v1/chat/completions", json=NORMAL, headers=AUTH)
    thread.join()
    freed = _freed_after(http, url, big.pop("answered_at"))
    return {**big, "worker_freed_s": freed, "normal_status": normal_status, "normal_s": normal_s,
            "worker_jobs": _queue(http, url)["completed"] - completed}  # fmt: skip


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)  # fmt: skip
    return sock


def _abandoned(http, url: str, port: int, body: dict, n: int) -> dict:
    """``n`` long non-streamed requests, hung up once all are admitted, then a normal request."""
    paths = ["/v1/completions", "/v1/chat/completions"]
    socks = [_raw_post(port, paths[i % 2], body if i % 2 == 0 else
                       {"messages": [{"role": "user", "content": body["prompt"]}], **{k: v for k, v in body.items() if k != "prompt"}})
             for i in range(n)]  # fmt: skip
    deadline = time.perf_counter() + 30
    while (q := _queue(http, url))["running"] + q["waiting"] < n and time.perf_counter() < deadline:
        time.sleep(0.01)
    admitted = q["running"] + q["waiting"]
    hung_up = time.perf_counter()
    for sock in socks:
        sock.close()
    normal_status, normal_s, _ = _timed(http, "POST", url + "/v1/chat/completions", json=NORMAL, headers=AUTH)
    return {"requests": n, "admitted_before_hangup": admitted, "worker_freed_s": _freed_after(http, url, hung_up),
            "normal_status": normal_status, "normal_s": normal_s, "abandoned_count": _queue(http, url)["abandoned"]}  # fmt: skip


def _stream_hangup(http, url: str, body: dict) -> dict:
    with http.stream("POST", url + "/v1/completions", json={**body, "stream": True}, headers=AUTH, timeout=60) as r:
        status = r.status_code
        for _ in r.iter_lines():
            break  # one event, then hang up
        hung_up = time.perf_counter()
    freed = _freed_after(http, url, hung_up)
    normal_status, normal_s, _ = _timed(http, "POST", url + "/v1/chat/completions", json=NORMAL, headers=AUTH)
    return {"status": status, "worker_freed_s": freed, "normal_status": normal_status, "normal_s": normal_s}


def _scenarios(url: str, port: int, tokenizer, a: argparse.Namespace) -> dict:
    import httpx

    huge = _text_of(tokenizer, a.prompt_tokens)
    at_cap = _text_of(tokenizer, a.max_prompt_tokens - 200)
    long_job = {"prompt": at_cap, "max_tokens": 2048, "temperature": 0}
    out: dict = {"prompt_tokens": len(tokenizer(huge, add_special_tokens=False)["input_ids"]),
                 "prompt_bytes": len(huge.encode())}  # fmt: skip
    with httpx.Client() as http:
        out["prompt_40k"] = {
            "completions": _with_normal(http, url, "/v1/completions", {"prompt": huge, "max_tokens": 16}, 0.2),
            "chat": _with_normal(http, url, "/v1/chat/completions",
                                 {"messages": [{"role": "user", "content": huge}], "max_tokens": 16}, 0.2),
            "stream": _with_normal(http, url, "/v1/completions", {"prompt": huge, "max_tokens": 16, "stream": True}, 0.2),
        }  # fmt: skip
        out["timeout"] = _with_normal(http, url, "/v1/completions", long_job, 1.0)
        out["abandoned"] = _abandoned(http, url, port, long_job, a.abandoned)
        out["stream_hangup"] = _stream_hangup(http, url, long_job)
        out["stop_200kb"] = _with_normal(http, url, "/v1/completions",
                                         {"prompt": "heart failure", "max_tokens": 64, "stop": "x" * 200_000}, 0.2)  # fmt: skip
    return out


def _checks(result: dict) -> bool:
    runs = [*result["prompt_40k"].values(), result["timeout"], result["abandoned"], result["stream_hangup"],
            result["stop_200kb"]]  # fmt: skip
    return all(r["worker_freed_s"] <= 1.0 and r["normal_status"] == 200 for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="Causal LM folder (default: a tiny random-init model).")
    parser.add_argument("--timeout-s", type=float, default=3.0)
    parser.add_argument("--prompt-tokens", type=int, default=40_000)
    parser.add_argument("--max-prompt-tokens", type=int, default=8192)
    parser.add_argument("--abandoned", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="clinrl-serve-abuse-") as tmp:
        model = a.model or _tiny_model(Path(tmp) / "model")
        tokenizer = AutoTokenizer.from_pretrained(model)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        options = ["--timeout-s", a.timeout_s, "--max-prompt-tokens", a.max_prompt_tokens]
        with clinrl_server(model, port, a.threads, options, Path(tmp) / "server.log") as (server, log):
            result = _scenarios(url, port, tokenizer, a)
            text = log.read_text(errors="replace")
            result.update({"timeout_s": a.timeout_s, "max_prompt_tokens": a.max_prompt_tokens,
                           "server_alive_after": server.poll() is None, "token_in_server_log": TOKEN in text,
                           "tracebacks_in_server_log": text.count("Traceback")})  # fmt: skip
            result["ok"] = _checks(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
