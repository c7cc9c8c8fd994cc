"""The demo end to end at --quick sizes: every stage runs, numbers come from the run, the report renders."""

import json

import pytest

from clinrl.cli import main
from clinrl.demo.check_report import check_report, find_chromium
from clinrl.demo.report import render_report


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    import torch

    out = tmp_path_factory.mktemp("demo")
    main(["demo", "--quick", "--threads", "1", "--out", str(out)])
    torch.set_num_threads(1)
    return out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_demo_runs_every_stage(quick_demo):
    out, summary = quick_demo
    flow = summary["drg"]["flow"]
    dropped = sum(v for k, v in flow.items() if k.startswith("dropped_"))
    assert flow["notes_read"] == 400 == flow["kept"] + dropped
    assert flow["kept"] == flow["train"] + flow["test"] > 0
    rewards = {r["case"]: r for r in summary["drg"]["rewards"]}
    assert rewards["exact answer, other case and spacing"]["accuracy_strict"] == 2.0
    assert rewards["a substring of the gold only"]["accuracy_dense"] == -1.5
    drg = summary["drg"]
    assert drg["sft"]["global_step"] >= 1 and drg["grpo"]["global_step"] == 3
    for stage in ("sft", "grpo"):
        metrics = drg["eval"][stage]
        assert metrics["n_cases"] == 8 and metrics["n_samples"] == 2
        assert (out / "drg" / f"eval_{stage}" / "generations.jsonl").is_file()
        assert 0.0 <= metrics["drg"]["pass@1"] <= 1.0
    prm = summary["prm"]
    assert prm["real_label_check"]["n_mismatches"] == 5
    assert prm["synthetic_label_check"]["ok"] is True
    assert prm["train"]["steps"] >= 1 and (out / "prm" / "model" / "clinrl_prm.json").is_file()
    medoid = prm["selection"]["medoid"]["sources"]
    assert set(medoid) == {"A_Validate", "Dialogue_G"} and all(v["total"] == 2 for v in medoid.values())
    assert "detection" in prm["selection"]["prm"]["sources"]["Dialogue_G"]
    assert prm["preference"]["cases"] == 10 and prm["preference"]["random"]["accuracy"] == pytest.approx(1 / 3)
    ranking = prm["best_of_n"]["ranking"]
    assert sorted(e["rank"] for e in ranking) == list(range(1, len(ranking) + 1))
    assert all(0.0 <= item["p_plus"] <= 1.0 for e in ranking for item in e["items"])


@pytest.mark.slow
def test_demo_report_holds_the_runs_numbers(quick_demo):
    out, summary = quick_demo
    page = (out / "report.html").read_text()
    assert page == render_report(summary)  # the page is a function of the summary only
    assert f"{summary['drg']['flow']['notes_read']:,}" in page
    medoid = summary["prm"]["selection"]["medoid"]["sources"]["Dialogue_G"]
    assert f"{100 * medoid['accuracy']:.1f} ({medoid['correct']:.1f}/{medoid['total']})" in page
    assert "DRG-Sapphire (published" in page and "PRM-Clinic (published" in page


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")
def test_demo_report_renders_in_chromium(quick_demo, tmp_path):
    out, _ = quick_demo
    result = check_report(out / "report.html", tmp_path / "shot.png")
    assert result["plots_total"] >= 6
    assert result["plots_loaded"] == result["plots_total"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_report_check_fails_on_a_broken_plot(tmp_path):
    if find_chromium() is None:
        pytest.skip("no Chromium on this machine")
    page = tmp_path / "r.html"
    from clinrl.demo.report import _CHECK_SCRIPT

    page.write_text(
        f"<html><head><script>{_CHECK_SCRIPT}</script></head><body>"
        '<img class="plot" src="data:image/png;base64,AAAA"></body></html>'
    )
    result = check_report(page)
    assert result == {"plots_loaded": 0, "plots_total": 1}


def test_demo_rejects_bad_only(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--only", "both"])
    assert exc.value.code == 2
    assert "'both' is not one of 'drg', 'prm'" in capsys.readouterr().err
