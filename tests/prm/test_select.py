"""Best-of-N ranking: order, weakest steps, free-text candidates, the table's patient-data hygiene, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from clinrl.errors import DataError
from clinrl.prm.score import PRMScorer, ScoreConfig
from clinrl.prm.select import best_of_n, ranking_table
from tests.prm.test_score import DIALOGUE, candidates, tiny_prm

FREE_TEXT = (
    "Knee pain:\n- Ibuprofen 400 mg as needed.\n- Physical therapy referral.\n\nFollow-up:\n- Return in 6 weeks."
)


@pytest.fixture(scope="module")
def scorer():
    torch.set_num_threads(1)
    model, tokenizer, tokens = tiny_prm(seed=1)
    return PRMScorer(model, tokenizer, tokens, config=ScoreConfig(batch_size=2))


def _render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


@pytest.mark.parametrize("aggregate", ["sum_log", "min", "mean", "last"])
def test_ranking_sorts_by_the_aggregate(scorer, aggregate):
    notes = candidates()[:4] + [FREE_TEXT]
    ranking = best_of_n(DIALOGUE, notes, scorer, aggregate)
    own = [scorer.score_note(n, DIALOGUE).score(aggregate) for n in notes]
    assert [e.index for e in ranking.entries] == sorted(range(len(notes)), key=lambda i: (-own[i], i))
    assert [e.score for e in ranking.entries] == pytest.approx(sorted(own, reverse=True), abs=1e-3)
    assert ranking.best.rank == 1 and [e.rank for e in ranking.entries] == list(range(1, len(notes) + 1))


def test_weakest_steps_are_the_lowest_step_and_header_slots(scorer):
    ranking = best_of_n(DIALOGUE, candidates()[:3], scorer, weakest=2)
    for entry in ranking.entries:
        items = sorted(s.p_plus for s in entry.scored.slots if s.kind in ("problem", "step"))
        assert [s.p_plus for s in entry.weakest] == items[:2]


def test_default_aggregate_follows_the_objective(scorer):
    assert best_of_n(DIALOGUE, [FREE_TEXT], scorer).aggregate == "sum_log"
    orm = PRMScorer(scorer.model, scorer.tokenizer, scorer.tokens, objective="orm")
    assert best_of_n(DIALOGUE, [FREE_TEXT], orm).aggregate == "last"


def test_table_shows_step_text_only_when_asked(scorer):
    ranking = best_of_n(DIALOGUE, [FREE_TEXT, candidates()[0]], scorer, names=["free", "structured"])
    hidden, shown = _render(ranking_table(ranking)), _render(ranking_table(ranking, show_text=True))
    assert "free" in hidden and "structured" in hidden
    assert "Ibuprofen" not in hidden and "lisinopril" not in hidden and "Knee pain" not in hidden
    weakest_text = [e for e in ranking.entries if e.name == "free"][0].weakest[0]
    assert weakest_text.where in hidden
    assert "Ibuprofen" in shown or "Physical therapy" in shown or "Knee pain" in shown or "Return" in shown


def test_empty_candidate_list_is_refused(scorer):
    with pytest.raises(ValueError):
        best_of_n(DIALOGUE, [], scorer)


def test_best_of_n_cli(tmp_path, scorer):
    from typer.testing import CliRunner

    from clinrl.cli import app
    from clinrl.prm.model import PRMMeta, save_prm
    from clinrl.prm.schema import save_notes

    meta = PRMMeta(head="causal-lm", objective="prm", tokens=scorer.tokens, loss_mode="special_token",
                   notes_only=False, max_length=4096, dialogue_max_tokens=None, base_model="tiny")  # fmt: skip
    save_prm(tmp_path / "prm", scorer.model, scorer.tokenizer, meta)
    (tmp_path / "dialogue.txt").write_text(DIALOGUE)
    (tmp_path / "a.txt").write_text(FREE_TEXT)
    save_notes(candidates()[:2], tmp_path / "b.json")
    out = tmp_path / "ranking.json"
    args = ["prm", "best-of-n", "--model", str(tmp_path / "prm"), "--dialogue", str(tmp_path / "dialogue.txt"),
            "--notes", str(tmp_path / "a.txt"), "--notes", str(tmp_path / "b.json"), "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Ibuprofen" not in result.output
    ranking = json.loads(out.read_text())["ranking"]
    assert sorted(e["name"] for e in ranking) == ["a.txt", "b.json[0]", "b.json[1]"]
    assert [e["score"] for e in ranking] == sorted((e["score"] for e in ranking), reverse=True)
    missing = CliRunner().invoke(app, args[:-6] + ["--notes", str(tmp_path / "nope.txt")])
    assert isinstance(missing.exception, DataError) and "nope.txt" in str(missing.exception)
