"""The OpenAI protocol as the official ``openai`` client sees it, against the real server (uvicorn on
127.0.0.1, the tiny model loaded from its folder as ``clinrl serve --model`` loads it): prompt lists and
token-id prompts, ``logprobs`` + ``echo`` (checked against a direct ``transformers`` forward pass),
``stream_options.include_usage``, ``GET /v1/models/{id}``, the ``developer`` role, unknown models and
unsupported parameters; and lm-evaluation-harness' ``local-completions`` model on a log-likelihood task."""

from __future__ import annotations

import json
import math

import httpx
import pytest
import torch

from clinrl.serve import ServeSettings, create_app
from tests.helpers.servers import serve_app

openai = pytest.importorskip("openai")

TOKEN = "openai-client-test-token"
PROMPT = "The patient was admitted with heart failure and treated with diuretics."


@pytest.fixture(scope="module")
def server(model_dirs):
    lm, _ = model_dirs
    app = create_app(ServeSettings(model=str(lm), model_name="tiny", device="cpu", max_new_tokens=32, max_n=4),
                     token=TOKEN)  # fmt: skip
    with serve_app(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"{server[0]}/v1", api_key=TOKEN, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def direct(model_dirs):
    """The model and tokenizer loaded on their own, with plain transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm, _ = model_dirs
    return AutoModelForCausalLM.from_pretrained(lm).eval(), AutoTokenizer.from_pretrained(lm)


def direct_logprobs(direct, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) for i ≥ 1, one forward pass."""
    model, _ = direct
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def greedy(client, prompt, **kw):
    return client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, **kw)


# ------------------------------------------------------------------------------------------ prompt lists
def test_a_list_of_prompts_gets_one_choice_each_in_order(client, direct):
    _, tok = direct
    prompts = [PROMPT, "pneumonia treated with antibiotics", "sepsis"]
    batch = greedy(client, prompts)
    singles = [greedy(client, p).choices[0].text for p in prompts]
    assert [c.index for c in batch.choices] == [0, 1, 2]
    assert [c.text for c in batch.choices] == singles
    assert batch.usage.prompt_tokens == sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    two = client.completions.create(model="tiny", prompt=prompts[:2], max_tokens=4, temperature=0.8, seed=3, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]


def test_token_id_prompts_and_their_limits(client, direct):
    _, tok = direct
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    by_ids = greedy(client, [ids, ids[:5]])
    assert [c.text for c in by_ids.choices] == [greedy(client, PROMPT).choices[0].text,
                                                greedy(client, tok.decode(ids[:5])).choices[0].text]  # fmt: skip
    assert greedy(client, ids).choices[0].text == by_ids.choices[0].text  # one flat id list is one prompt
    assert by_ids.usage.prompt_tokens == len(ids) + 5
    with pytest.raises(openai.BadRequestError, match="outside the model's vocabulary"):
        greedy(client, [ids[:3] + [10**7]])
    with pytest.raises(openai.UnprocessableEntityError, match="n × the number of prompts"):
        greedy(client, [PROMPT] * 5)  # max_n = 4
    with pytest.raises(openai.UnprocessableEntityError, match="prompt"):
        greedy(client, [PROMPT, 3])


# ------------------------------------------------------------------------------------------ logprobs, echo
def test_echo_with_max_tokens_0_is_the_prompt_log_likelihood(client, direct):
    _, tok = direct
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True, logprobs=1, temperature=0)
    choice = out.choices[0]
    lp = choice.logprobs
    assert choice.text == PROMPT and choice.finish_reason == "length"
    assert "".join(lp.tokens) == PROMPT and len(lp.tokens) == len(ids)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(ids))]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    want = direct_logprobs(direct, ids)
    assert max(abs(a - b) for a, b in zip(lp.token_logprobs[1:], want)) < 1e-4
    assert math.isclose(sum(lp.token_logprobs[1:]), sum(want), abs_tol=1e-3)  # the prompt's log-likelihood
    for got, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert 1 <= len(top) <= 2 and got in top.values() and max(top.values()) >= got
    assert out.usage.completion_tokens == 0 and out.usage.prompt_tokens == len(ids)


def test_long_texts_are_scored_in_chunks_with_the_same_result(client, direct, monkeypatch):
    from clinrl.serve import logprobs

    _, tok = direct
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    monkeypatch.setattr(logprobs, "CHUNK_TOKENS", 3)  # the server runs in this process
    out = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    got = out.choices[0].logprobs.token_logprobs[1:]
    assert max(abs(a - b) for a, b in zip(got, direct_logprobs(direct, ids))) < 1e-4
    assert all(len(t) == 1 for t in out.choices[0].logprobs.top_logprobs[1:])  # logprobs=0: the chosen token only


def test_logprobs_of_a_completion_with_and_without_echo(client, direct):
    _, tok = direct
    plain = greedy(client, PROMPT, logprobs=3)
    text, lp = plain.choices[0].text, plain.choices[0].logprobs
    assert text and "".join(lp.tokens) == text and lp.text_offset[0] == 0
    prompt_ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + tok(text, add_special_tokens=False)["input_ids"]
    want = direct_logprobs(direct, ids)[len(prompt_ids) - 1 :]
    assert len(lp.token_logprobs) == len(want) and max(abs(a - b) for a, b in zip(lp.token_logprobs, want)) < 1e-4
    for got, top in zip(lp.token_logprobs, lp.top_logprobs):  # greedy: each token is the most likely one
        assert 3 <= len(top) <= 4 and math.isclose(max(top.values()), got, abs_tol=1e-6)
    echoed = greedy(client, PROMPT, logprobs=1, echo=True).choices[0]
    assert echoed.text == PROMPT + text and echoed.logprobs.token_logprobs[len(prompt_ids) :] == pytest.approx(
        lp.token_logprobs, abs=1e-5
    )
    assert greedy(client, PROMPT, echo=True).choices[0].logprobs is None  # echo alone: text only


def test_lm_eval_local_completions_request(client, direct):
    """What lm-evaluation-harness' local-completions model sends for log-likelihood (token ids, echo,
    logprobs=1, max_tokens 1 in lm-eval 0.4.13, 0 in older ones), parsed as it parses it."""
    _, tok = direct
    context, continuations = "The patient was admitted with", [" heart failure", " pneumonia"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    wholes = [tok(context + c, add_special_tokens=False)["input_ids"] for c in continuations]
    for max_tokens in (0, 1):
        out = client.completions.create(model="tiny", prompt=wholes, temperature=0, max_tokens=max_tokens,
                                        logprobs=1, seed=1234, echo=True)  # fmt: skip
        for choice, whole in zip(sorted(out.choices, key=lambda c: c.index), wholes):
            token_logprobs = choice.logprobs.token_logprobs[len(ctx) : len(whole)]
            want = direct_logprobs(direct, whole)[len(ctx) - 1 :]
            assert sum(token_logprobs) == pytest.approx(sum(want), abs=1e-3)
            assert len(choice.logprobs.token_logprobs) == len(whole) + max_tokens


# ------------------------------------------------------------------------------------------ streaming usage
@pytest.mark.parametrize("kind", ["chat", "text"])
def test_stream_include_usage_sends_the_usage_last(client, kind):
    if kind == "chat":
        common = dict(
            model="tiny", messages=[{"role": "user", "content": "heart failure"}], max_tokens=8, temperature=0
        )
        whole = client.chat.completions.create(**common)
        chunks = list(client.chat.completions.create(**common, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        plain = list(client.chat.completions.create(**common, stream=True))
    else:
        common = dict(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0)
        whole = client.completions.create(**common)
        chunks = list(client.completions.create(**common, stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
        plain = list(client.completions.create(**common, stream=True))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()  # the same counts as the whole answer
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)  # not asked: not sent


# ------------------------------------------------------------------------------------------ models, roles
def test_models_retrieve_and_unknown_ids(client):
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.owned_by == "clinrl" and card.created > 0
    assert [m.id for m in client.models.list()] == ["tiny"]
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("org/other-model")
    assert err.value.code == "model_not_found" and "other-model" not in err.value.message


def test_an_unknown_model_name_is_404_and_a_missing_one_is_this_model(client, server):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert err.value.code == "model_not_found" and "gpt-4o" not in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="tinyx", prompt="x", max_tokens=2)
    ok = httpx.post(f"{server[0]}/v1/completions", json={"prompt": "x", "max_tokens": 2},
                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)  # fmt: skip
    assert ok.status_code == 200 and ok.json()["model"] == "tiny"


def test_the_developer_role_is_a_system_message(client):
    def ask(role):
        messages = [{"role": role, "content": "Answer with a DRG."}, {"role": "user", "content": "heart failure"}]
        return client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)

    assert ask("developer").choices[0].message.content == ask("system").choices[0].message.content


# ------------------------------------------------------------------------------------------ unsupported
@pytest.mark.parametrize(("route", "extra", "name"), [
    ("chat", {"logit_bias": {"5": 10}}, "logit_bias"),
    ("chat", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ("chat", {"response_format": {"type": "json_object"}}, "response_format"),
    ("chat", {"logprobs": True}, "logprobs"),
    ("chat", {"presence_penalty": 0.5}, "presence_penalty"),
    ("text", {"best_of": 2}, "best_of"),
    ("text", {"suffix": "end"}, "suffix"),
    ("text", {"frequency_penalty": 1.0}, "frequency_penalty"),
    ("text", {"stream": True, "logprobs": 1}, "logprobs"),
])  # fmt: skip
def test_unsupported_parameters_are_400_naming_them(client, route, extra, name):
    with pytest.raises(openai.BadRequestError) as err:
        if route == "chat":
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2, **extra
            )
        else:
            client.completions.create(model="tiny", prompt="x", max_tokens=2, **extra)
    assert err.value.code == "unsupported_parameter" and name in err.value.message and err.value.param == name


def test_no_op_values_and_harmless_fields_are_accepted(client):
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2, frequency_penalty=0,
        presence_penalty=0.0, logit_bias={}, tools=[], tool_choice="none", response_format={"type": "text"},
        logprobs=False, user="someone", metadata={"k": "v"}, store=False, extra_body={"not_openai": 1},
    )  # fmt: skip
    assert reply.choices[0].message.role == "assistant"
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2, best_of=1, suffix="", user="u").choices


# ------------------------------------------------------------------------------------------ lm-evaluation-harness
def test_lm_eval_local_completions_log_likelihood(server, model_dirs, direct, tmp_path, monkeypatch):
    """lm-eval's own client (`local-completions`, token-id requests, local tokenizer) on a three-question
    multiple-choice task from a local file: its log-likelihoods are the model's."""
    lm_eval = pytest.importorskip("lm_eval")
    for api_dependency in ("aiohttp", "tenacity", "requests"):  # lm-eval[api]
        pytest.importorskip(api_dependency)
    from lm_eval.tasks import TaskManager

    url, _ = server
    lm, _ = model_dirs
    _, tok = direct
    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    docs = [{"question": "The patient was admitted with", "choices": ["heart failure", "pneumonia"], "answer": 0},
            {"question": "Brief hospital course:", "choices": ["sepsis", "shock", "stable"], "answer": 2},
            {"question": "An MCC is a major", "choices": ["complication", "diagnosis"], "answer": 0}]  # fmt: skip
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tiny_ll.yaml").write_text(
        "task: clinrl_tiny_ll\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'docs.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n"
    )  # fmt: skip
    results = lm_eval.simple_evaluate(
        model="local-completions", tasks=["clinrl_tiny_ll"], task_manager=TaskManager(include_path=str(tmp_path)),
        model_args={"model": "tiny", "base_url": f"{url}/v1/completions", "tokenizer": str(lm),
                    "tokenizer_backend": "huggingface", "tokenized_requests": True, "batch_size": 2,
                    "max_retries": 1, "max_length": 512},
        log_samples=True, bootstrap_iters=0,
    )  # fmt: skip
    samples = results["samples"]["clinrl_tiny_ll"]
    assert len(samples) == len(docs)
    for sample in samples:
        doc = sample["doc"]
        ctx = tok(doc["question"], add_special_tokens=False)["input_ids"]
        for choice, (loglik, _) in zip(doc["choices"], [r[0] for r in sample["resps"]]):
            whole = tok(f"{doc['question']} {choice}", add_special_tokens=False)[
                "input_ids"
            ]  # " ": lm-eval's delimiter
            want = sum(direct_logprobs(direct, whole)[len(ctx) - 1 :])
            assert loglik == pytest.approx(want, abs=1e-3)
    assert 0.0 <= results["results"]["clinrl_tiny_ll"]["acc,none"] <= 1.0
