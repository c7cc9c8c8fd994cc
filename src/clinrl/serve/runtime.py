"""What every route shares: the settings, the models, the model queue, the prompt caps and the preparation
thread, with the three steps every model call takes (check a prompt off the event loop, take a worker,
turn queue failures into 429/504/499 answers)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clinrl.llm.backends import Prompt
from clinrl.serve.limits import PromptLimits
from clinrl.serve.problems import ApiError
from clinrl.serve.queue import ClientGone, ModelQueue, QueueFull, QueueTimeout
from clinrl.serve.settings import ServeSettings

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """One server's state. ``backend``: a :class:`~clinrl.llm.backends.GenerationBackend` or None;
    ``scorer``: a :class:`~clinrl.prm.score.PRMScorer` or None."""

    settings: ServeSettings
    backend: Any
    scorer: Any
    queue: ModelQueue = field(init=False)
    limits: PromptLimits = field(init=False)
    prep: ThreadPoolExecutor = field(init=False)
    started: int = field(init=False)  # Unix time: the models' ``created``

    def __post_init__(self) -> None:
        s = self.settings
        self.queue = ModelQueue(s.max_concurrency, s.max_queue)
        self.limits = PromptLimits(getattr(self.backend, "tokenizer", None), max_prompt_tokens=s.max_prompt_tokens,
                                   max_stop_strings=s.max_stop_strings, max_stop_chars=s.max_stop_chars)  # fmt: skip
        self.prep = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clinrl-prep")  # tokenising, never the model
        self.started = int(time.time())

    @property
    def name(self) -> str:
        return self.settings.served_name

    def close(self) -> None:
        self.queue.shutdown()
        self.prep.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., Any], *args: Any, request: Any, stop: threading.Event | None = None) -> Any:
        """``fn(*args)`` on a model worker, given up (``stop`` set) on time-out or when the client hangs up."""
        timeout = self.settings.timeout_s
        try:
            return await self.queue.run(fn, *args, timeout=timeout, stop=stop, gone=request.is_disconnected)
        except QueueFull:
            raise self.busy() from None
        except QueueTimeout:
            raise ApiError(504, "timeout", f"the request took longer than {timeout:g} s") from None
        except ClientGone:
            raise ApiError(499, "client_closed", "the client closed the connection") from None

    async def prepare(self, prompt: Prompt) -> int:
        """The prompt's token count, or 413/400 (see :class:`PromptLimits`), measured off the event loop."""
        self.limits.precheck(prompt)
        return await self.off_loop(self.limits.count, prompt)

    async def off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the preparation thread (bounded tokenising work, never the model)."""
        return await asyncio.get_running_loop().run_in_executor(self.prep, fn, *args)

    def busy(self) -> ApiError:
        stats = self.queue.stats()
        return ApiError(429, "queue_full", f"server busy ({stats['running']} running, {stats['waiting']} waiting); "
                        "retry later", headers={"Retry-After": "1"})  # fmt: skip

    def need_backend(self) -> Any:
        if self.backend is None:
            raise ApiError(503, "no_model", "no generation model loaded: start the server with --model PATH")
        return self.backend
