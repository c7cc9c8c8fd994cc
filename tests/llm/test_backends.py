import threading
import time

import pytest
import torch

from clinrl.errors import ClinrlError
from clinrl.llm.backends import (
    GenerationCancelled,
    SamplingParams,
    TransformersBackend,
    cut_at_stop,
    generate_cancellable,
    get_backend,
)
from tests.helpers.models import build_smallest_lm


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return build_smallest_lm(tmp_path_factory.mktemp("tiny"))


def test_cut_at_stop():
    assert cut_at_stop("a</answer>b<x>", ["<x>", "</answer>"]) == "a"
    assert cut_at_stop("abc", []) == "abc"
    assert cut_at_stop("abc", [""]) == "abc"


def test_sampling_params_validate():
    with pytest.raises(ClinrlError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ClinrlError, match="n must"):
        SamplingParams(n=0)


def test_transformers_backend_shapes_and_determinism(tiny_dir):
    backend = get_backend("transformers", model=str(tiny_dir), device="cpu", batch_size=2)
    prompts = [[{"role": "user", "content": "heart failure"}], "plain text prompt", [{"role": "user", "content": "x"}]]
    greedy = backend.generate(prompts, SamplingParams(n=2, max_new_tokens=5))
    assert [len(g) for g in greedy] == [2, 2, 2]
    assert all(g[0] == g[1] for g in greedy)  # greedy copies are identical
    # batching must not change greedy results (left padding)
    single = TransformersBackend(backend.model, backend.tokenizer, batch_size=1).generate(
        prompts, SamplingParams(max_new_tokens=5)
    )
    assert [s[0] for s in single] == [g[0] for g in greedy]
    sampled = backend.generate(prompts[:1], SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=1))
    again = backend.generate(prompts[:1], SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=1))
    assert sampled == again and len(sampled[0]) == 3


def test_unknown_backend_and_missing_model(tmp_path):
    with pytest.raises(ClinrlError, match="unknown backend"):
        get_backend("nope")
    with pytest.raises(ClinrlError, match="not found"):
        get_backend("transformers", model=str(tmp_path / "missing"))


class SlowNoEOS:
    """A logits processor that makes every token take ``delay`` seconds and never lets generation end early."""

    def __init__(self, eos_id: int, delay: float = 0.03):
        self.eos_id, self.delay = eos_id, delay

    def __call__(self, input_ids, scores):
        time.sleep(self.delay)
        scores[:, self.eos_id] = -float("inf")
        return scores


def test_cancel_ends_generation_at_the_next_token(tiny_dir):
    base = get_backend("transformers", model=str(tiny_dir), device="cpu")
    slow = TransformersBackend(base.model, base.tokenizer,
                               logits_processors=lambda tok: [SlowNoEOS(tok.eos_token_id)])  # fmt: skip
    params = SamplingParams(max_new_tokens=400)  # ≥ 12 s if it ran to the end
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(GenerationCancelled):
        generate_cancellable(slow, ["heart failure"], params, cancel)
    assert time.monotonic() - started < 3.0
    # not cancelled: runs to the end as before
    assert len(generate_cancellable(slow, ["x"], params.with_(max_new_tokens=3), threading.Event())[0]) == 1


def test_backends_without_cancel_run_unchanged():
    class Plain:
        name = "plain"

        def generate(self, prompts, params):
            return [["ok"] * params.n for _ in prompts]

    cancel = threading.Event()
    cancel.set()
    assert generate_cancellable(Plain(), ["a", "b"], SamplingParams(n=2), cancel) == [["ok", "ok"], ["ok", "ok"]]


def test_stop_strings_end_generation_without_a_vocabulary_walk(tiny_dir, monkeypatch):
    """Issue 16 item 6: transformers' ``stop_strings`` walks the whole vocabulary per stop string before the
    first token (a 200 KB stop string held a server worker 10 s); ours decodes only the last tokens."""
    from transformers.generation import stopping_criteria

    def refuse(*args, **kwargs):
        raise AssertionError("transformers' StopStringCriteria was built")

    monkeypatch.setattr(stopping_criteria.StopStringCriteria, "__init__", refuse)
    base = get_backend("transformers", model=str(tiny_dir), device="cpu")
    slow = TransformersBackend(base.model, base.tokenizer,
                               logits_processors=lambda tok: [SlowNoEOS(tok.eos_token_id)])  # fmt: skip
    [[free]] = slow.generate(["heart failure"], SamplingParams(max_new_tokens=12))
    stop = free[4:7]
    started = time.monotonic()
    cut = slow.generate(["heart failure"], SamplingParams(max_new_tokens=300, stop=(stop, "x" * 256)))  # ≥ 9 s in full
    assert cut == [[cut_at_stop(free, [stop])]] and time.monotonic() - started < 4.0
    sampled = slow.generate(["heart failure", "sepsis"], SamplingParams(n=2, temperature=1.0, max_new_tokens=40,
                                                                         stop=("e",)))  # fmt: skip
    assert all("e" not in text for group in sampled for text in group)
