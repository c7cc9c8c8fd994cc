"""PRM trainer: loss masks position by position for every loss mode, the losses, data loading, resume, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from clinrl.errors import ClinrlError
from clinrl.prm.encode import (
    GROUP_LABEL,
    GROUP_NONE,
    GROUP_STRUCTURAL,
    GROUP_TEXT,
    EncodeSettings,
    causal_targets,
    classification_targets,
    encode_causal,
    encode_windows,
    note_slot_labels,
)
from clinrl.prm.format import NOTE_HEADER, SpecialTokens
from clinrl.prm.schema import Note, Problem, Step, save_notes
from clinrl.prm.train import PRMTrainConfig, causal_loss, encode_examples, load_training_notes, train_prm
from tests.helpers.tokenizers import make_tiny_tokenizer

DIALOGUE = "[doctor] how is the knee?\n[patient] it hurts when i walk.\n[doctor] take ibuprofen 400 mg."


def small_note() -> Note:
    """Two problems; one wrong step, one incomplete problem: labels + - + | + + - | + | outcome -."""
    return Note(
        problems=[
            Problem(
                "Knee pain:", "1", [Step("Assessment: knee pain.", "1"), Step("Plan: ibuprofen 800 mg.", "2", "-")]
            ),
            Problem("Follow-up:", "2", [Step("Return in 2 weeks.", "1")], completeness="-"),
        ],
        dialogue=DIALOGUE,
        case_id="T_1",
    )


@pytest.fixture(scope="module")
def tok():
    tokenizer = make_tiny_tokenizer()
    tokens = SpecialTokens.new()
    ids = tokens.add_to_tokenizer(tokenizer)
    return tokenizer, tokens, ids


def _encode(tok, **kw):
    tokenizer, tokens, ids = tok
    return encode_causal(
        small_note(), DIALOGUE, tokenizer, tokens, ids, EncodeSettings(), labels="true", add_eos=True, **kw
    )


def _expected_groups(window, ids, *, orm: bool) -> list[int]:
    """Independent recomputation from the token ids alone."""
    labels = {ids.plus, ids.minus}
    structural = {ids.problem, ids.step, ids.problem_completeness, ids.note_completeness, ids.end_of_note}
    out = []
    seq = window.input_ids
    for t in range(len(seq) - 1):
        nxt = seq[t + 1]
        if nxt in labels and (not orm or seq[t] == ids.end_of_note):
            out.append(GROUP_LABEL)
        elif nxt in structural:
            out.append(GROUP_STRUCTURAL)
        else:
            out.append(GROUP_TEXT)
    return out


def test_causal_input_layout(tok):
    tokenizer, tokens, ids = tok
    w = _encode(tok)
    assert w.input_ids[0] == tokenizer.bos_token_id and w.input_ids[-1] == tokenizer.eos_token_id
    note = small_note()
    assert [s.label for s in w.slots] == note_slot_labels(note)
    assert [s.kind for s in w.slots] == ["problem", "step", "step", "problem_completeness"] * 1 + [
        "problem", "step", "problem_completeness", "note_completeness", "end_of_note"]  # fmt: skip
    for s in w.slots:
        assert w.input_ids[s.label_index] == (ids.plus if s.label == "+" else ids.minus)
    # the note starts right after the note header: prompt+dialogue before, note text after
    assert tokenizer.decode(w.input_ids[1 : w.note_start]).endswith(NOTE_HEADER)
    assert tokenizer.decode(w.input_ids[w.note_start :]).startswith("Knee pain:")


@pytest.mark.parametrize("mode", ["vanilla", "special_token", "score_token_only"])
@pytest.mark.parametrize("notes_only", [False, True])
def test_causal_loss_masks_position_by_position(tok, mode, notes_only):
    _, _, ids = tok
    w = _encode(tok)
    got = causal_targets(w, ids, mode, notes_only=notes_only, orm=False)
    expected = _expected_groups(w, ids, orm=False)
    trained = {"vanilla": {GROUP_LABEL, GROUP_STRUCTURAL, GROUP_TEXT}, "special_token": {GROUP_LABEL, GROUP_STRUCTURAL},
               "score_token_only": {GROUP_LABEL}}[mode]  # fmt: skip
    assert len(got) == len(w.input_ids) - 1
    for t, (g, e) in enumerate(zip(got, expected)):
        before_note = t + 1 < w.note_start
        want = GROUP_NONE if (e not in trained or (notes_only and before_note)) else e
        assert g == want, f"position {t}"
    # every '+'/'-' target is trained (labels are inside the note) and there are exactly n_labels of them
    assert sum(g == GROUP_LABEL for g in got) == small_note().n_label_positions
    if mode == "vanilla":
        assert got[-1] == GROUP_TEXT  # EOS is predicted
        assert (got[0] == GROUP_NONE) == notes_only  # the first prompt token is predicted unless notes-only


@pytest.mark.parametrize("mode", ["vanilla", "special_token", "score_token_only"])
def test_orm_trains_end_of_note_label_only(tok, mode):
    _, _, ids = tok
    w = _encode(tok, orm=True)
    label_tokens = [s.label for s in w.slots]
    assert label_tokens[:-1] == [None] * (len(w.slots) - 1) and label_tokens[-1] == "-"  # placeholders elsewhere
    got = causal_targets(w, ids, mode, notes_only=False, orm=True)
    expected = _expected_groups(w, ids, orm=True)
    eon = w.slots[-1].token_index
    assert [t for t, g in enumerate(got) if g == GROUP_LABEL] == [eon]
    for t, (g, e) in enumerate(zip(got, expected)):
        if mode == "score_token_only":
            assert g == (GROUP_LABEL if t == eon else GROUP_NONE)
        elif mode == "special_token":
            assert g == (e if e in (GROUP_LABEL, GROUP_STRUCTURAL) else GROUP_NONE)
        else:
            assert g == e


def _manual_ce(logits, ids, positions):
    return sum(-torch.log_softmax(logits[0, t], -1)[ids[0, t + 1]] for t in positions) / len(positions)


@pytest.mark.parametrize("mode", ["vanilla", "special_token", "score_token_only"])
def test_causal_loss_matches_definition(tok, mode):
    _, _, ids = tok
    w = _encode(tok)
    groups = torch.tensor([causal_targets(w, ids, mode, notes_only=False, orm=False)])
    input_ids = torch.tensor([w.input_ids])
    torch.manual_seed(0)
    logits = torch.randn(1, len(w.input_ids), 600)
    got = causal_loss(logits, input_ids, groups, mode)
    at = lambda g: [t for t, x in enumerate(groups[0].tolist()) if x == g]  # noqa: E731
    labels, structural = at(GROUP_LABEL), at(GROUP_STRUCTURAL)
    if mode == "vanilla":
        want = _manual_ce(logits, input_ids, sorted(labels + structural + at(GROUP_TEXT)))
    elif mode == "special_token":
        want = _manual_ce(logits, input_ids, labels) + _manual_ce(logits, input_ids, structural)
    else:
        want = _manual_ce(logits, input_ids, labels)
    assert math.isclose(float(got), float(want), rel_tol=1e-5)


def test_classification_targets_at_structural_tokens(tok):
    tokenizer, tokens, ids = tok
    note = small_note()
    settings = EncodeSettings("token-classification", max_length=64, line_max_tokens=16)
    windows = encode_windows(note, DIALOGUE, tokenizer, tokens, ids, settings)
    labels = note_slot_labels(note)
    seen = []
    for w in windows:
        assert ids.plus not in w.input_ids and ids.minus not in w.input_ids  # labels never visible
        targets = classification_targets(w, labels, orm=False)
        for s in w.slots:
            assert w.input_ids[s.token_index] == getattr(ids, s.kind)
            assert w.input_ids[s.token_index + 1] == ids.placeholder
        want = {s.token_index: (1 if labels[s.index] == "+" else 0) for s in w.slots}
        assert targets == [want.get(t, -100) for t in range(len(w.input_ids))]
        orm_targets = classification_targets(w, labels, orm=True)
        assert [t for t in orm_targets if t != -100] == ([0] if any(s.kind == "end_of_note" for s in w.slots) else [])
        seen += [s.index for s in w.slots]
    assert sorted(seen) == list(range(note.n_label_positions))


# ------------------------------------------------------------------------------------ data and runs
@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory) -> Path:
    from clinrl.llm.tiny import build_tiny_model
    from tests.helpers.models import SMALLEST_LM

    out = tmp_path_factory.mktemp("tiny_causal")
    tokenizer = make_tiny_tokenizer()
    build_tiny_model(tokenizer, SMALLEST_LM, out=out)
    return out


@pytest.fixture(scope="module")
def gold_file(tmp_path_factory) -> Path:
    notes = []
    for i in range(6):
        n = small_note()
        for p in n.problems:
            p.completeness = "+"
            for s in p.steps:
                s.label = "+"
        n.case_id, n.case_no, n.data_source = f"T_{i}", i, "T"
        n.problems[0].steps[0].text = f"Assessment: knee pain for {i + 2} days."
        notes.append(n)
    path = tmp_path_factory.mktemp("gold") / "gold.json"
    save_notes(notes, path)
    return path


TRAINING_KEYS = {
    "learning_rate",
    "per_device_train_batch_size",
    "warmup_steps",
    "save_steps",
    "logging_steps",
    "max_steps",
    "num_train_epochs",
    "eval_steps",
    "gradient_accumulation_steps",
    "save_total_limit",
}


def _config(tiny_causal, gold_file, out, **kw) -> PRMTrainConfig:
    """A tiny causal PRM config; keyword arguments that are TrainingArguments go under ``training``."""
    base = dict(
        output_dir=str(out), model=str(tiny_causal), head="causal-lm", data=[str(gold_file)],
        synthesize=1, max_length=512, progress=False, num_threads=1,
    )  # fmt: skip
    training = dict(learning_rate=1e-3, per_device_train_batch_size=2, warmup_steps=1, save_steps=2, logging_steps=1)
    for key, value in kw.items():
        (training if key in TRAINING_KEYS else base)[key] = value
    return PRMTrainConfig(**base, training=training)


def test_training_notes_from_gold_and_build_output(tiny_causal, gold_file, tmp_path):
    from clinrl.prm.build import build_prm_dataset

    cfg = _config(tiny_causal, gold_file, tmp_path / "run")
    notes = load_training_notes(cfg)
    assert sum(n.is_error_sample for n in notes) == 6 and len(notes) == 12
    build_prm_dataset([gold_file], tmp_path / "data", synthesize=1, tokens="llama3")
    parsed = load_training_notes(
        _config(tiny_causal, gold_file, tmp_path / "run", data=[], train_data=str(tmp_path / "data"))
    )
    assert sorted("".join(note_slot_labels(n)) for n in parsed) == sorted("".join(note_slot_labels(n)) for n in notes)


def test_too_long_notes_are_dropped_and_counted(tiny_causal, gold_file, tmp_path):
    from transformers import AutoTokenizer

    cfg = _config(tiny_causal, gold_file, tmp_path / "run", max_length=40)
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal)
    tokens = SpecialTokens.new()
    ids = tokens.add_to_tokenizer(tokenizer)
    notes = load_training_notes(cfg)
    examples, dropped = encode_examples(notes, tokenizer, tokens, ids, cfg)
    assert examples == [] and dropped == {"too_long": len(notes)}


def test_train_and_resume_gives_the_same_model(tiny_causal, gold_file, tmp_path):
    from safetensors.torch import load_file

    from clinrl.prm.model import load_prm, slot_probabilities

    straight = train_prm(_config(tiny_causal, gold_file, tmp_path / "a", max_steps=4))
    assert straight.steps == 4 and all(math.isfinite(loss) for _, loss in straight.losses)
    state = json.loads((tmp_path / "a" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and "log_history" in state  # transformers' own checkpoint and state
    # an interrupted run: only the step-2 checkpoint exists; resuming must reproduce the straight run
    (tmp_path / "b").mkdir()
    import shutil

    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    resumed = train_prm(_config(tiny_causal, gold_file, tmp_path / "b", max_steps=4), resume=True)
    assert resumed.resumed_from.endswith("checkpoint-2") and resumed.steps == 4
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    loaded = load_prm(tmp_path / "b")
    assert loaded.meta.head == "causal-lm" and loaded.meta.loss_mode == "special_token"
    probs = slot_probabilities(loaded, small_note())
    assert len(probs) == small_note().n_label_positions and all(0 < p < 1 for p in probs)
    report = json.loads((tmp_path / "b" / "train_report.json").read_text())
    assert "Knee" not in json.dumps(report)  # no note text in reports
    from clinrl.cards import MARKER

    card = (tmp_path / "b" / "README.md").read_text()
    assert MARKER in card and "clinrl prm eval-selection --scorer prm" in card and "Knee" not in card
    train_loss = json.loads((tmp_path / "b" / "trainer_state.json").read_text())["log_history"][-1]["train_loss"]
    assert f"| train_loss | {train_loss:.6g} |" in card


def test_fresh_run_refuses_a_folder_with_checkpoints(tiny_causal, gold_file, tmp_path):
    from clinrl.errors import ClinrlError

    (tmp_path / "c" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ClinrlError, match="resume"):
        train_prm(_config(tiny_causal, gold_file, tmp_path / "c", max_steps=1))


def test_token_classification_training_learns(gold_file, tmp_path):
    """A tiny random BERT with the trainer's windows: the loss falls on a fixed small set."""
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(
        w for w in (DIALOGUE + " assessment knee pain for days plan ibuprofen mg return in weeks follow up").lower()
        .replace(":", " : ").replace(".", " . ").replace("-", " - ").replace("?", " ? ").split()
    )) + [":", ".", "-", "?", "[", "]"] + [str(i) for i in range(10)]  # fmt: skip
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    BertForTokenClassification(cfg).save_pretrained(folder)
    config = PRMTrainConfig(
        output_dir=str(tmp_path / "tc"), model=str(folder), head="token-classification",
        data=[str(gold_file)], synthesize=2, max_length=64, class_weight="sqrt", progress=False, num_threads=1,
        training=dict(learning_rate=3e-3, num_train_epochs=6, per_device_train_batch_size=8, warmup_steps=0,
                      save_steps=0, logging_steps=1),
    )  # fmt: skip
    result = train_prm(config)
    assert result.label_counts["-"] > 0 and result.label_counts["+"] > result.label_counts["-"]
    first, last = result.losses[0][1], result.losses[-1][1]
    assert last < first
    from clinrl.prm.model import load_prm, slot_probabilities

    loaded = load_prm(tmp_path / "tc")
    assert loaded.meta.head == "token-classification" and loaded.meta.max_length == 64
    assert len(slot_probabilities(loaded, small_note())) == small_note().n_label_positions


def test_recipes_load_and_bad_keys_fail(tmp_path):
    from clinrl.config import RecipeError
    from clinrl.training import load_trainer_config

    root = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "recipes" / "prm"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"cpu_minilm.yaml", "llama31_8b.yaml", "llama31_8b_orm.yaml", "tiny_causal.yaml"} <= set(names)
    for name in names:
        for light in (True, False):
            assert isinstance(load_trainer_config(PRMTrainConfig, root / name, light=light), PRMTrainConfig)
    orm = load_trainer_config(PRMTrainConfig, root / "llama31_8b_orm.yaml")
    assert orm.objective == "orm" and orm.training["learning_rate"] == 3e-5 and orm.training["bf16"] is True
    minilm = load_trainer_config(PRMTrainConfig, root / "cpu_minilm.yaml", ["--training.learning_rate", "2e-5"])
    assert minilm.training["learning_rate"] == 2e-5 and minilm.training["save_total_limit"] == 2  # a PRM default
    with pytest.raises(RecipeError, match="no_such_key"):
        load_trainer_config(PRMTrainConfig, root / "cpu_minilm.yaml", {"no_such_key": 1})


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("model_name_or_path", "model"),
        ("gold", "data"),
        ("learning_rate", "training.learning_rate"),
        ("bf16", "training.bf16"),
    ],
)
def test_old_flat_prm_keys_name_their_new_key(tmp_path, old, new):
    """PRM recipes before the common schema set model_name_or_path, gold and flat TrainingArguments."""
    from clinrl.config import RecipeError
    from clinrl.training import load_trainer_config

    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"output_dir: o\ndata: [demo]\n{old}: x\n")
    with pytest.raises(RecipeError, match=f"key '{old}': renamed: set {new} instead"):
        load_trainer_config(PRMTrainConfig, recipe, light=True)


def test_cli_train_reports_unknown_override_cleanly(capsys):
    from clinrl.cli import main

    recipe = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["prm", "train", "--config", str(recipe), "--learning_rat", "1"])
    assert exit_info.value.code == 2 and "learning_rat" in capsys.readouterr().err


def test_cli_trains_the_tiny_causal_recipe(tmp_path, gold_file, capsys):
    from clinrl.cli import main
    from clinrl.prm.model import load_prm

    recipe = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "recipes" / "prm" / "tiny_causal.yaml"
    main(["prm", "train", "--config", str(recipe), "--output_dir", str(tmp_path / "out"), "--data", f"[{gold_file}]",
          "--training.max_steps", "2", "--loss_mode", "vanilla", "--notes_only", "true", "--progress", "false"])  # fmt: skip
    assert "2 steps on" in capsys.readouterr().err
    loaded = load_prm(tmp_path / "out")
    assert loaded.meta.loss_mode == "vanilla" and loaded.meta.notes_only and loaded.meta.base_model == "tiny:qwen2"


def test_cpu_causal_recipe_shapes_the_random_init_model(tmp_path, gold_file):
    from clinrl.errors import ClinrlError
    from clinrl.prm.model import load_prm
    from clinrl.prm.train import train_from_recipe

    recipe = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "recipes" / "prm" / "cpu_causal.yaml"
    result = train_from_recipe(recipe, ["--output_dir", str(tmp_path / "out"), "--data", f"[{gold_file}]",
                                        "--training.max_steps", "1", "--tiny_hidden_size", "48", "--tiny_layers", "3",
                                        "--tiny_heads", "4", "--tiny_vocab_size", "600", "--progress", "false"])  # fmt: skip
    assert result.steps == 1
    config = load_prm(tmp_path / "out").model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (48, 3, 4)
    assert config.num_key_value_heads == 2 and config.intermediate_size == 96
    with pytest.raises(ClinrlError, match="multiple of tiny_heads"):
        train_from_recipe(recipe, ["--output_dir", str(tmp_path / "bad"), "--data", f"[{gold_file}]",
                                   "--tiny_hidden_size", "50", "--progress", "false"])  # fmt: skip


def test_eval_notes_give_an_evaluation_loss_during_training(tiny_causal, gold_file, tmp_path):
    """Evaluation during training comes from the Trainer: ``eval_notes`` + ``eval_steps`` log ``eval_loss``."""
    train_prm(_config(tiny_causal, gold_file, tmp_path / "e", max_steps=2, save_steps=0, eval_notes=[str(gold_file)],
                      eval_steps=1))  # fmt: skip
    history = json.loads((tmp_path / "e" / "trainer_state.json").read_text())["log_history"]
    evals = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [1, 2] and all(math.isfinite(e["eval_loss"]) for e in evals)


def test_a_tiny_base_model_is_built_once_and_the_other_ranks_wait_for_its_mark(gold_file, tmp_path, monkeypatch):
    """The first process builds ``tiny:`` into base_model (temp folder, mark, rename); another rank returns only
    once the mark names the same inputs, and never builds; a run with other settings rebuilds."""
    import clinrl.prm.train as T

    config = _config("tiny:qwen2", gold_file, tmp_path / "run", tiny_hidden_size=32, tiny_layers=1, tiny_heads=2,
                     tiny_vocab_size=400)  # fmt: skip
    notes = load_training_notes(config)
    folder = tmp_path / "run" / "base_model"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(T, "TINY_WAIT_S", 0.5)
    with pytest.raises(ClinrlError, match="waited 0 s for the first process"):  # rank 1 never builds
        T._base_model_path(config, notes)
    assert not folder.exists()
    monkeypatch.setenv("RANK", "0")
    assert T._base_model_path(config, notes) == str(folder)
    mark = (folder / T.TINY_DONE).read_text()
    assert (folder / "config.json").is_file() and not list(folder.parent.glob("base_model.tmp-*"))
    monkeypatch.setenv("RANK", "1")
    assert T._base_model_path(config, notes) == str(folder)  # the mark matches: at once
    built_at = (folder / "config.json").stat().st_mtime_ns
    monkeypatch.setenv("RANK", "0")
    T._base_model_path(config, notes)  # kept (e.g. --resume): not rebuilt
    assert (folder / "config.json").stat().st_mtime_ns == built_at
    other = replace(config, tiny_hidden_size=64, tiny_heads=4)
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ClinrlError):  # an older model of other settings is not taken for this run's
        T._base_model_path(other, notes)
    monkeypatch.setenv("RANK", "0")
    T._base_model_path(other, notes)
    assert (folder / T.TINY_DONE).read_text() != mark
