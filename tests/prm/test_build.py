import json

import pyarrow.parquet as pq
import pytest

from clinrl.cli import main
from clinrl.prm.build import COLUMNS, DATA_FILE, REPORT_FILE, TOKENS_FILE, build_prm_dataset
from clinrl.prm.format import SpecialTokens, parse_prm_string
from clinrl.prm.schema import load_notes, save_notes

T = SpecialTokens.llama3()


@pytest.fixture(scope="module")
def dev(prm_data):
    return prm_data / "verification_dev_gold.json.gz", prm_data / "verification_dev_error.json.gz"


@pytest.fixture(scope="module")
def small_gold(prm_data, tmp_path_factory):
    """40 training gold notes, to keep synthesis fast."""
    path = tmp_path_factory.mktemp("gold") / "gold40.json.gz"
    save_notes(load_notes(prm_data / "prm_clinic_gold.json.gz")[:40], path)
    return path


def _rows(out):
    return pq.read_table(out / DATA_FILE).to_pylist()


def test_build_with_error_file(dev, tmp_path):
    gold_path, error_path = dev
    out = tmp_path / "ds"
    report = build_prm_dataset([gold_path], out, error_paths=[error_path], tokens="llama3")
    gold, errors = load_notes(gold_path), load_notes(error_path)
    rows = _rows(out)
    assert len(rows) == report.rows == len(gold) + len(errors) - report.dropped["duplicate"]
    assert list(rows[0]) == list(COLUMNS)
    assert report.by_origin == {"gold": len(gold), "errors": len(errors) - report.dropped["duplicate"]}

    by_key = {(n.case_id, n.sample_no): n for n in gold + errors}
    for row in rows:
        note = by_key[(row["case_id"], row["sample_no"])]
        parsed = parse_prm_string(row["text"], T)
        assert "".join(parsed.labels()) + parsed.outcome_label == row["labels"]
        assert row["labels"] == "".join(note.labels()) + note.outcome_label
        assert row["n_labels"] == len(row["labels"]) == 2 * row["n_problems"] + row["n_steps"] + 2
        assert row["n_minus_labels"] == row["labels"].count("-")
        assert row["is_gold"] == (row["origin"] == "gold") == (row["sample_no"] is None)
        assert row["outcome_label"] == ("+" if row["is_gold"] else "-")
        assert row["n_swaps"] == len(note.swaps) == row["n_step_swaps"] + row["n_problem_swaps"]
        assert row["n_swaps"] == row["n_hallucination"] + row["n_unhelpful"] + row["n_factual_inaccuracy"]
        assert row["n_removals"] == row["n_steps_removed"] + row["n_problems_removed"] == len(note.removals)
        assert row["data_source"] == note.data_source
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["rows"] == len(rows) and saved["by_origin"] == dict(report.by_origin)
    assert sum(saved["by_data_source"].values()) == len(rows)
    assert saved["label_positions"]["-"] == sum(r["n_minus_labels"] for r in rows)
    assert SpecialTokens.from_json(out / TOKENS_FILE) == T


def test_loads_with_datasets(dev, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "ds"
    build_prm_dataset([dev[0]], out, tokens="new", eos="</s>")
    ds = load_dataset("parquet", data_files=str(out / DATA_FILE), cache_dir=str(tmp_path / "cache"))["train"]
    assert ds.num_rows == 100 and set(COLUMNS) == set(ds.column_names)
    new = SpecialTokens.new()
    assert all(t.endswith("</s>") and new.end_of_note + new.plus + "</s>" in t for t in ds["text"])
    assert all(parse_prm_string(t, new, eos="</s>").outcome_label == "+" for t in ds["text"][:10])
    assert SpecialTokens.from_json(out / TOKENS_FILE) == new


def test_synthesize_is_deterministic(small_gold, tmp_path):
    def build(seed, name):
        build_prm_dataset([small_gold], tmp_path / name, synthesize=2, seed=seed)
        return _rows(tmp_path / name), json.loads((tmp_path / name / REPORT_FILE).read_text())

    rows_a, report_a = build(7, "a")
    rows_b, report_b = build(7, "b")
    rows_c, _ = build(8, "c")
    assert rows_a == rows_b and report_a["by_origin"] == report_b["by_origin"]
    assert (tmp_path / "a" / DATA_FILE).read_bytes() == (tmp_path / "b" / DATA_FILE).read_bytes()
    assert [r["text"] for r in rows_a] != [r["text"] for r in rows_c]
    synthetic = [r for r in rows_a if r["origin"] == "synthetic"]
    made = len(synthetic) + report_a["dropped"].get("duplicate", 0)
    assert made + 2 * report_a["synthetic_skipped_gold_notes"] == 2 * 40
    assert synthetic and all(r["outcome_label"] == "-" and not r["is_gold"] for r in synthetic)
    assert all(r["n_swaps"] >= 1 and r["sample_no"] in (0, 1) for r in synthetic)


def test_drops_are_counted(dev, tmp_path):
    notes = load_notes(dev[0])[:5]
    notes[2].problems[0].steps[0].text += T.step  # cannot be rendered
    path = tmp_path / "gold.json"
    save_notes(notes, path)
    report = build_prm_dataset([path, path], tmp_path / "ds")  # the second copy is all duplicates
    assert report.rows == 4
    assert report.dropped == {"unrenderable": 2, "duplicate": 4}
    bad = [d for d in report.dropped_rows if d["reason"] == "unrenderable"]
    assert bad[0]["case_id"] == notes[2].case_id and bad[0]["field"] == "Problems[0].Steps[0].Step"


def test_cli_build_and_render(dev, tmp_path, capsys):
    out = tmp_path / "ds"
    main(["prm", "build", "--gold", str(dev[0]), "--errors", str(dev[1]), "--tokens", "llama3", "--out", str(out)])
    assert "PRM strings" in capsys.readouterr().err
    assert len(_rows(out)) == json.loads((out / REPORT_FILE).read_text())["rows"]

    rendered = tmp_path / "r.jsonl"
    main(["prm", "render", str(dev[0]), "--out", str(rendered)])
    assert "100 PRM strings" in capsys.readouterr().err
    lines = [json.loads(line) for line in rendered.read_text().splitlines()]
    assert len(lines) == 100 and lines[0]["sample_no"] is None
    assert parse_prm_string(lines[0]["text"], T).n_label_positions == lines[0]["text"].count(T.placeholder)

    with pytest.raises(SystemExit) as exit_info:  # a choice: typer's own usage error, before anything loads
        main(["prm", "render", str(dev[0]), "--out", str(rendered), "--labels", "gold"])
    assert exit_info.value.code == 2 and "'gold' is not one of" in capsys.readouterr().err
    for argv in (
        ["prm", "build", "--gold", str(tmp_path / "missing.json"), "--out", str(out)],
        ["prm", "build", "--gold", str(dev[0]), "--tokens", "gpt9", "--out", str(out)],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
