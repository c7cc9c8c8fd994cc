import json
from collections import Counter

import pandas as pd
import pytest

from clinrl.drg.ontology import load_ontology
from clinrl.drg.prep.split import SplitConfig, add_solution, split_frame, split_prepared
from clinrl.drg.prompts import build_messages, parse_completion, to_rl_rows, to_sft_rows
from clinrl.errors import ClinrlError, DataError
from tests.drg.split_data import CLASS_SIZES, make_prepared_frame, write_prepared

N = sum(CLASS_SIZES.values())


@pytest.fixture(scope="module")
def frame():
    return add_solution(make_prepared_frame(), load_ontology())


def test_solution_is_the_v34_spelling(frame):
    onto = load_ontology()
    assert all(onto.by_code(code).description == sol for code, sol in zip(frame["drg"], frame["solution"]))
    assert (frame["description"] != frame["solution"]).any()  # lower-cased rows were respelled


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95])
def test_ratio_mode(frame, ratio):
    sft, rl, report = split_frame(frame, SplitConfig(sft_ratio=ratio, seed=42))
    assert len(rl) == int(N * (1 - ratio) + 0.5) and len(sft) + len(rl) == N
    assert not set(sft["hadm_id"]) & set(rl["hadm_id"])
    assert list(sft.columns) == list(frame.columns)
    assert report["sft"]["rows"] == len(sft) and report["rl"]["rows"] == len(rl)
    assert report["dropped_rare"] == {"classes": 0, "rows": 0} and report["unused_rows"] == 0
    assert report["input"] == {"rows": N, "classes": len(CLASS_SIZES), "singleton_classes": 1}
    # stratified: one RL row per class first (seats allowing), then the big class gets its share
    multi = [c for c, k in CLASS_SIZES.items() if k >= 2]
    in_rl = Counter(rl["drg"])
    if len(rl) >= len(multi):
        assert all(in_rl[c] >= 1 for c in multi)
    if len(rl) >= 2 * len(multi):  # the one-per-class floors leave room for proportional shares
        assert abs(in_rl[291] - CLASS_SIZES[291] * (1 - ratio)) <= 1
    # every class with >= 2 rows stays in SFT
    in_sft = Counter(sft["drg"])
    assert all(in_sft[c] >= 1 for c, k in CLASS_SIZES.items() if k >= 2)
    # source order kept (hadm_id grows with the row number in the fixture)
    assert sft["hadm_id"].is_monotonic_increasing and rl["hadm_id"].is_monotonic_increasing


def test_small_mode(frame):
    config = SplitConfig(small=True, min_cases=5, cold_start_fraction=0.05, rl_fraction=0.2, seed=1)
    sft, rl, report = split_frame(frame, config)
    rare = {c for c, k in CLASS_SIZES.items() if k < 5}
    kept = N - sum(CLASS_SIZES[c] for c in rare)
    assert report["dropped_rare"] == {"classes": len(rare), "rows": N - kept}
    assert not rare & set(sft["drg"]) and not rare & set(rl["drg"])
    assert len(sft) == int(kept * 0.05 + 0.5)
    assert len(rl) == int((kept - len(sft)) * 0.2 + 0.5)
    assert report["unused_rows"] == kept - len(sft) - len(rl)
    assert not set(sft["hadm_id"]) & set(rl["hadm_id"])
    # 14 cold-start seats for 7 classes: each kept class appears in the cold-start set
    assert set(sft["drg"]) == set(CLASS_SIZES) - rare


def test_split_is_deterministic(frame):
    a = split_frame(frame, SplitConfig(seed=3))
    b = split_frame(frame, SplitConfig(seed=3))
    assert a[1]["hadm_id"].tolist() == b[1]["hadm_id"].tolist()


@pytest.mark.parametrize(
    "config", [SplitConfig(sft_ratio=1.0), SplitConfig(sft_ratio=0), SplitConfig(small=True, rl_fraction=1.5)]
)
def test_bad_config(frame, config):
    with pytest.raises(ClinrlError, match="between 0 and 1"):
        split_frame(frame, config)


def test_bad_rows_are_named():
    onto = load_ontology()
    bad = make_prepared_frame()
    bad.loc[3, "description"] = "HEART FAILURE"
    with pytest.raises(DataError, match=f"row {bad.loc[3, 'hadm_id']}.*'description'"):
        add_solution(bad, onto, path="x.parquet")
    empty = make_prepared_frame()
    empty.loc[5, "text"] = None
    with pytest.raises(DataError, match="'text'"):
        add_solution(empty, onto)


def test_split_prepared_writes_datasets_readable_files(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = write_prepared(tmp_path / "train.parquet")
    report = split_prepared(data, tmp_path / "out", SplitConfig(sft_ratio=0.9), progress=False)
    saved = json.loads((tmp_path / "out" / "split_report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    sft = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "sft.parquet"), split="train")
    rl = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "rl.parquet"), split="train")
    assert len(sft) == report["sft"]["rows"] and len(rl) == report["rl"]["rows"]
    assert {"hadm_id", "subject_id", "text", "drg", "description", "solution"} <= set(rl.column_names)
    # the trainers' mapping works on the written rows
    mapped = rl.map(to_rl_rows)
    assert mapped[0]["prompt"] == build_messages(rl[0]["text"])
    sft_rows = sft.map(to_sft_rows, batched=True)
    assert parse_completion(sft_rows[0]["completion"][0]["content"]).answer == sft[0]["solution"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out" / "rl.parquet").drop(columns="solution"),
        pd.read_parquet(data).set_index("hadm_id").loc[rl["hadm_id"]].reset_index(),
    )
