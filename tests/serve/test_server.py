"""The real server (uvicorn on 127.0.0.1) with a tiny local model and a tiny PRM, driven by the project's own
client and by raw HTTP: completions (plain and streamed), DRG coding, PRM scoring, auth, size limit, bad
JSON, a full queue, a timeout, and serving on afterwards."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest

from clinrl.errors import ClinrlError
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.llm.openai_client import OpenAIBackend
from clinrl.prm.format import render_prm_string
from clinrl.prm.schema import note_to_dict
from clinrl.prm.score import load_scorer
from clinrl.serve import ServeSettings, check_bind, create_app
from tests.helpers.servers import serve_app
from tests.helpers.tokenizers import make_tiny_tokenizer
from tests.prm.note_factory import make_gold

TOKEN = "serve-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_TEXT = "ZEBRA-PATIENT-4242"
DIALOGUE = "[doctor] how is the knee?\n[patient] it hurts when i walk, and my blood pressure is high."
SUMMARY = (
    "Name: ___\nChief Complaint: dyspnea\n\nBrief Hospital Course:\n"
    f"Patient {SECRET_TEXT} admitted with acute on chronic heart failure, diuresed with IV furosemide.\n\n"
    "Medications on Admission:\nfurosemide 40 mg daily\n"
)


@pytest.fixture(scope="module")
def server(model_dirs):
    """Loaded from folders exactly as ``clinrl serve --model … --prm …`` does."""
    lm, prm = model_dirs
    settings = ServeSettings(model=str(lm), prm=str(prm), model_name="tiny", max_body_bytes=20_000, device="cpu")
    app = create_app(settings, token=TOKEN)
    with serve_app(app) as url:
        yield url, app


class GatedBackend:
    """The tiny model behind a gate: while ``gate`` is clear, generation waits (a slow model on demand)."""

    name = "gated"

    def __init__(self, inner: TransformersBackend):
        self.inner, self.model, self.tokenizer = inner, inner.model, inner.tokenizer
        self.gate = threading.Event()
        self.gate.set()

    def generate(self, prompts, params):
        self.gate.wait(30)
        return self.inner.generate(prompts, params)


@pytest.fixture(scope="module")
def gated(model_dirs):
    lm, _ = model_dirs
    backend = GatedBackend(TransformersBackend.from_path(str(lm), device="cpu"))
    busy = create_app(ServeSettings(max_queue=1, model_name="tiny"), backend=backend, token=TOKEN)
    slow = create_app(ServeSettings(timeout_s=1.0, model_name="tiny"), backend=backend, token=TOKEN)
    with serve_app(busy) as busy_url, serve_app(slow) as slow_url:
        yield backend, busy_url, slow_url
    backend.gate.set()


def chat(url: str, content: str = "heart failure", **extra) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 12, "temperature": 0, **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH, timeout=60)


def wait_for(url: str, key: str, value: int) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/healthz").json()["queue"][key] != value:
        assert time.monotonic() < deadline, f"queue {key} never reached {value}"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------ start-up
def test_refuses_a_public_address_without_a_token():
    with pytest.raises(ClinrlError, match="refusing to listen on 0.0.0.0"):
        check_bind("0.0.0.0", None)
    assert check_bind("0.0.0.0", "t") is None
    assert "no token" in check_bind("127.0.0.1", None) and "no token" in check_bind("localhost", None)
    assert check_bind("::1", None)


def test_health_needs_no_token(server):
    url, _ = server
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["model"] == "tiny" and health["prm"] is True
    assert httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]["id"] == "tiny"


# ------------------------------------------------------------------------------------------ completions
def test_client_gets_what_the_local_model_generates(server, monkeypatch):
    url, app = server
    monkeypatch.setenv("TEST_SERVE_KEY", TOKEN)
    prompts = [[{"role": "user", "content": "heart failure"}], "plain text prompt"]
    params = SamplingParams(n=2, max_new_tokens=10)
    with OpenAIBackend(endpoint=url, model="tiny", api_key_env="TEST_SERVE_KEY", backoff_s=0.01) as client:
        remote = client.generate(prompts, params)
    local = app.state.backend.generate(prompts, params)
    assert remote == local and [len(r) for r in remote] == [2, 2]


def test_raw_completion_and_stream_agree(server):
    url, _ = server
    plain = chat(url)
    assert plain.status_code == 200
    body = plain.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["prompt_tokens"] > 0
    events = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", headers=AUTH, timeout=60,
                      json={"messages": [{"role": "user", "content": "heart failure"}], "max_tokens": 12,
                            "temperature": 0, "stream": True}) as response:  # fmt: skip
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert "".join(pieces) == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
    text = httpx.post(f"{url}/v1/completions", headers=AUTH, timeout=60,
                      json={"prompt": "hello", "max_tokens": 5, "temperature": 0}).json()  # fmt: skip
    assert text["object"] == "text_completion" and isinstance(text["choices"][0]["text"], str)


# ------------------------------------------------------------------------------------------ tasks
def test_drg_coding_of_a_whole_summary(server, caplog):
    url, _ = server
    with caplog.at_level(logging.DEBUG):
        r = httpx.post(f"{url}/v1/drg/code", headers=AUTH, timeout=60, json={"text": SUMMARY, "max_tokens": 16})
    assert r.status_code == 200
    out = r.json()
    assert out["course_source"] == "extracted:brief_to_admission_meds" and out["truncated"] is False
    # a random tiny model cannot name a DRG: the DRG fields are null, the raw output is returned
    assert out["valid"] is False and out["code"] is None and out["description"] is None and out["weight"] is None
    assert isinstance(out["completion"], str) and "reasoning" in out
    assert "POST /v1/drg/code -> 200" in caplog.text and SECRET_TEXT not in caplog.text
    missing = httpx.post(f"{url}/v1/drg/code", headers=AUTH, json={"text": "no sections here", "input": "summary"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "no_course"


class ScriptedBackend:
    name = "scripted"

    def __init__(self, tokenizer, answer: str):
        self.tokenizer, self.answer = tokenizer, answer

    def generate(self, prompts, params):
        return [[self.answer] * params.n for _ in prompts]


@pytest.mark.parametrize(
    "answer, code",
    [("<think>\nDiuresis for decompensated heart failure.\n</think>\n<answer>HEART FAILURE AND SHOCK WITH MCC</answer>", 291),
     ("<think>\nNo idea.\n</think>\n<answer>BROKEN LEG OF A UNICORN</answer>", None)],
)  # fmt: skip
def test_drg_answer_is_mapped_to_the_ontology(answer, code):
    app = create_app(ServeSettings(model_name="s"), backend=ScriptedBackend(make_tiny_tokenizer(), answer), token=None)
    with serve_app(app) as url:
        out = httpx.post(f"{url}/v1/drg/code", json={"text": "Heart failure, IV diuresis.", "input": "course"}).json()
    assert out["code"] == code and out["course_source"] == "as_given"
    if code is None:
        assert out["description"] is None and out["mdc"] is None and out["reasoning"] == "No idea."
        assert out["answer"] == "BROKEN LEG OF A UNICORN"
    else:
        assert out["description"] == "HEART FAILURE AND SHOCK WITH MCC" and out["mdc"] == "05"
        assert out["weight"] > 0 and out["severity"] == "with MCC" and out["format_ok"] is True
        assert out["reasoning"] == "Diuresis for decompensated heart failure."


def test_prm_score_in_three_note_forms(server, model_dirs, caplog):
    url, _ = server
    caplog.set_level(logging.DEBUG)
    _, prm = model_dirs
    note = make_gold([2, 1], dialogue=DIALOGUE)
    note.problems[0].steps[1].text = f"Plan: {SECRET_TEXT} refer to orthopedics."
    scorer = load_scorer(prm)
    want = scorer.score_note(note)
    as_json = httpx.post(f"{url}/v1/prm/score", headers=AUTH, timeout=60, json={"note": note_to_dict(note)}).json()
    assert len(as_json["steps"]) == note.n_label_positions and as_json["aggregate"] == "sum_log"
    assert as_json["score"] == pytest.approx(want.score("sum_log"), abs=1e-4)
    assert [s["p_plus"] for s in as_json["steps"]] == pytest.approx([s.p_plus for s in want.slots], abs=1e-5)
    assert as_json["steps"][1]["where"] == "P1 S1" and as_json["n_problems"] == 2 and as_json["n_steps"] == 3
    assert SECRET_TEXT not in json.dumps(as_json)
    prm_string = render_prm_string(note, scorer.tokens, "placeholder")
    as_string = httpx.post(f"{url}/v1/prm/score", headers=AUTH, timeout=60, json={"note": prm_string}).json()
    assert as_string["score"] == pytest.approx(as_json["score"], abs=1e-4)
    free = "Knee pain:\n- Plan: refer to orthopedics.\n\nHypertension:\n- Start lisinopril 10 mg daily."
    as_text = httpx.post(f"{url}/v1/prm/score", headers=AUTH, timeout=60,
                         json={"note": free, "dialogue": DIALOGUE, "aggregate": "min"}).json()  # fmt: skip
    assert as_text["aggregate"] == "min" and as_text["n_problems"] == 2 and len(as_text["steps"]) >= 6
    no_dialogue = httpx.post(f"{url}/v1/prm/score", headers=AUTH, json={"note": free})
    assert no_dialogue.status_code == 422 and no_dialogue.json()["error"]["code"] == "missing_dialogue"
    bad = httpx.post(f"{url}/v1/prm/score", headers=AUTH, json={"note": {"Problems": "nope", "Dialogue": ""}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_note"
    assert "POST /v1/prm/score -> 200" in caplog.text  # the request log is captured here ...
    assert SECRET_TEXT not in caplog.text and "orthopedics" not in caplog.text  # ... and holds no note text


def test_prm_endpoint_without_a_prm(gated):
    _, busy_url, _ = gated
    r = httpx.post(f"{busy_url}/v1/prm/score", headers=AUTH, json={"note": "x", "dialogue": "y"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_prm"


# ------------------------------------------------------------------------------------------ refusals
def test_auth(server):
    url, _ = server
    assert httpx.post(f"{url}/v1/chat/completions", json={}).status_code == 401
    wrong = httpx.post(f"{url}/v1/chat/completions", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    with pytest.raises(ClinrlError, match="HTTP 401"):
        OpenAIBackend(endpoint=url, model="tiny", api_key_env="UNSET_KEY_FOR_TEST").chat(
            [{"role": "user", "content": "x"}]
        )


def test_oversize_body_is_413(server):
    url, _ = server
    big = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=big, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    def chunked():  # no Content-Length: the limit applies to the bytes as they arrive
        for _ in range(30):
            yield b"x" * 1000

    r = httpx.post(
        f"{url}/v1/chat/completions", content=chunked(), headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert chat(url).status_code == 200


def test_malformed_json_and_schema_errors(server):
    url, _ = server
    r = httpx.post(
        f"{url}/v1/chat/completions", content=b'{"messages": [', headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": "hello"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("messages")
    r = chat(url, max_tokens=10**6)
    assert r.status_code == 422 and r.json()["error"]["code"] == "max_tokens_too_large"
    r = chat(url, temperature=-1)
    assert r.status_code == 422 and set(r.json()["error"]) == {"message", "type", "code"}
    assert httpx.get(f"{url}/nope", headers=AUTH).status_code == 404
    assert chat(url, unknown_field=1, logprobs=False).status_code == 200  # unknown fields are ignored


def test_full_queue_is_429_and_the_server_recovers(gated):
    backend, url, _ = gated
    backend.gate.clear()
    results: dict[str, int] = {}
    threads = {k: threading.Thread(target=lambda k=k: results.__setitem__(k, chat(url).status_code)) for k in "ab"}
    try:
        threads["a"].start()
        wait_for(url, "running", 1)
        threads["b"].start()
        wait_for(url, "waiting", 1)
        full = chat(url)
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "queue_full"
        assert chat(url, stream=True).status_code == 429  # streams are admitted by the same queue
        assert httpx.get(f"{url}/healthz").status_code == 200  # the event loop is not blocked
    finally:
        backend.gate.set()
        for t in threads.values():
            t.join(30)
    assert results == {"a": 200, "b": 200}
    assert chat(url).status_code == 200


@pytest.fixture(scope="module")
def slow_url(model_dirs):
    """A model that takes 30 ms a token and never stops early, behind a 1-second time limit."""
    from tests.llm.test_backends import SlowNoEOS

    lm, _ = model_dirs
    base = TransformersBackend.from_path(str(lm), device="cpu")
    backend = TransformersBackend(base.model, base.tokenizer,
                                  logits_processors=lambda tok: [SlowNoEOS(tok.eos_token_id)])  # fmt: skip
    app = create_app(ServeSettings(timeout_s=1.0, model_name="tiny"), backend=backend, token=TOKEN)
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/drg/code"])
def test_a_timed_out_generation_frees_its_worker_at_once(slow_url, path):
    body = (
        {"messages": [{"role": "user", "content": "heart failure"}]}
        if "chat" in path
        else {"prompt": "heart failure"}
        if path == "/v1/completions"
        else {"text": SUMMARY}
    )
    r = httpx.post(f"{slow_url}{path}", json={**body, "max_tokens": 400, "temperature": 0}, headers=AUTH, timeout=60)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    timed_out = time.monotonic()
    wait_for(slow_url, "running", 0)
    assert time.monotonic() - timed_out < 3.0  # 400 tokens would take ≥ 12 s more
    assert httpx.get(f"{slow_url}/healthz").json()["queue"]["timed_out"] >= 1


def test_timeout_is_504_and_the_server_recovers(gated):
    backend, _, url = gated
    backend.gate.clear()
    try:
        r = chat(url)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    finally:
        backend.gate.set()
    wait_for(url, "running", 0)
    assert chat(url, max_tokens=1).status_code == 200
