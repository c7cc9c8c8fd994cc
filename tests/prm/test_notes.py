import gzip
import json

import pytest

from clinrl.errors import DataError
from clinrl.prm.schema import NoteSchemaError, load_notes, note_from_dict, note_to_dict, save_notes

FILES = ["prm_clinic_gold.json.gz", "verification_dev_gold.json.gz", "verification_dev_error.json.gz"]


@pytest.mark.parametrize("name", FILES)
def test_lossless_round_trip(prm_data, tmp_path, name):
    raw = json.load(gzip.open(prm_data / name))
    notes = load_notes(prm_data / name)
    assert len(notes) == len(raw)
    assert [note_to_dict(n) for n in notes] == raw
    save_notes(notes, tmp_path / name)
    assert json.load(gzip.open(tmp_path / name)) == raw
    # key order is kept too, so the files are byte-identical as JSON text
    assert json.dumps(json.load(gzip.open(tmp_path / name))) == json.dumps(raw)


def test_label_layout(prm_data):
    note = load_notes(prm_data / "verification_dev_error.json.gz")[0]
    assert note.n_label_positions == 2 * len(note.problems) + note.n_steps + 2
    assert len(note.labels()) == note.n_label_positions - 1  # all but the end-of-note label
    assert note.outcome_label == "-"
    gold = load_notes(prm_data / "verification_dev_gold.json.gz")[0]
    assert set(gold.labels()) == {"+"} and gold.outcome_label == "+" and not gold.is_error_sample


def _gold_item():
    return {
        "Problems": [
            {"Problem": "Asthma:", "Problem_no": "1", "Problem_score": "+",
             "Steps": [{"Step": "Plan: albuterol.", "Step_no": "1", "Step_score": "+"}],
             "Problem_completeness_score": "+"}
        ],
        "Note_completeness_score": "+", "Case_no": 3, "Dialogue": "[doctor] hi", "Data_source": "X",
        "Case_id": "X_3",
    }  # fmt: skip


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("Problems"), "Problems"),
        (lambda d: d["Problems"][0].update(Problem_score="?"), "Problems[0].Problem_score"),
        (lambda d: d["Problems"][0]["Steps"][0].pop("Step"), "Problems[0].Steps[0].Step"),
        (lambda d: d.update(Dialogue=5), "Dialogue"),
        (lambda d: d.update(Swapped_info=[{"Error_level": "Step", "Problem_no": "1"}]), "Swapped_info[0].Step_no"),
        (lambda d: d.update(Swapped_info="x"), "Swapped_info"),
    ],
)
def test_schema_errors_name_case_and_field(mutate, field):
    item = _gold_item()
    mutate(item)
    with pytest.raises(NoteSchemaError) as err:
        note_from_dict(item, path="f.json", index=7)
    assert isinstance(err.value, DataError)
    assert err.value.field == field and "X_3" in str(err.value) and "f.json" in str(err.value)


def test_unknown_keys_survive():
    item = _gold_item() | {"Reviewer": "dr x"}
    assert note_to_dict(note_from_dict(item)) == item


def test_bad_files(tmp_path):
    (tmp_path / "a.json.gz").write_text("[]")
    with pytest.raises(NoteSchemaError, match="not gzip"):
        load_notes(tmp_path / "a.json.gz")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(NoteSchemaError, match="JSON list"):
        load_notes(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("[{")
    with pytest.raises(NoteSchemaError, match="not readable"):
        load_notes(tmp_path / "c.json")
