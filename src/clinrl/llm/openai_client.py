"""OpenAI-compatible HTTP client backend: any endpoint that speaks ``/v1/chat/completions`` and
``/v1/completions`` (a vLLM server, ``clinrl serve``, a hosted model).

    backend = OpenAIBackend(endpoint="http://127.0.0.1:8000/v1", model="qwen", cache_dir="runs/cache")
    texts = backend.generate(prompts, SamplingParams(n=4, temperature=0.7))

- The endpoint is always explicit (no default URL): text leaves the machine only where the user says.
- The API key is read from the environment variable named by ``api_key_env`` (default ``CLINRL_API_KEY``)
  and sent as ``Authorization: Bearer …``; it is never logged, cached or shown in errors. No key, no header.
- Retries with exponential backoff and jitter on connection errors, timeouts, HTTP 429 and 5xx (a
  ``Retry-After`` header is honoured); other 4xx fail at once.
- Requests for different prompts run in parallel, at most ``max_concurrency`` at a time.
- ``cache_dir``: one JSON file per request, named by a hash of (endpoint URL, model, request body), written
  atomically, so an interrupted job re-run asks only what it has not asked yet.
- Errors raise :class:`clinrl.errors.ClinrlError` naming the endpoint, never the prompt text.
- ``guided_regex``: every completion must match this regex (``drg eval --constrained``). It is sent as
  vLLM's structured-output field ``"structured_outputs": {"regex": …}`` (vLLM ≥ 0.11; the older
  ``guided_regex`` field is gone in the vLLM this project tests). Other servers ignore or refuse that
  field, so before the first constrained request the client asks ``GET /models`` and goes on only if the
  endpoint says it is vLLM (``owned_by: "vllm"``); otherwise a ClinrlError, never unconstrained answers.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clinrl.errors import ClinrlError
from clinrl.io import write_json_atomic
from clinrl.llm.base import Prompt, SamplingParams, cut_at_stop

__all__ = ["CACHE_VERSION", "OpenAIBackend", "api_base", "request_body"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


def api_base(endpoint: str) -> str:
    """The API base URL: ``http://host:port`` gets ``/v1`` appended; a URL with a path is used as given."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ClinrlError("an endpoint URL is required (e.g. http://127.0.0.1:8000/v1); there is no default")
    url = endpoint.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClinrlError(f"endpoint {url!r} is not an http(s) URL")
    return url if parts.path else url + "/v1"


def request_body(model: str, prompt: Prompt, params: SamplingParams, n: int | None = None) -> tuple[str, dict]:
    """(route, JSON body) for one prompt: chat messages → ``chat/completions``, a string → ``completions``."""
    body: dict[str, Any] = {"model": model}
    if isinstance(prompt, str):
        route = "completions"
        body["prompt"] = prompt
    else:
        route = "chat/completions"
        body["messages"] = [dict(m) for m in prompt]
    body.update(n=params.n if n is None else n, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens)  # fmt: skip
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return route, body


def _texts(route: str, payload: Any, url: str) -> list[str]:
    """Completion texts of a response, in choice order; ClinrlError if the response is malformed."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise ClinrlError(f"{url} returned a malformed response (no choices)")
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    out = []
    for choice in ordered:
        if not isinstance(choice, dict):
            raise ClinrlError(f"{url} returned a malformed response (a choice is not an object)")
        if route == "completions":
            text = choice.get("text")
        else:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if text is None and isinstance(message, dict) and "content" in message:
                text = ""  # content: null (e.g. a refusal or tool turn) reads as empty text
        if not isinstance(text, str):
            raise ClinrlError(f"{url} returned a malformed response (a choice has no text)")
        out.append(text)
    return out


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _error_message(response: Any) -> str:
    """The server's own short error message (``{"error": {"message": …}}``), cut to 200 characters."""
    try:
        payload = response.json()
    except ValueError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return f": {message[:200]}" if isinstance(message, str) else ""


@dataclass
class OpenAIBackend:
    """Generation through an OpenAI-compatible HTTP endpoint (see the module docstring).

    ``stats`` counts ``requests`` (HTTP requests sent), ``retries``, ``cache_hits`` and ``cache_writes``.
    """

    endpoint: str
    model: str
    api_key_env: str = "CLINRL_API_KEY"
    cache_dir: str | Path | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    progress: bool = False
    guided_regex: str | None = None
    name: str = field(default="openai", init=False)
    stats: Counter = field(default_factory=Counter, init=False, repr=False)
    _client: Any = field(default=None, init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)
    _slots: Any = field(default=None, init=False, repr=False)
    _vllm_checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = api_base(self.endpoint)
        if not self.model:
            raise ClinrlError("a model name is required for the openai backend")
        if self.max_concurrency < 1:
            raise ClinrlError(f"max_concurrency must be ≥ 1, got {self.max_concurrency}")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise ClinrlError("max_retries and backoff_s must be ≥ 0 and timeout_s > 0")
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)  # bounds requests across threads too

    # ------------------------------------------------------------------ public API
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        """``params.n`` completions per prompt. Raises the first failure after every other request has
        finished (and been cached), so a re-run resumes where this one stopped."""
        results = self.generate_or_errors(prompts, params)
        for result in results:
            if isinstance(result, ClinrlError):
                raise result
        return results  # type: ignore[return-value]

    def generate_or_errors(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str] | ClinrlError]:
        """Like :meth:`generate`, but a failed prompt yields its :class:`ClinrlError` in place (for jobs
        that count failures instead of stopping)."""
        from tqdm import tqdm

        if self.guided_regex is not None:
            self._require_vllm()

        def one(prompt: Prompt) -> list[str] | ClinrlError:
            try:
                return self._complete(prompt, params)
            except ClinrlError as err:
                return err

        if len(prompts) <= 1 or self.max_concurrency == 1:
            return [one(p) for p in tqdm(prompts, desc="requests", disable=not self.progress, leave=False)]
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts)), thread_name_prefix="clinrl-http")
        try:
            futures = [pool.submit(one, p) for p in prompts]
            return [f.result() for f in tqdm(futures, desc="requests", disable=not self.progress, leave=False)]
        finally:  # on Ctrl-C, drop what has not started instead of finishing the whole job
            pool.shutdown(wait=False, cancel_futures=True)

    def chat(self, messages: Sequence[dict[str, str]], params: SamplingParams | None = None) -> list[str]:
        """``params.n`` completions of one chat prompt."""
        return self.generate([list(messages)], params or SamplingParams())[0]

    def post(self, route: str, body: dict) -> Any:
        """The JSON answer to one request ``body`` on ``route`` (e.g. ``"completions"``), sent as given: the
        retries, concurrency bound, key and errors of :meth:`generate`, without its cache and text parsing.
        For callers that need more of the answer than its texts, e.g. the verdict token's logprobs
        (:mod:`clinrl.prm.judge`, which keeps its own cache)."""
        return self._post(route, body)

    def close(self) -> None:
        """Close the HTTP connection pool (a later call opens a new one)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ one prompt
    def _complete(self, prompt: Prompt, params: SamplingParams) -> list[str]:
        """All ``n`` texts of one prompt; asks again for the missing ones if a server returns fewer. Greedy
        (temperature 0) asks for one and repeats it, as the local backends do (some servers refuse n > 1
        without sampling)."""
        if params.temperature == 0 and params.n > 1:
            return self._complete(prompt, params.with_(n=1)) * params.n
        texts: list[str] = []
        round_ = 0
        while len(texts) < params.n:
            missing = params.n - len(texts)
            seed = params.seed if round_ == 0 or params.seed is None else params.seed + round_
            route, body = request_body(self.model, prompt, params.with_(seed=seed), n=missing)
            if self.guided_regex is not None:
                body["structured_outputs"] = {"regex": self.guided_regex}
            got = _texts(route, self._request(route, body), f"{self.base_url}/{route}")
            texts += [cut_at_stop(t, params.stop) for t in got[:missing]]
            round_ += 1
            if round_ > params.n:  # a server that keeps answering with nothing new
                raise ClinrlError(f"{self.base_url}/{route} returned fewer than n={params.n} choices")
        return texts

    def _cache_file(self, route: str, body: dict) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps({"v": CACHE_VERSION, "url": f"{self.base_url}/{route}", "model": self.model,
                          "body": body}, sort_keys=True, ensure_ascii=False)  # fmt: skip
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return Path(self.cache_dir) / digest[:2] / f"{digest}.json"

    def _request(self, route: str, body: dict) -> Any:
        """The JSON answer to one request: from the cache, or from the endpoint (then cached)."""
        cached = self._cache_file(route, body)
        if cached is not None and cached.is_file():
            try:
                payload = json.loads(cached.read_text(encoding="utf-8"))["response"]
                with self._lock:
                    self.stats["cache_hits"] += 1
                return payload
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable cache file %s; asking the endpoint again", cached.name)
        payload = self._post(route, body)
        if cached is not None:
            _texts(route, payload, f"{self.base_url}/{route}")  # never cache a malformed answer
            write_json_atomic(cached, {"v": CACHE_VERSION, "url": f"{self.base_url}/{route}", "model": self.model,
                                       "response": payload}, indent=None, sweep=False)  # fmt: skip
            # sweep=False: one file per request, so a folder scan per write would grow with the cache
            with self._lock:
                self.stats["cache_writes"] += 1
        return payload

    def _require_vllm(self) -> None:
        """Refuse a regex constraint unless ``GET /models`` says the endpoint is vLLM (checked once): a
        server that ignores ``structured_outputs`` would return unconstrained answers without a word."""
        if self._vllm_checked:
            return
        import httpx

        url = f"{self.base_url}/models"
        try:
            response = self._http().get(url)
            payload = response.json() if response.status_code == 200 else None
        except (httpx.TransportError, ValueError):
            payload = None
        data = payload.get("data") if isinstance(payload, dict) else None
        owners = {m.get("owned_by") for m in data if isinstance(m, dict)} if isinstance(data, list) else set()
        if "vllm" not in owners:
            raise ClinrlError(f"constrained answers through the openai backend need a vLLM server (structured "
                              f"outputs); {url} does not list a model owned_by 'vllm'")  # fmt: skip
        self._vllm_checked = True

    # ------------------------------------------------------------------ HTTP
    def _http(self) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                headers = {"Content-Type": "application/json"}
                key = os.environ.get(self.api_key_env, "").strip()
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                limits = httpx.Limits(
                    max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                )
                self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s), limits=limits)
            return self._client

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.backoff_s * (2**attempt), MAX_BACKOFF_S) * (0.5 + random.random())

    def _post(self, route: str, body: dict) -> Any:
        import httpx

        url = f"{self.base_url}/{route}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.stats["retries"] += 1
            with self._lock:
                self.stats["requests"] += 1
            retry_after = None
            try:
                with self._slots:
                    response = self._http().post(url, json=body)
            except httpx.TransportError as err:  # connection refused, reset, timeouts, …
                last = f"{type(err).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise ClinrlError(f"{url} returned a response that is not JSON") from None
                if response.status_code not in RETRY_STATUS:
                    hint = " (check the key in $" + self.api_key_env + ")" if response.status_code in (401, 403) else ""
                    raise ClinrlError(f"{url} answered HTTP {response.status_code}{_error_message(response)}{hint}")
                last = f"HTTP {response.status_code}{_error_message(response)}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                wait = self._backoff(attempt, retry_after)
                log.info("%s: %s; retry %d/%d in %.1fs", url, last, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise ClinrlError(f"{url} failed after {self.max_retries + 1} attempts (last: {last})")
