"""Issue 16, items 6 and 7, against the real server on 127.0.0.1: caps a client cannot raise (prompt tokens,
stop strings, the DRG prompt budget), a worker given back at once when its client hangs up (non-streamed
requests too), and valid-schema extremes in every numeric field answered 2xx or 4xx, never 5xx."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from clinrl.errors import ClinrlError
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.serve import ServeSettings, create_app
from clinrl.serve.schemas import DRGRequest
from clinrl.serve.tasks import DRGBudget, drg_prompt
from tests.helpers.servers import serve_app

TOKEN = "hardening-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"messages": [{"role": "user", "content": "heart failure"}]}


@pytest.fixture(scope="module")
def slow_backend(model_dirs):
    """The tiny model at 30 ms a token that never stops early: 400 tokens hold a worker ≥ 12 s."""
    from tests.llm.test_backends import SlowNoEOS

    base = TransformersBackend.from_path(str(model_dirs[0]), device="cpu")
    return TransformersBackend(base.model, base.tokenizer, logits_processors=lambda tok: [SlowNoEOS(tok.eos_token_id)])


@pytest.fixture(scope="module")
def capped(slow_backend):
    settings = ServeSettings(model_name="tiny", timeout_s=60, max_prompt_tokens=64, drg_max_prompt_tokens=1000,
                             max_stop_strings=2, max_stop_chars=8)  # fmt: skip
    with serve_app(create_app(settings, backend=slow_backend, token=TOKEN)) as url:
        yield url


def post(url: str, path: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=AUTH, timeout=60, **kwargs)


def queue(url: str) -> dict:
    return httpx.get(f"{url}/healthz").json()["queue"]


# ------------------------------------------------------------------------------------------ item 6: caps
def test_prompts_over_the_cap_are_refused_before_they_reach_a_worker(capped):
    """No prompt-token cap existed: a 40k-token prompt held the only worker 31-41 s, past any time-out."""
    long = "heart failure " * 100  # about 200 tokens of the tiny tokenizer, over the cap of 64
    huge = "x" * 600_000  # over what 64 tokens can hold: refused without being tokenised
    before = queue(capped)["completed"]
    for text in (long, huge):
        for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": text}]}),
                           ("/v1/completions", {"prompt": text}), ("/v1/completions", {"prompt": text, "stream": True})):  # fmt: skip
            started = time.perf_counter()
            r = post(capped, path, {**body, "max_tokens": 2})
            assert r.status_code == 413 and r.json()["error"]["code"] == "prompt_too_long", (path, r.text[:200])
            assert "64" in r.json()["error"]["message"] and time.perf_counter() - started < 5
    assert queue(capped)["completed"] == before  # no worker was used
    assert post(capped, "/v1/completions", {"prompt": "heart failure", "max_tokens": 2}).status_code == 200


def test_drg_prompt_budget_cannot_be_raised_by_the_client(capped):
    """``max_prompt_tokens`` in the body replaced the server's DRG cap, however large."""
    r = post(capped, "/v1/drg/code", {"text": "heart failure", "max_prompt_tokens": 1001, "max_tokens": 2})
    assert r.status_code == 422 and r.json()["error"]["code"] == "max_prompt_tokens_too_large"
    assert "1000" in r.json()["error"]["message"]
    ok = post(capped, "/v1/drg/code", {"text": "heart failure " * 2000, "max_prompt_tokens": 700, "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["truncated"] is True


def test_stop_strings_are_capped(capped):
    """A 200 KB stop string held the worker 10 s: it is matched against the text at every token."""
    for stop, code in ((["a", "b", "c"], "too_many_stop_strings"), (["x" * 9], "stop_too_long"),
                       ("y" * 200_000, "stop_too_long")):  # fmt: skip
        r = post(capped, "/v1/completions", {"prompt": "heart", "max_tokens": 2, "stop": stop})
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text[:200]
    assert (
        post(capped, "/v1/completions", {"prompt": "heart", "max_tokens": 2, "stop": ["x" * 8, "y"]}).status_code == 200
    )


def test_a_long_drg_text_is_cut_by_characters_first_with_the_same_result(slow_backend):
    """A 1 MB note was tokenised whole (on the worker) to keep its first few thousand tokens."""
    tokenizer = slow_backend.tokenizer
    req = DRGRequest(text="Patient admitted with heart failure and shock, diuresed. " * 3000, input="course")
    full, info = drg_prompt(req, tokenizer, DRGBudget(900))  # the prompt without the course is about 600
    cut, cut_info = drg_prompt(req, tokenizer, DRGBudget(900, max_course_chars=(900 + 16) * 20))
    assert len(req.text) > (900 + 16) * 20
    assert cut == full and info == cut_info == {"course_source": "as_given", "truncated": True}


# ------------------------------------------------------------------------------------------ item 6: hang-ups
def _raw_request(url: str, path: str, body: dict) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)  # fmt: skip
    return sock


def _wait(url: str, ok, seconds: float) -> float:
    """Seconds until ``ok(queue stats)``; fails after ``seconds``."""
    started = time.monotonic()
    while not ok(queue(url)):
        assert time.monotonic() - started < seconds, queue(url)
        time.sleep(0.02)
    return time.monotonic() - started


def test_abandoned_non_streamed_requests_give_the_worker_back(capped):
    """8 non-streamed requests whose clients had gone still ran one after another: a new one waited 17 s.
    (Two of the eight here are streamed, which already stopped when their client left.)"""
    bodies = [("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "heart"}), ("/v1/drg/code", {"text": "chf"}),
              ("/v1/completions", {"prompt": "heart", "stream": True})]  # fmt: skip
    socks = [_raw_request(capped, bodies[i % 4][0], {**bodies[i % 4][1], "max_tokens": 400, "temperature": 0})
             for i in range(8)]  # fmt: skip
    abandoned = queue(capped)["abandoned"]
    try:
        _wait(capped, lambda q: q["running"] == 1 and q["waiting"] == 7, 20)
    finally:
        for sock in socks:
            sock.close()  # each would hold the worker ≥ 12 s
    freed = _wait(capped, lambda q: q["running"] == 0 and q["waiting"] == 0, 3.0)  # measured: about 0.1 s
    assert queue(capped)["abandoned"] == abandoned + 6  # the non-streamed ones
    started = time.perf_counter()
    r = post(capped, "/v1/chat/completions", {**CHAT, "max_tokens": 2})
    assert r.status_code == 200 and time.perf_counter() - started < 5, freed


# ------------------------------------------------------------------------------------------ item 7: extremes
@pytest.fixture(scope="module")
def plain(model_dirs):
    lm, prm = model_dirs
    settings = ServeSettings(model=str(lm), prm=str(prm), model_name="tiny", device="cpu", max_new_tokens=3, max_n=2)
    with serve_app(create_app(settings, token=TOKEN)) as url:
        yield url


EXTREMES = ["0", "-1", "1", "2", "1.5", "1e-300", "-1e-300", "5e-324", "1e300", "-1e300", "1e999", "-1e999", "NaN",
            "Infinity", str(2**63), str(2**64 - 1), str(2**64), str(-(2**63) - 1), "1" + "0" * 40, "true", "null", '"3"']  # fmt: skip
SAMPLING = ["n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed"]
ENDPOINTS = [
    ("/v1/chat/completions", {**CHAT, "max_tokens": 2}, SAMPLING),
    ("/v1/completions", {"prompt": "heart failure", "max_tokens": 2}, SAMPLING),
    ("/v1/drg/code", {"text": "heart failure", "max_tokens": 2}, ["max_tokens", "temperature", "top_p", "seed", "max_prompt_tokens"]),
    ("/v1/prm/score", {"note": "Chief complaint: knee pain.", "dialogue": "[doctor] hi\n[patient] my knee hurts"}, ["weakest"]),
]  # fmt: skip


@pytest.mark.parametrize(("path", "base", "fields"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_numeric_extremes_are_never_a_5xx(plain, path, base, fields):
    """``temperature: 1e-300`` (inf logits), ``seed: 2**64`` (torch overflow) gave 500 with a traceback."""
    bad = []
    with httpx.Client(headers={**AUTH, "content-type": "application/json"}, timeout=60) as client:
        for field in fields:
            for literal in EXTREMES:
                body = json.dumps({**base, field: "@@"}).replace('"@@"', literal)
                r = client.post(f"{plain}{path}", content=body)
                if r.status_code >= 500 or (r.status_code >= 400 and "\n" in r.json()["error"]["message"]):
                    bad.append((field, literal, r.status_code, r.text[:120]))
    assert not bad


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", {"prompt": ""}), ("/v1/completions", {"prompt": "", "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": None}], "stream": True}),
    ("/v1/drg/code", {"text": " "}), ("/v1/drg/code", {"text": ""}), ("/v1/prm/score", {"note": ""}),
    ("/v1/prm/score", {"note": {}}), ("/v1/completions", {"prompt": "x", "stop": ["", ""]}),
])  # fmt: skip
def test_empty_texts_are_answered_or_refused_in_one_line(plain, path, body):
    """``prompt: ""`` reached the model with no tokens at all: 500."""
    r = post(plain, path, {**body, "max_tokens": 2} if "prm" not in path else body)
    assert r.status_code < 500, r.text[:200]
    if r.status_code >= 400:
        assert "\n" not in r.json()["error"]["message"]
    if path == "/v1/completions" and body.get("prompt") == "":
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_prompt"


def test_sampling_params_take_every_value_or_refuse_it_plainly():
    """The root, for every backend and the CLI too, not only the server."""
    assert SamplingParams(temperature=1e-300).temperature == 0.0  # greedy, as its limit (vLLM does the same)
    assert SamplingParams(temperature=0.5).temperature == 0.5
    assert SamplingParams(seed=2**64 - 1).seed == 2**64 - 1 and SamplingParams(seed=-(2**63)).seed == -(2**63)
    for bad in ({"seed": 2**64}, {"seed": -(2**63) - 1}, {"temperature": float("nan")}, {"temperature": float("inf")},
                {"top_p": float("nan")}):  # fmt: skip
        with pytest.raises(ClinrlError):
            SamplingParams(**bad)
