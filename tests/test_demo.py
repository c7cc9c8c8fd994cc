import json

from clinrl.cli import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--n-notes", "600"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    flow = summary["drg"]["flow"]
    dropped = sum(v for k, v in flow.items() if k.startswith("dropped_"))
    assert flow["notes_read"] == 600 == flow["kept"] + dropped
    assert flow["kept"] == flow["train"] + flow["test"] > 0
    assert (tmp_path / "drg" / "splits" / "rl.parquet").exists()
    rewards = {r["case"]: r for r in summary["drg"]["rewards"]}
    assert rewards["exact answer, other case and spacing"]["accuracy_strict"] == 2.0
    assert rewards["a substring of the gold only"]["accuracy_dense"] == -1.5
    assert summary["prm"]["real_label_check"]["n_mismatches"] == 5
    assert summary["prm"]["synthetic_label_check"]["ok"] is True
    assert summary["prm"]["build"]["rows"] > 1272
