"""PRM scoring: the fast path equals the reference procedure, greedy labels, aggregations, independence."""

from __future__ import annotations

import json
import math

import pytest
import torch

from clinrl.llm.tiny import TinyModelConfig, build_tiny_model
from clinrl.prm import fastpath
from clinrl.prm.format import SpecialTokens, render_prm_string
from clinrl.prm.schema import Note, Problem, Step
from clinrl.prm.score import FLOOR, NoteScore, PRMScorer, ScoreConfig, SlotScore, slot_layout
from tests.helpers.tokenizers import make_tiny_tokenizer
from tests.prm.note_factory import make_gold

DIALOGUE = "[doctor] how is the knee?\n[patient] it hurts when i walk, and my blood pressure is high."


def tiny_prm(arch: str = "llama", seed: int = 0):
    """A random tiny causal LM with the PRM tokens added (no training needed to test scoring)."""
    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    tokens = SpecialTokens.new()
    tokens.add_to_tokenizer(tokenizer)
    cfg = TinyModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                          intermediate_size=64, seed=seed)  # fmt: skip
    return build_tiny_model(tokenizer, cfg), tokenizer, tokens


def candidates() -> list[Note]:
    """Notes of different lengths for one dialogue, one with a '-' label and one with no problem at all."""
    notes = [make_gold(sizes, dialogue=DIALOGUE) for sizes in ([2, 1], [3], [1, 0, 2], [4, 2, 1])]
    notes[1].problems[0].steps[1].label = "-"
    notes.append(Note(problems=[], dialogue=DIALOGUE, completeness="-"))
    return notes


@pytest.fixture(scope="module")
def prm():
    torch.set_num_threads(1)
    return tiny_prm()


def _probs(scored: list[NoteScore]) -> list[list[float]]:
    return [[s.p_plus for s in n.slots] for n in scored]


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    assert [len(x) for x in a] == [len(x) for x in b]
    return max(abs(x - y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("context", ["placeholder", "plus"])
@pytest.mark.parametrize("probability", ["full", "binary"])
def test_fast_path_matches_reference(arch, context, probability):
    model, tokenizer, tokens = tiny_prm(arch)
    notes = candidates()
    fast = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(probability, context, fast=True, batch_size=2))
    slow = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(probability, context, fast=False))
    got, want = fast.score_notes(notes), slow.score_notes(notes)
    assert fast.stats["fast"] == len(notes) and slow.stats["reference"] == len(notes)
    assert _max_diff(_probs(got), _probs(want)) <= 1e-4
    for g, w in zip(got, want):
        assert abs(g.score("sum_log") - w.score("sum_log")) <= 1e-3


def test_reference_is_the_plain_full_logits_computation(prm):
    """The reference path reads softmax(logits at the structural token)['+'] of BOS + the rendered string."""
    model, tokenizer, tokens = prm
    note = candidates()[0]
    text = render_prm_string(note, tokens, "placeholder")
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    structural = {tokenizer.convert_tokens_to_ids(getattr(tokens, k)) for k in
                  ("problem", "step", "problem_completeness", "note_completeness", "end_of_note")}  # fmt: skip
    at = [i for i, t in enumerate(ids) if t in structural]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, at], -1)
    plus = tokenizer.convert_tokens_to_ids(tokens.plus)
    scored = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(fast=True)).score_note(note)
    assert _max_diff([probs[:, plus].tolist()], _probs([scored])) <= 1e-5
    assert [s.kind for s in scored.slots] == [m["kind"] for m in slot_layout(note)]


def test_scores_are_independent_of_the_other_candidates(prm):
    model, tokenizer, tokens = prm
    notes = candidates()
    scorer = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(batch_size=3))
    together = scorer.score_notes(notes)
    alone = [scorer.score_note(n) for n in notes]
    reversed_ = scorer.score_notes(notes[::-1])[::-1]
    assert _max_diff(_probs(together), _probs(alone)) <= 1e-5
    assert _max_diff(_probs(together), _probs(reversed_)) <= 1e-5


def _naive_greedy(model, tokenizer, tokens, note: Note) -> tuple[list[float], str]:
    """Greedy context the slow way: rebuild the string with the labels chosen so far, one full pass per slot."""
    plus, minus = (tokenizer.convert_tokens_to_ids(t) for t in (tokens.plus, tokens.minus))
    text = render_prm_string(note, tokens, "placeholder")
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    placeholder = tokenizer.convert_tokens_to_ids(tokens.placeholder)
    probs, fed = [], ""
    for k in range(len(ids)):
        if ids[k] != placeholder:
            continue
        with torch.no_grad():
            dist = torch.softmax(model(input_ids=torch.tensor([ids[:k]])).logits[0, -1], -1)
        probs.append(float(dist[plus]))
        choice = plus if dist[plus] >= dist[minus] else minus
        fed += "+" if choice == plus else "-"
        ids[k] = choice
    return probs, fed


def test_greedy_context_feeds_each_predicted_label(prm):
    model, tokenizer, tokens = prm
    notes = candidates()[:3]
    for fast in (True, False):
        scorer = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(context="greedy", fast=fast))
        for note, scored in zip(notes, scorer.score_notes(notes)):
            want, fed = _naive_greedy(model, tokenizer, tokens, note)
            assert _max_diff([want], _probs([scored])) <= 1e-4
            assert "".join(scored.fed_labels or []) == fed


def test_greedy_labels_change_later_slots():
    """With a '-'-leaning model the greedy context differs from the placeholder context (labels are fed)."""
    model, tokenizer, tokens = tiny_prm(seed=3)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[tokenizer.convert_tokens_to_ids(tokens.minus)] += 0.5 * head.abs().mean()
    note = candidates()[3]
    greedy = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(context="greedy")).score_note(note)
    want, fed = _naive_greedy(model, tokenizer, tokens, note)
    assert _max_diff([want], _probs([greedy])) <= 1e-4
    assert "-" in fed and "".join(greedy.fed_labels or []) == fed
    placeholder = PRMScorer(model, tokenizer, tokens).score_note(note)
    assert _max_diff(_probs([greedy]), _probs([placeholder])) > 1e-6


def test_prefix_that_does_not_tokenise_alone_falls_back_to_reference(prm, monkeypatch):
    model, tokenizer, tokens = prm
    notes = candidates()
    want = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(fast=False)).score_notes(notes)
    monkeypatch.setattr(fastpath, "split_prefix", lambda full, prefix: [False] * len(full))
    scorer = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(fast=True))
    got = scorer.score_notes(notes)
    assert scorer.stats["reference"] == len(notes) and scorer.stats["fast"] == 0
    assert _max_diff(_probs(got), _probs(want)) <= 1e-6


def test_split_prefix_detects_a_merge_across_the_boundary():
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())  # no pre-tokenizer: merges may cross the header/note boundary
    raw.train_from_iterator([": \nPlan: rest."] * 50, trainers.BpeTrainer(vocab_size=60, show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw)
    prefix = tok("header: \n")["input_ids"]
    whole = tok("header: \nPlan: rest.")["input_ids"]
    assert fastpath.split_prefix([whole], prefix) == [False]
    assert fastpath.split_prefix([prefix + [5]], prefix) == [True]


def test_free_text_note_scores_like_its_structure(prm):
    from clinrl.prm.structure import structure_note

    model, tokenizer, tokens = prm
    text = "Hypertension:\n- Start lisinopril 10 mg daily.\n- Recheck in 2 weeks.\n\nFollow-up:\n- Return in 1 month."
    scorer = PRMScorer(model, tokenizer, tokens)
    free = scorer.score_note(text, DIALOGUE)
    structured = scorer.score_note(structure_note(text, dialogue=DIALOGUE))
    assert len(free.slots) == structure_note(text).n_label_positions
    assert _max_diff(_probs([free]), _probs([structured])) <= 1e-6


def test_aggregations_on_known_probabilities():
    layout = slot_layout(Note(problems=[Problem("A:", "1", [Step("x", "1"), Step("y", "2")])]))
    probs = [0.9, 0.5, 0.0, 0.8, 0.7, 0.6]
    scored = NoteScore([SlotScore(index=k, p_plus=p, **m) for k, (m, p) in enumerate(zip(layout, probs))])
    logs = [math.log(max(p, FLOOR)) for p in probs]
    assert scored.score("sum_log") == pytest.approx(sum(logs))
    assert scored.score("min") == pytest.approx(math.log(FLOOR))
    assert scored.score("mean") == pytest.approx(sum(logs) / len(logs))
    assert scored.score("last") == pytest.approx(math.log(0.6))
    assert scored.slots[-1].kind == "end_of_note"
    assert [s.where for s in scored.weakest(2)] == ["P1 S2", "P1 S1"]
    with pytest.raises(Exception, match="unknown aggregate"):
        scored.score("max")


def test_score_cli_writes_scores_without_note_text(tmp_path, prm):
    from typer.testing import CliRunner

    from clinrl.cli import app
    from clinrl.prm.model import PRMMeta, save_prm
    from clinrl.prm.schema import save_notes

    model, tokenizer, tokens = prm
    meta = PRMMeta(head="causal-lm", objective="prm", tokens=tokens, loss_mode="special_token", notes_only=False,
                   max_length=4096, dialogue_max_tokens=None, base_model="tiny")  # fmt: skip
    save_prm(tmp_path / "prm", model, tokenizer, meta)
    notes = candidates()[:3]
    save_notes(notes, tmp_path / "notes.json")
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["prm", "score", "--model", str(tmp_path / "prm"), "--notes",
                                      str(tmp_path / "notes.json"), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    want = PRMScorer(model, tokenizer, tokens, config=ScoreConfig(fast=False)).score_notes(notes)
    got = [[s["p_plus"] for s in n["slots"]] for n in report["notes"]]
    assert _max_diff(got, _probs(want)) <= 1e-4
    text = out.read_text()
    assert "lisinopril" not in text and "knee" not in text


def test_token_classification_prm_uses_the_trainers_windows(tmp_path):
    from transformers import BertConfig, BertForTokenClassification

    from clinrl.prm.model import PRMMeta, load_prm, save_prm, slot_probabilities
    from clinrl.prm.score import load_scorer

    tokenizer = make_tiny_tokenizer()
    tokens = SpecialTokens.new()
    tokens.add_to_tokenizer(tokenizer)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2)  # fmt: skip
    meta = PRMMeta(head="token-classification", objective="prm", tokens=tokens, loss_mode="score_token_only",
                   notes_only=False, max_length=256, dialogue_max_tokens=None, base_model="tiny-bert")  # fmt: skip
    save_prm(tmp_path / "enc", BertForTokenClassification(config), tokenizer, meta)
    scorer = load_scorer(tmp_path / "enc")
    notes = candidates()[:3]
    got = scorer.score_notes(notes)
    loaded = load_prm(tmp_path / "enc")
    want = [slot_probabilities(loaded, n) for n in notes]
    assert _max_diff(_probs(got), want) <= 1e-5
    assert [s.kind for s in got[0].slots] == [m["kind"] for m in slot_layout(notes[0])]
    assert len({round(p, 6) for p in _probs(got)[0]}) > 1  # real per-slot outputs, not a constant


def test_default_aggregate_comes_from_the_saved_model():
    from types import SimpleNamespace

    from clinrl.prm.evaluate import _aggregate_for

    scorer = SimpleNamespace(default_aggregate="mean")
    assert _aggregate_for("prm", None, scorer) == "mean"
    assert _aggregate_for("prm", "min", scorer) == "min"
    assert _aggregate_for("prm", None, None) == "sum_log"
    assert _aggregate_for("orm", None, scorer) == "last"
    from clinrl.prm.format import SpecialTokens
    from clinrl.prm.model import PRMMeta

    stored = PRMMeta(
        head="token-classification",
        objective="prm",
        tokens=SpecialTokens.new(),
        loss_mode="score_token_only",
        notes_only=False,
        max_length=64,
        dialogue_max_tokens=None,
        base_model="x",
        score_aggregate="mean",
    )
    assert PRMMeta.from_dict(stored.to_dict()).score_aggregate == "mean"
