"""Difficulty tags (sampling with a real tiny model, resumable files) and curricula."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from datasets import Dataset

from clinrl.drg.ontology import load_ontology
from clinrl.drg.prep.cases import case_key
from clinrl.drg.prompts import format_completion
from clinrl.drg.train import difficulty as diff
from clinrl.drg.train.difficulty import (
    DifficultyConfig,
    apply_curriculum,
    curriculum_preserves_order,
    difficulty_of,
    load_difficulty,
    tag_dataset,
)
from clinrl.errors import ClinrlError, DataError

torch.set_num_threads(1)


def test_difficulty_of():
    right, wrong = [2.0] * 4, [0.0] * 4
    assert difficulty_of(right, [True] * 4) == "easy"
    assert difficulty_of(wrong, [False] * 4) == "hard"
    assert difficulty_of([2.0, 0.0, 0.0, 0.0], [True, False, False, False]) == "mixed"
    with pytest.raises(ValueError):
        difficulty_of([0.0] * 3, [False] * 4)
    with pytest.raises(ValueError):
        difficulty_of([], [])


def test_a_wrong_group_with_reward_variance_is_mixed_not_hard():
    # The study's "hard" is zero reward variance AND every sample wrong (audit 2026-12-04, item 3):
    # this group has no exact match but still carries a GRPO signal.
    rewards = [0, 0, 0, 0, 0, 0, -1.5, -2.0]
    assert difficulty_of(rewards, [False] * 8) == "mixed"
    assert difficulty_of([-2.0] * 8, [False] * 8) == "hard"


# --------------------------------------------------------------------------- curricula

IDS = [1, 2, 3, 4, 5, 6, 7]
TAGS = {1: "hard", 2: "easy", 3: "mixed", 4: "hard", 5: "easy", 6: "mixed", 99: "easy"}  # 7 untagged, 99 unused


def _frame():
    return pd.DataFrame({"hadm_id": IDS, "text": [f"course {i}" for i in IDS]})


EXPECTED = {
    "none": [1, 2, 3, 4, 5, 6, 7],
    "drop_easy": [1, 3, 4, 6, 7],
    "drop_hard": [2, 3, 5, 6, 7],
    "drop_both": [3, 6, 7],
    "easy_to_hard": [2, 5, 3, 6, 7, 1, 4],
}


@pytest.mark.parametrize("kind", ["dataset", "frame"])
@pytest.mark.parametrize("mode", list(EXPECTED))
def test_apply_curriculum_modes(mode, kind):
    data = Dataset.from_pandas(_frame()) if kind == "dataset" else _frame()
    result, report = apply_curriculum(data, TAGS, mode)
    ids = list(result["hadm_id"])
    assert ids == EXPECTED[mode]
    assert result["text"][0] == f"course {ids[0]}"  # rows move whole
    assert report["input"] == 7 and report["kept"] == len(ids)
    assert (report["easy"], report["mixed"], report["hard"], report["untagged"]) == (2, 2, 2, 1)
    assert sum(report["dropped"].values()) == 7 - len(ids)
    assert report["unused_tags"] == 1
    assert report["shuffle"] is not curriculum_preserves_order(mode)


def test_apply_curriculum_matches_ids_across_types_and_rejects_bad_input():
    data = pd.DataFrame({"hadm_id": ["1", "2"], "text": ["a", "b"]})
    result, report = apply_curriculum(data, {1: "easy", 2: "hard"}, "drop_easy")
    assert result["hadm_id"].tolist() == ["2"] and report["untagged"] == 0
    with pytest.raises(ClinrlError, match="unknown curriculum"):
        apply_curriculum(data, {}, "hard_first")
    with pytest.raises(DataError, match="no 'case_id' column"):
        apply_curriculum(data, {}, "none", id_field="case_id")


def test_load_difficulty_reads_ignores_a_torn_line_and_names_bad_rows(tmp_path):
    path = tmp_path / "tags.jsonl"
    path.write_text('{"hadm_id": 5, "difficulty": "easy", "n_correct": 2, "k": 2}\n{"hadm_id": 6, "diffic')
    assert load_difficulty(path) == {5: "easy"}
    path.write_text('{"hadm_id": 5, "difficulty": "easy"}\n{"hadm_id": 6, "difficulty": "trivial"}\n')
    with pytest.raises(DataError, match="row 2.*difficulty"):
        load_difficulty(path)
    path.write_text('{"difficulty": "easy"}\n')
    with pytest.raises(DataError, match="hadm_id"):
        load_difficulty(path)
    with pytest.raises(DataError, match="not found"):
        load_difficulty(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- tagging


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tests.helpers.models import build_smallest_lm

    return build_smallest_lm(tmp_path_factory.mktemp("tiny_coder"))


@pytest.fixture(scope="module")
def cases_path(tmp_path_factory):
    drgs = list(load_ontology())[:5]
    frame = pd.DataFrame(
        {
            "hadm_id": [101, 102, 103, 104, 105],
            "text": [f"Admitted with {d.description.lower()}. Treated and discharged. " * 3 for d in drgs],
            "description": [d.description for d in drgs],
        }
    )
    path = tmp_path_factory.mktemp("cases") / "rl.parquet"
    frame.to_parquet(path)
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tag_dataset_samples_with_a_real_model_and_resumes(tiny_model_dir, cases_path, tmp_path):
    out = tmp_path / "tags.jsonl"
    config = DifficultyConfig(k=2, max_new_tokens=4, batch_size=2, limit=3, max_prompt_tokens=640)
    first = tag_dataset(tiny_model_dir, cases_path, out, config, progress=False)
    assert first["tagged_now"] == 3 and first["skipped_already_tagged"] == 0
    assert [r["hadm_id"] for r in _lines(out)] == [101, 102, 103]
    # a random-init model never writes a valid answer: every case is hard
    assert all(
        r == {"hadm_id": r["hadm_id"], "difficulty": "hard", "n_correct": 0, "k": 2, "rewards": [-2.0, -2.0]}
        for r in _lines(out)
    )

    with out.open("a") as fh:  # an interrupted write leaves a torn line; resuming must repair it
        fh.write('{"hadm_id": 104, "diff')
    config = dataclasses.replace(config, limit=None)
    second = tag_dataset(tiny_model_dir, cases_path, out, config, progress=False)
    assert second["skipped_already_tagged"] == 3 and second["tagged_now"] == 2
    assert [r["hadm_id"] for r in _lines(out)] == [101, 102, 103, 104, 105]
    assert (second["cases"], second["hard"], second["easy"]) == (5, 5, 0)
    summary = json.loads((tmp_path / "tags.jsonl.summary.json").read_text())
    assert summary["cases"] == 5 and summary["config"]["k"] == 2
    with pytest.raises(ClinrlError, match="k=\\[2\\]"):
        tag_dataset(tiny_model_dir, cases_path, out, DifficultyConfig(k=4), progress=False)


def test_tags_follow_the_strict_accuracy_of_each_sample(tiny_model_dir, cases_path, tmp_path, monkeypatch):
    golds = {c["hadm_id"]: c["solution"] for c in diff.read_cases(cases_path)}
    other = list(load_ontology())[10].description
    # per case: how many of the 3 samples are exactly right (a near miss and a bad format never count);
    # 102 has none right but its rewards differ (a bad format among valid answers): mixed, not hard
    right = {101: 3, 102: 0, 103: 1, 104: 2, 105: 3}
    order = iter(golds)

    def scripted(model, tokenizer, prompts, config):
        batch = []
        for _ in prompts:
            hadm = next(order)
            good = [format_completion(golds[hadm])] * right[hadm]
            bad = [format_completion(other), golds[hadm]][: config.k - len(good)]
            batch.append((good + bad + [format_completion(other)] * config.k)[: config.k])
        return batch

    monkeypatch.setattr(diff, "_sample", scripted)
    out = tmp_path / "tags.jsonl"
    summary = tag_dataset(tiny_model_dir, cases_path, out, DifficultyConfig(k=3, batch_size=2), progress=False)
    assert {r["hadm_id"]: (r["difficulty"], r["n_correct"]) for r in _lines(out)} == {
        101: ("easy", 3),
        102: ("mixed", 0),
        103: ("mixed", 1),
        104: ("mixed", 2),
        105: ("easy", 3),
    }
    assert (summary["easy"], summary["mixed"], summary["hard"]) == (2, 3, 0)
    assert load_difficulty(out)[103] == "mixed"


def test_difficulty_cli(tiny_model_dir, cases_path, tmp_path, capsys):
    from clinrl.cli import main

    out = tmp_path / "tags.jsonl"
    args = [
        "drg",
        "difficulty",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(cases_path),
        "--out",
        str(out),
        "--samples",
        "2",
        "--max-new-tokens",
        "3",
        "--max-prompt-tokens",
        "640",
        "--limit",
        "2",
        "--quiet",
    ]
    main(args)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["tagged_now"] == 2 and printed["cases"] == 2
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "drg",
                "difficulty",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(tmp_path / "nope.parquet"),
                "--out",
                str(out),
                "--samples",
                "2",
                "--quiet",
            ]
        )
    assert exit_info.value.code == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_tagger_calls_only_equal_reward_wrong_groups_hard(tiny_model_dir, cases_path, tmp_path, monkeypatch):
    golds = {c["hadm_id"]: c["solution"] for c in diff.read_cases(cases_path)}
    drgs = list(load_ontology())
    same_wrong = format_completion(drgs[10].description)
    mixed_wrong = [same_wrong, format_completion("NOT A DRG"), "no tags at all"]
    order = iter(golds)

    def scripted(model, tokenizer, prompts, config):
        return [[same_wrong] * 3 if next(order) % 2 else mixed_wrong for _ in prompts]

    monkeypatch.setattr(diff, "_sample", scripted)
    out = tmp_path / "tags.jsonl"
    tag_dataset(tiny_model_dir, cases_path, out, DifficultyConfig(k=3, batch_size=2), progress=False)
    records = {r["hadm_id"]: r for r in _lines(out)}
    assert {h: r["difficulty"] for h, r in records.items()} == {
        101: "hard",
        102: "mixed",
        103: "hard",
        104: "mixed",
        105: "hard",
    }
    assert records[102]["n_correct"] == 0 and len(set(records[102]["rewards"])) > 1


def test_large_ids_stay_distinct_keys():
    # audit 2026-12-04 item 12: ids went through float(), so 2**53 and 2**53 + 1 were one key
    import numpy as np

    big = 2**53 + 1
    assert case_key(big) == big and case_key(np.int64(big)) == big and case_key(str(big)) == big
    assert case_key(big) != case_key(big - 1)
    assert case_key(20_000_001.0) == 20_000_001


def test_resuming_a_tag_file_of_the_old_hard_rule_is_refused(tiny_model_dir, cases_path, tmp_path):
    out = tmp_path / "tags.jsonl"
    out.write_text('{"hadm_id": 101, "difficulty": "hard", "n_correct": 0, "k": 2}\n')
    with pytest.raises(ClinrlError, match="older rule"):
        tag_dataset(tiny_model_dir, cases_path, out, DifficultyConfig(k=2), progress=False)
