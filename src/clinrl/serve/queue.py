"""A bounded queue in front of the model: a fixed number of worker threads (one by default) and a limit on
how many requests may wait for them. The event loop never runs model code, so it stays responsive."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ClientGone", "ModelQueue", "QueueFull", "QueueTimeout"]


class QueueFull(Exception):
    """Every worker is busy and the waiting line is full."""


class QueueTimeout(Exception):
    """A request waited and ran longer than its time limit."""


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


class ModelQueue:
    """``max_concurrency`` workers plus at most ``max_queue`` waiting jobs.

    A job that times out, or whose client goes away, while waiting is dropped; one that is already running
    keeps its worker until it ends, so the queue never admits more work than the workers can hold. Jobs given
    the ``stop`` event (all local generation) end at their next token once it is set; others run to the end.
    """

    def __init__(self, max_concurrency: int = 1, max_queue: int = 16):
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="clinrl-model")
        self._lock = threading.Lock()
        self._pending = 0  # admitted and not finished (waiting + running)
        self._running = 0
        self.rejected = 0
        self.timed_out = 0
        self.abandoned = 0
        self.completed = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"running": self._running, "waiting": self._pending - self._running, "workers": self.max_concurrency,
                    "max_queue": self.max_queue, "rejected": self.rejected, "timed_out": self.timed_out,
                    "abandoned": self.abandoned, "completed": self.completed}  # fmt: skip

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Start ``fn(*args)`` on a worker, or raise :class:`QueueFull`."""
        with self._lock:
            if self._pending >= self.max_concurrency + self.max_queue:
                self.rejected += 1
                raise QueueFull
            self._pending += 1

        def job() -> Any:
            with self._lock:
                self._running += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._running -= 1
                    self.completed += 1

        def done(_: Future) -> None:
            with self._lock:
                self._pending -= 1

        future = self._executor.submit(job)
        future.add_done_callback(done)
        return future

    async def run(
        self, fn: Callable[..., Any], *args: Any, timeout: float, stop: threading.Event | None = None,
        gone: Callable[[], Awaitable[bool]] | None = None, poll_s: float = 0.1,
    ) -> Any:  # fmt: skip
        """Await ``fn(*args)`` on a worker. After ``timeout`` seconds: :class:`QueueTimeout`; when ``gone()``
        (asked every ``poll_s`` seconds) says the client left: :class:`ClientGone`. Either way the job is
        dropped if still waiting and ``stop`` is set so a running job that checks it ends at once."""
        future = self.submit(fn, *args)
        waiter = asyncio.wrap_future(future)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._abandon(future, waiter, stop, "timed_out")
                raise QueueTimeout
            done, _ = await asyncio.wait({waiter}, timeout=remaining if gone is None else min(remaining, poll_s))
            if done:
                return waiter.result()
            if gone is not None and await gone():
                self._abandon(future, waiter, stop, "abandoned")
                raise ClientGone

    def _abandon(self, future: Future, waiter: asyncio.Future, stop: threading.Event | None, counter: str) -> None:
        """Drop a waiting job, or tell a running one to stop; count why."""
        if stop is not None:
            stop.set()
        future.cancel()  # False (and harmless) once running
        waiter.cancel()  # its result, or GenerationCancelled, is no longer wanted
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
