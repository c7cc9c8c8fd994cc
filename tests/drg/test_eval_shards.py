"""`drg eval --shard i/N` + `drg eval-merge`: the parts of a sharded evaluation rebuild exactly the files
and metrics of one run (sampled, not greedy: the batches and their seeds must line up), and merging
refuses parts that do not make one run."""

from __future__ import annotations

import json

import pytest
import torch

from clinrl.cli import main
from clinrl.drg.eval.evaluate import GENERATIONS, merge_shards, parse_shard, run_eval, shard_batches
from clinrl.errors import ClinrlError
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.llm.loading import load_causal_lm
from tests.drg.tiny_training import tiny_workspace

PARAMS = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=10, seed=7)
CASES, BATCH = 9, 2


@pytest.fixture(scope="module")
def ws():
    torch.set_num_threads(1)
    return tiny_workspace()


@pytest.fixture(scope="module")
def backend(ws):
    model, tok = load_causal_lm(ws.model, device="cpu")
    return TransformersBackend(model=model, tokenizer=tok, batch_size=BATCH)


def _run(backend, ws, out, shard=None):
    return run_eval(
        backend,
        ws.root / "prep" / "test.parquet",
        PARAMS,
        out,
        limit=CASES,
        batch_size=BATCH,
        progress=False,
        shard=shard,
        meta={"model": "tiny"},
        plots=False,
    )


def test_shards_cover_every_batch_once():
    for n_cases, batch, count in [(9, 2, 2), (10, 3, 4), (3, 8, 2), (0, 4, 3), (17, 1, 5)]:
        parts = [shard_batches(n_cases, batch, (i, count)) for i in range(count)]
        assert [b for part in parts for b in part] == shard_batches(n_cases, batch)


@pytest.mark.parametrize("text", ["2/2", "-1/3", "a/b", "1", "1/0"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(ClinrlError):
        parse_shard(text)


def test_merged_shards_equal_one_run(backend, ws, tmp_path):
    single = _run(backend, ws, tmp_path / "single")
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, part in enumerate(parts):
        metrics = _run(backend, ws, part, shard=(i, 3))
        assert metrics["eval"]["shard"] == f"{i}/3"
    assert sum(json.loads((p / "metrics.json").read_text())["n_cases"] for p in parts) == CASES
    merged = merge_shards(list(reversed(parts)), tmp_path / "merged", plots=False)  # order given does not matter
    assert merged == single
    assert (tmp_path / "merged" / GENERATIONS).read_text() == (tmp_path / "single" / GENERATIONS).read_text()
    completions = [json.loads(x)["completions"] for x in (tmp_path / "single" / GENERATIONS).read_text().splitlines()]
    assert len({tuple(c) for c in completions}) > 1  # sampled, varied text: the check can fail


def test_merge_refuses_parts_that_are_not_one_run(backend, ws, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(backend, ws, a, shard=(0, 2))
    with pytest.raises(ClinrlError, match="missing"):
        merge_shards([a], tmp_path / "m1", plots=False)
    run_eval(
        backend,
        ws.root / "prep" / "test.parquet",
        PARAMS.with_(seed=8),
        b,
        limit=CASES,
        batch_size=BATCH,
        progress=False,
        shard=(1, 2),
        plots=False,
        meta={"model": "tiny"},
    )
    with pytest.raises(ClinrlError, match="seed"):
        merge_shards([a, b], tmp_path / "m2", plots=False)


def test_eval_merge_cli(backend, ws, tmp_path, capsys, monkeypatch):
    parts = [tmp_path / "p0", tmp_path / "p1"]
    for i, part in enumerate(parts):
        _run(backend, ws, part, shard=(i, 2))
    main(["drg", "eval-merge", *map(str, parts), "--out", str(tmp_path / "all")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n_cases"] == CASES
    with pytest.raises(SystemExit) as exc:
        main(["drg", "eval-merge", str(parts[0]), str(parts[0]), "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2 and "twice" in capsys.readouterr().err
