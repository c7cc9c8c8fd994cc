"""`clinrl drg eval` end to end on a tiny model (CPU), resumption after a kill, constrained answers,
plots, scaling and `predict` on a whole synthetic discharge summary."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pytest
import torch

from clinrl.cli import main
from clinrl.drg.eval.constrained import AnswerTrie, answer_regex
from clinrl.drg.eval.evaluate import GENERATIONS, run_eval
from clinrl.drg.ontology import load_ontology
from clinrl.errors import ClinrlError
from clinrl.llm.backends import SamplingParams, TransformersBackend
from clinrl.llm.loading import load_causal_lm
from tests.drg.eval_fakes import THINK_THEN_OPEN, Interrupted, count_calls, scripted
from tests.drg.tiny_training import tiny_workspace

PARAMS = SamplingParams(n=2, temperature=0.6, top_p=0.95, max_new_tokens=12, seed=0)


@pytest.fixture(scope="module")
def ws():
    torch.set_num_threads(1)
    return tiny_workspace()


@pytest.fixture(scope="module")
def model_tok(ws):
    return load_causal_lm(ws.model, device="cpu")


@pytest.fixture(scope="module")
def test_data(ws):
    return ws.root / "prep" / "test.parquet"


def backend(model_tok, **kwargs):
    model, tok = model_tok
    return TransformersBackend(model=model, tokenizer=tok, batch_size=8, **kwargs)


def test_eval_end_to_end_writes_metrics_plots_and_summary(ws, model_tok, test_data, tmp_path):
    out = tmp_path / "eval"
    metrics = run_eval(
        backend(model_tok),
        test_data,
        PARAMS,
        out,
        limit=5,
        batch_size=2,
        progress=False,
        meta={"model": str(ws.model), "sft_examples": 100},
    )
    assert metrics["n_cases"] == 5 and metrics["n_samples"] == 2
    assert set(metrics["drg"]) == {"pass@1", "pass@k", "maj@k"} and list(metrics["drg"]["pass@k"]) == ["1", "2"]
    assert metrics["eval"]["generated_now"] == 5 and metrics["eval"]["meta"]["sft_examples"] == 100
    lines = (out / GENERATIONS).read_text().splitlines()
    assert len(lines) == 5 and all(len(json.loads(x)["completions"]) == 2 for x in lines)
    assert json.loads((out / "metrics.json").read_text())["n_cases"] == 5
    png = (out / "cc_mcc_confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| drg |" in (out / "summary.md").read_text()


def test_rerun_after_a_kill_does_not_redo_finished_cases(model_tok, test_data, tmp_path):
    out = tmp_path / "eval"
    be = backend(model_tok)
    counter = count_calls(be, fail_on=3)  # 6 cases, 2 per call: killed in the 3rd call
    with pytest.raises(Interrupted):
        run_eval(be, test_data, PARAMS, out, limit=6, batch_size=2, progress=False, plots=False)
    assert len((out / GENERATIONS).read_text().splitlines()) == 4
    with (out / GENERATIONS).open("a") as fh:
        fh.write('{"hadm_id": 99, "solution": "HEA')  # a torn line, as a kill during a write leaves
    be2 = backend(model_tok)
    counter = count_calls(be2)
    metrics = run_eval(be2, test_data, PARAMS, out, limit=6, batch_size=2, progress=False, plots=False)
    assert (counter.calls, counter.prompts) == (1, 2)  # only the 2 unfinished cases
    assert metrics["eval"]["reused"] == 4 and metrics["n_cases"] == 6
    ids = [json.loads(x)["hadm_id"] for x in (out / GENERATIONS).read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6
    counter = count_calls(be2)
    run_eval(be2, test_data, PARAMS, out, limit=6, batch_size=2, progress=False, plots=False)
    assert counter.calls == 0  # all done: scoring only
    with pytest.raises(ClinrlError, match="other settings"):
        run_eval(be2, test_data, PARAMS.with_(n=3), out, limit=6, progress=False)


def test_constrained_answers_are_never_invalid(model_tok, test_data, tmp_path):
    _, tok = model_tok
    trie = AnswerTrie.for_tokenizer(tok, [d.description for d in load_ontology()])
    depth = max(len(tok.encode(d.description + "</answer>", add_special_tokens=False)) for d in load_ontology())
    opening = len(tok.encode(THINK_THEN_OPEN, add_special_tokens=False))
    params = PARAMS.with_(n=3, max_new_tokens=opening + depth + 4)
    # every completion is scripted to "<think>…</think><answer>HEART FAILURE</answer>" (not a v34 description)
    script = scripted(THINK_THEN_OPEN + "HEART FAILURE</answer>")
    free = run_eval(
        backend(model_tok, logits_processors=script),
        test_data,
        params,
        tmp_path / "free",
        limit=4,
        progress=False,
        plots=False,
    )
    assert free["invalid_answer_rate"] == 1.0
    constrained_backend = backend(model_tok, logits_processors=script)
    held = run_eval(
        constrained_backend,
        test_data,
        params,
        tmp_path / "constrained",
        limit=4,
        constrained=True,
        progress=False,
        plots=False,
    )
    assert held["invalid_answer_rate"] == 0.0 and held["format_failure_rate"] == 0.0
    assert held["abstain_rate"] == 0.0 and trie.size == len(load_ontology())
    assert constrained_backend.logits_processors is script  # the constraint is removed afterwards
    onto = load_ontology()
    for line in (tmp_path / "constrained" / GENERATIONS).read_text().splitlines():
        for text in json.loads(line)["completions"]:
            answer = text.split("<answer>")[1].split("</answer>")[0]
            assert onto.find(answer) is not None and text.rstrip().endswith("</answer>")


def test_constrained_answers_without_a_trigger_leave_text_free(model_tok):
    be = backend(model_tok, logits_processors=scripted("<think>\nno answer yet", eos=True))
    from clinrl.drg.eval.evaluate import constrain_backend

    undo = constrain_backend(be)
    texts = be.generate(["hello"], SamplingParams(n=1, max_new_tokens=24))[0]
    undo()
    assert texts[0].startswith("<think>\nno answer yet")


def test_vllm_regex_lists_every_description():
    import re

    regex = answer_regex()
    pattern = re.compile(regex)
    assert pattern.fullmatch("<think>x</think>\n<answer>HEART FAILURE AND SHOCK WITH MCC</answer>")
    assert not pattern.fullmatch("<think>x</think>\n<answer>HEART FAILURE</answer>")


def test_eval_cli_and_scaling(ws, test_data, tmp_path, capsys):
    runs = []
    for k, size in enumerate((50, 200)):
        out = tmp_path / f"run{k}"
        main(
            [
                "drg",
                "eval",
                "--model",
                str(ws.model),
                "--data",
                str(test_data),
                "--samples",
                "2",
                "--max-new-tokens",
                "8",
                "--limit",
                "3",
                "--out",
                str(out),
                "--sft-examples",
                str(size),
                "--quiet",
            ]
        )
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["n_cases"] == 3 and "pass@2" in line["drg"]
        runs.append(out)
    # fake different accuracies so that the fit is checkable: 0.2 at 50, 0.4 at 200 -> +0.1 per doubling
    for out, value in zip(runs, (0.2, 0.4)):
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["drg"]["pass@1"] = value
        (out / "metrics.json").write_text(json.dumps(metrics))
    png = tmp_path / "scaling.png"
    main(["drg", "scaling", "--runs", str(runs[0]), str(runs[1]), "--out", str(png)])
    report = json.loads(capsys.readouterr().out)
    assert report["fit"]["slope"] == pytest.approx(0.1) and report["fit"]["r2"] == pytest.approx(1.0)
    assert [p["sft_examples"] for p in report["points"]] == [50, 200] and png.read_bytes()[:4] == b"\x89PNG"


def test_training_curves_from_trl_log_history(tmp_path):
    from clinrl.drg.eval.plots import plot_training_curves

    history = [
        {"step": s, "loss": 1.0 / s, "reward": 0.1 * s, "completions/mean_length": 30 + s, "kl": 0.01 * s}
        for s in range(1, 6)
    ]
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    panels = plot_training_curves(tmp_path, tmp_path / "curves.png")
    assert panels == ["reward", "completion length (tokens)", "KL", "loss"]
    assert plot_training_curves([{"step": 1, "loss": 2.0}], tmp_path / "sft.png") == ["loss"]
    with pytest.raises(ClinrlError):
        plot_training_curves([{"step": 1}], tmp_path / "none.png")


def test_predict_on_a_whole_synthetic_discharge_summary(ws, model_tok, tmp_path, capsys, monkeypatch):
    from clinrl.drg.synth.generate import write_synthetic

    write_synthetic(tmp_path / "synth", 3, seed=5, classes=3, progress=False)
    with gzip.open(tmp_path / "synth" / "discharge.csv.gz", "rt", encoding="utf-8") as fh:
        note = pd.read_csv(fh)["text"].iloc[0]
    assert "Hospital Course" in note or "HOSPITAL COURSE" in note
    path = tmp_path / "note.txt"
    path.write_text(note, encoding="utf-8")
    model, tok = model_tok
    depth = max(len(tok.encode(d.description + "</answer>", add_special_tokens=False)) for d in load_ontology())
    # the random model is scripted to open an answer; the constraint makes it a v34 description
    monkeypatch.setattr(
        "clinrl.cli.drg._generation_backend",
        lambda kind, m, b: backend(model_tok, logits_processors=scripted(THINK_THEN_OPEN, eos=False)),
    )
    main(
        [
            "drg",
            "predict",
            "--model",
            str(ws.model),
            str(path),
            "--samples",
            "3",
            "--format",
            "json",
            "--constrained",
            "--max-new-tokens",
            str(depth + 16),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["input"].startswith("extracted course") and result["n"] == 3
    assert (
        result["drg"] is not None and load_ontology().by_code(result["drg"]["code"]).weight == result["drg"]["weight"]
    )
    assert sum(v["count"] for v in result["votes"]) == 3 and result["reasoning"] == "ok"
    assert 0 < result["confidence"] <= 1
    main(["drg", "predict", "--model", str(ws.model), str(path)])
    text = capsys.readouterr().out
    assert text.startswith("input: extracted course") and note[:40] not in text
    monkeypatch.setattr("sys.stdin", io.StringIO("Chest pain, ruled out for myocardial infarction."))
    main(["drg", "predict", "--model", str(ws.model), "-", "--format", "json", "--max-new-tokens", "4"])
    from_stdin = json.loads(capsys.readouterr().out)
    assert from_stdin["input"] == "whole text" and from_stdin["n"] == 1 and from_stdin["course_words"] == 7


def test_scaling_finds_the_sft_size_through_the_grpo_run(tmp_path):
    from clinrl.drg.eval.scaling import fit_log2, run_point, scaling_report
    from clinrl.errors import DataError

    points = []
    for size, value in ((64, 0.30), (256, 0.40), (1024, 0.52)):
        sft, grpo, ev = tmp_path / f"sft{size}", tmp_path / f"grpo{size}", tmp_path / f"eval{size}"
        for d in (sft, grpo, ev):
            d.mkdir()
        (sft / "sft_summary.json").write_text(json.dumps({"cases": size, "rows": size + 28}))
        (grpo / "clinrl_recipe.json").write_text(json.dumps({"model": str(sft)}))
        (ev / "metrics.json").write_text(json.dumps({"eval": {"meta": {"model": str(grpo)}}, "drg": {"pass@1": value}}))
        points.append(ev)
    assert run_point(points[0])["sft_examples"] == 64
    report = scaling_report(points, tmp_path / "s.png")
    expected = fit_log2([64, 256, 1024], [0.30, 0.40, 0.52])
    assert report["fit"] == pytest.approx(expected) and 0.95 < expected["r2"] < 1
    assert expected["slope"] == pytest.approx(0.055)  # (0.52 - 0.30) / 4 doublings by least squares
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "metrics.json").write_text(json.dumps({"eval": {"meta": {}}, "drg": {"pass@1": 0.1}}))
    with pytest.raises(DataError, match="sft-examples"):
        run_point(lone)
