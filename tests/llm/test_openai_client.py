"""The OpenAI-compatible client against a scripted fake endpoint on loopback: request shape, retries and
backoff, errors that name the endpoint, the on-disk cache (resume without asking again, no key on disk) and
the concurrency bound."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clinrl.errors import ClinrlError
from clinrl.llm.backends import SamplingParams, get_backend
from clinrl.llm.openai_client import OpenAIBackend, api_base
from tests.helpers.servers import free_port, serve_app

SECRET = "sk-test-very-secret-0123"
PROMPT_TEXT = "Patient ZEBRA-7 was admitted with sepsis"


class Script:
    """The fake endpoint's behaviour: queued (status, body, headers) answers first, then echo answers."""

    def __init__(self) -> None:
        self.plan: list[tuple[int, dict, dict]] = []
        self.calls: list[dict] = []
        self.delay = 0.0
        self.max_choices: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.__init__()


def make_app(script: Script) -> FastAPI:
    app = FastAPI()

    async def handle(request: Request, route: str) -> JSONResponse:
        body = await request.json()
        with script.lock:
            script.calls.append({"route": route, "body": body, "auth": request.headers.get("authorization")})
            script.in_flight += 1
            script.max_in_flight = max(script.max_in_flight, script.in_flight)
            planned = script.plan.pop(0) if script.plan else None
        try:
            if script.delay:
                await asyncio.sleep(script.delay)
            if planned is not None:
                status, payload, headers = planned
                return JSONResponse(payload, status, headers=headers)
            n = body.get("n", 1) if script.max_choices is None else min(body.get("n", 1), script.max_choices)
            if route == "chat":
                seen = body["messages"][-1]["content"]
                choices = [{"index": i, "message": {"role": "assistant", "content": f"echo {seen} #{i} seed={body.get('seed')}"}}
                           for i in range(n)]  # fmt: skip
            else:
                choices = [{"index": i, "text": f"text {body['prompt']} #{i}</stop>tail"} for i in range(n)]
            return JSONResponse({"object": "x", "choices": list(reversed(choices))})  # order by index, not position
        finally:
            with script.lock:
                script.in_flight -= 1

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        return await handle(request, "chat")

    @app.post("/v1/completions")
    async def text(request: Request) -> JSONResponse:
        return await handle(request, "text")

    return app


@pytest.fixture(scope="module")
def fake():
    script = Script()
    with serve_app(make_app(script)) as url:
        yield script, url


@pytest.fixture
def server(fake, monkeypatch):
    script, url = fake
    script.reset()
    monkeypatch.setenv("CLINRL_API_KEY", SECRET)
    return script, url


def backend(url: str, **kwargs) -> OpenAIBackend:
    kwargs.setdefault("backoff_s", 0.001)
    return OpenAIBackend(endpoint=url, model="fake-model", **kwargs)


def test_endpoint_is_explicit_and_normalised():
    with pytest.raises(ClinrlError, match="endpoint"):
        OpenAIBackend(endpoint="", model="m")
    with pytest.raises(ClinrlError, match="not an http"):
        OpenAIBackend(endpoint="127.0.0.1:8000", model="m")
    assert api_base("http://h:1") == "http://h:1/v1"
    assert api_base("http://h:1/v1/") == "http://h:1/v1"
    assert api_base("https://host/openai/v1") == "https://host/openai/v1"


def test_request_shape_routes_and_bearer_key(server):
    script, url = server
    b = get_backend("openai", endpoint=url, model="fake-model", backoff_s=0.001)
    params = SamplingParams(n=2, temperature=0.7, top_p=0.9, max_new_tokens=33, stop=("</stop>",), seed=5)
    out = b.generate([[{"role": "user", "content": "hi"}], "plain"], params)
    assert out[0] == ["echo hi #0 seed=5", "echo hi #1 seed=5"]  # choices ordered by index
    assert out[1] == ["text plain #0", "text plain #1"]  # cut at the stop string
    by_route = {c["route"]: c for c in script.calls}
    assert by_route["chat"]["body"] == {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "n": 2,
                                        "temperature": 0.7, "top_p": 0.9, "max_tokens": 33, "stop": ["</stop>"],
                                        "seed": 5}  # fmt: skip
    assert by_route["text"]["body"]["prompt"] == "plain"
    assert all(c["auth"] == f"Bearer {SECRET}" for c in script.calls)
    assert b.chat([{"role": "user", "content": "x"}], SamplingParams()) == ["echo x #0 seed=0"]
    assert b.chat([{"role": "user", "content": "g"}], SamplingParams(n=3)) == ["echo g #0 seed=0"] * 3  # greedy
    assert script.calls[-1]["body"]["n"] == 1


def test_no_key_no_header(server, monkeypatch):
    script, url = server
    monkeypatch.delenv("CLINRL_API_KEY")
    backend(url).chat([{"role": "user", "content": "x"}])
    assert script.calls[0]["auth"] is None


def test_retries_500_and_429_then_succeeds(server, caplog):
    script, url = server
    script.plan = [(500, {"error": {"message": "boom"}}, {}), (429, {}, {"Retry-After": "0.3"}), (503, {}, {})]
    b = backend(url, max_retries=3)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        assert b.chat([{"role": "user", "content": PROMPT_TEXT}]) == [f"echo {PROMPT_TEXT} #0 seed=0"]
    assert time.monotonic() - started >= 0.3  # Retry-After honoured (the backoff itself is ~1 ms here)
    assert len(script.calls) == 4 and b.stats["retries"] == 3 and b.stats["requests"] == 4
    assert SECRET not in caplog.text and PROMPT_TEXT not in caplog.text


def test_gives_up_after_max_retries_naming_the_endpoint(server):
    script, url = server
    script.plan = [(502, {}, {})] * 3
    b = backend(url, max_retries=2)
    with pytest.raises(ClinrlError, match=r"/v1/chat/completions failed after 3 attempts \(last: HTTP 502\)") as err:
        b.chat([{"role": "user", "content": PROMPT_TEXT}])
    assert PROMPT_TEXT not in str(err.value) and len(script.calls) == 3


def test_client_errors_are_not_retried(server):
    script, url = server
    script.plan = [(400, {"error": {"message": "max_tokens too large"}}, {})]
    with pytest.raises(ClinrlError, match="HTTP 400: max_tokens too large") as err:
        backend(url).chat([{"role": "user", "content": PROMPT_TEXT}])
    assert len(script.calls) == 1 and PROMPT_TEXT not in str(err.value) and SECRET not in str(err.value)
    script.plan = [(401, {"error": {"message": "bad key"}}, {})]
    with pytest.raises(ClinrlError, match=r"HTTP 401.*CLINRL_API_KEY"):
        backend(url).chat([{"role": "user", "content": "x"}])


def test_unreachable_endpoint():
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = backend(url, max_retries=2)
    with pytest.raises(ClinrlError, match=r"127\.0\.0\.1.*failed after 3 attempts \(last: ConnectError\)"):
        b.chat([{"role": "user", "content": PROMPT_TEXT}])
    assert b.stats["requests"] == 3


def test_malformed_answer_is_an_error_and_not_cached(server, tmp_path):
    script, url = server
    script.plan = [(200, {"choices": []}, {}), (200, {"choices": [{"index": 0, "message": {}}]}, {})]
    b = backend(url, cache_dir=tmp_path)
    with pytest.raises(ClinrlError, match="malformed response"):
        b.chat([{"role": "user", "content": "x"}])
    results = b.generate_or_errors(
        [[{"role": "user", "content": "y"}], [{"role": "user", "content": "z"}]], SamplingParams()
    )
    assert isinstance(results[0], ClinrlError) != isinstance(results[1], ClinrlError)  # one bad, one good
    assert b.stats["cache_writes"] == 1


def test_cache_resumes_without_asking_again_and_holds_no_key(server, tmp_path):
    script, url = server
    prompts = [[{"role": "user", "content": f"case {i}"}] for i in range(5)] + ["plain prompt"]
    params = SamplingParams(n=2, temperature=0.5, max_new_tokens=8)
    first = backend(url, cache_dir=tmp_path).generate(prompts[:3], params)  # an interrupted job
    assert len(script.calls) == 3
    resumed = backend(url, cache_dir=tmp_path)  # a new process, same cache
    again = resumed.generate(prompts, params)
    assert again[:3] == first and len(script.calls) == 6  # only the 3 missing prompts were asked
    assert resumed.stats["cache_hits"] == 3 and resumed.stats["requests"] == 3
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 6 and not list(tmp_path.rglob("*.tmp"))
    for f in files:
        text = f.read_text()
        assert SECRET not in text and "authorization" not in text.lower()
        assert json.loads(text)["response"]["choices"]
    other = backend(url, cache_dir=tmp_path).generate(prompts[:1], params.with_(max_new_tokens=9))  # new request
    assert len(script.calls) == 7 and other[0] == first[0]


def test_concurrency_is_bounded(server):
    script, url = server
    script.delay = 0.15
    b = backend(url, max_concurrency=3)
    out = b.generate([[{"role": "user", "content": str(i)}] for i in range(10)], SamplingParams())
    assert [o[0].split()[1] for o in out] == [str(i) for i in range(10)]  # results in prompt order
    assert 2 <= script.max_in_flight <= 3
    # two threads sharing one backend still respect the bound
    script.max_in_flight = 0
    threads = [threading.Thread(target=b.generate, args=([[{"role": "user", "content": "t"}]] * 4, SamplingParams()))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert script.max_in_flight <= 3


def test_fewer_choices_than_n_are_topped_up(server):
    script, url = server
    script.max_choices = 1  # a server that ignores n
    out = backend(url).chat([{"role": "user", "content": "q"}], SamplingParams(n=3, temperature=1.0, seed=10))
    assert len(out) == 3 and len(script.calls) == 3
    assert [c["body"]["n"] for c in script.calls] == [3, 2, 1]
    assert [c["body"]["seed"] for c in script.calls] == [10, 11, 12]
