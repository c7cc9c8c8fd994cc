"""``clinrl prm …``: clinical-note PRM commands. Heavy imports stay inside each command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import typer

from clinrl.cli._common import Aggregate, alias, hidden_alias, progress_on
from clinrl.cli._openai import OpenAIOptions, openai_options
from clinrl.cli._prm_scoring import ScoringOptions, scoring_options
from clinrl.cli._train import TrainRequest, trainer_command

app = typer.Typer(no_args_is_help=True)

# Commands are added below, one function each.


@app.command("check-labels")
def check_labels_command(
    errors: Path = typer.Option(..., "--errors", help="Error samples (PRM-Clinic JSON, .json or .json.gz)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="Gold notes, to check the edits against them too."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when anything does not match."),
) -> None:
    """Recompute every label from the samples' edits and list what does not match (positions only)."""
    from clinrl.io import write_json_atomic
    from clinrl.prm.schema import load_notes
    from clinrl.prm.synth.labels import check_label_consistency

    notes = load_notes(errors)
    report = check_label_consistency(notes, load_notes(gold) if gold is not None else None)
    typer.echo(report.summary())
    if json_out is not None:
        write_json_atomic(json_out, report.to_dict())
    if strict and not report.ok:
        raise typer.Exit(1)


@app.command("synth-errors")
@openai_options
def synth_errors_command(
    gold: Path = typer.Option(..., "--gold", help="Gold notes (PRM-Clinic JSON, .json or .json.gz)."),
    out: Path = typer.Option(..., "--out", help="Where to write the error samples (.json or .json.gz)."),
    per_note: int = typer.Option(8, "--per-note", min=1, help="Error samples per gold note."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same samples)."),
    min_swaps: int = typer.Option(2, "--min-swaps", min=1, help="Fewest swaps per sample."),
    max_swaps: int = typer.Option(5, "--max-swaps", min=1, help="Most swaps per sample."),
    max_removals: int = typer.Option(8, "--max-removals", min=0, help="Most removals (steps + problems) per sample."),
    problem_removal_rate: float = typer.Option(
        144 / 768, "--problem-removal-rate", min=0.0, max=1.0, help="Chance that a sample loses a whole problem."
    ),
    pool: Optional[Path] = typer.Option(
        None, "--pool", help="rule: notes whose content hallucinations may borrow (default: the gold notes)."
    ),
    report: bool = typer.Option(False, "--report", help="Print a table of the synthetic set's figures."),
    compare_with: Optional[Path] = typer.Option(
        None, "--compare-with", help="Real error samples to compare with (implies --report)."
    ),
    compare_gold: Optional[Path] = typer.Option(
        None, "--compare-gold", help="Gold notes of --compare-with (default: rebuilt from their edits)."
    ),
    backend: Literal["rule", "openai"] = typer.Option(
        "rule", "--backend", help="rule: no model; openai: a model writes the edits."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="openai: model name at --endpoint (note text is sent there)."
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="openai: answers asked per prompt at most."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="openai: sampling temperature."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Synthesize PRM-Clinic error samples from gold notes: rule-based edits (default, no model) or edits
    written by a model (--backend openai), validated and labelled by our code."""
    from rich.console import Console

    from clinrl.errors import ClinrlError
    from clinrl.prm.schema import load_notes
    from clinrl.prm.synth.inject import SynthConfig
    from clinrl.prm.synth.run import synthesize_error_file

    if min_swaps > max_swaps:  # named by its flags here; SynthConfig names its fields
        raise ClinrlError(f"--min-swaps ({min_swaps}) is larger than --max-swaps ({max_swaps})")
    config = SynthConfig(
        min_swaps=min_swaps, max_swaps=max_swaps, max_removals=max_removals, problem_removal_rate=problem_removal_rate
    )
    client = llm = None
    if backend == "openai":
        from clinrl.prm.synth.llm_inject import LLMSynthConfig

        client = openai.backend(model, sent="note text")
        llm = LLMSynthConfig(max_attempts=max_attempts, temperature=temperature, seed=seed,
                             batch_size=openai.concurrency * 2)  # fmt: skip
    gold_notes = load_notes(gold)
    progress, advance = _progress(len(gold_notes), "synthesizing", quiet)
    with progress:
        run = synthesize_error_file(
            gold_notes, out, per_note=per_note, seed=seed, config=config, pool=pool, client=client, llm=llm,
            progress=advance, report_extra={"endpoint": openai.endpoint, "model": model},
        )  # fmt: skip
    skipped = f"; skipped {len(run.skipped)} notes too small for --min-swaps: {run.skipped}" if run.skipped else ""
    typer.echo(f"{len(run.notes)} error samples from {len(run.gold) - len(run.skipped)} gold notes -> {out}{skipped}",
               err=True)  # fmt: skip
    if run.llm_report is not None:
        typer.echo(f"rejected {run.llm_report['rejected']} samples {run.llm_report['rejects_by_reason']} "
                   f"({run.llm_report['requests']} requests) -> {run.report_path}", err=True)  # fmt: skip
    if compare_with is not None or report:
        from clinrl.prm.synth.compare import compare_error_sets, comparison_table, profile_error_set

        if compare_with is not None:
            real_gold = load_notes(compare_gold) if compare_gold is not None else None
            comparison = compare_error_sets(run.notes, load_notes(compare_with), synthetic_gold=run.gold,
                                            real_gold=real_gold)  # fmt: skip
            Console().print(comparison_table(comparison))
        else:
            Console().print(comparison_table(profile_error_set(run.notes, run.gold), title="Synthetic error samples"))


@app.command("build")
def build_command(
    gold: list[Path] = typer.Option(..., "--gold", help="Gold notes (PRM-Clinic JSON); repeat for several files."),
    errors: Optional[list[Path]] = typer.Option(None, "--errors", help="Error samples to include; repeatable."),
    synthesize: int = typer.Option(0, "--synthesize", min=0, help="Synthetic error samples per gold note."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the synthesis (same seed, same output)."),
    tokens: str = typer.Option("llama3", "--tokens", help="Special tokens: llama3, new, or a JSON file."),
    out: Path = typer.Option(..., "--out", help="Output directory (data.parquet, build_report.json, …)."),
    eos: Optional[str] = typer.Option(None, "--eos", help="Append this EOS string to every PRM string."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Build the PRM training set: true-label PRM strings of gold notes and error samples, as parquet."""
    from clinrl.prm.build import DATA_FILE, build_prm_dataset

    report = build_prm_dataset(
        gold,
        out,
        error_paths=errors or [],
        synthesize=synthesize,
        seed=seed,
        tokens=tokens,
        eos=eos,
        progress=progress_on(quiet),
    )
    origins = ", ".join(f"{k} {v}" for k, v in report.by_origin.items())
    dropped = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none"
    typer.echo(f"{report.rows} PRM strings ({origins}); dropped: {dropped} -> {out / DATA_FILE}", err=True)
    if report.synthetic_skipped_gold:
        typer.echo(f"{report.synthetic_skipped_gold} gold notes were too small to synthesize errors from", err=True)


@app.command("structure")
@openai_options
def structure_command(
    notes: list[Path] = typer.Argument(..., help="Free-text Assessment & Plan notes, one per text file."),
    out: Path = typer.Option(..., "--out", help="Structured notes (PRM-Clinic JSON, .json or .json.gz)."),
    dialogue: Optional[Path] = typer.Option(None, "--dialogue", help="Dialogue text file stored with every note."),
    backend: Literal["rule", "openai"] = typer.Option(
        "rule", "--backend", help="rule: no model; openai: a model splits the notes."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="openai: model name at --endpoint (note text is sent there)."
    ),
    max_attempts: int = typer.Option(2, "--max-attempts", min=1, help="openai: answers asked per note at most."),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Split free-text notes into problems and steps: by rule, or by a model with validation and a rule fallback."""
    from clinrl.prm.llm_structure import StructureConfig, structure_files

    client = openai.backend(model, sent="note text") if backend == "openai" else None
    summary = structure_files(notes, out, dialogue=dialogue, backend=client,
                              config=StructureConfig(max_attempts=max_attempts))  # fmt: skip
    typer.echo(f"{json.dumps(summary)} -> {out}", err=True)


@app.command("render")
def render_command(
    notes: Path = typer.Argument(..., help="Notes to render (PRM-Clinic JSON, .json or .json.gz)."),
    out: Path = typer.Option(..., "--out", help="JSON Lines file: one {case_id, sample_no, text} per note."),
    tokens: str = typer.Option("llama3", "--tokens", help="Special tokens: llama3, new, or a JSON file."),
    labels: Literal["true", "placeholder", "plus"] = typer.Option(
        "placeholder", "--labels", help="Label slots: true (training), placeholder (inference) or plus."
    ),
    eos: Optional[str] = typer.Option(None, "--eos", help="Append this EOS string to every PRM string."),
) -> None:
    """Render notes as PRM strings (placeholder labels by default, for scoring)."""
    from clinrl.prm.build import resolve_tokens, write_rendered
    from clinrl.prm.schema import load_notes

    special = resolve_tokens(tokens)[1]
    count = write_rendered(load_notes(notes), special, out, labels=labels, eos=eos)
    typer.echo(f"{count} PRM strings -> {out}", err=True)


@trainer_command(
    app, "train", group="prm", example="cpu_minilm, tiny_causal", recipe_class="clinrl.prm.train:PRMTrainConfig"
)
def train_command(run: TrainRequest) -> None:
    """Train a PRM/ORM from a recipe; extra `--key value` pairs override recipe keys."""
    from clinrl.prm.train import train_from_recipe

    result = run.train(train_from_recipe)
    last = f", last loss {result.losses[-1][1]}" if result.losses else ""
    dropped = f"; dropped {result.dropped}" if result.dropped else ""
    typer.echo(
        f"{result.steps} steps on {result.examples} examples from {result.notes} notes in {result.seconds:.0f} s"
        f"{last}{dropped} -> {result.output_dir}",
        err=True,
    )


# ---- scoring, Best-of-N and evaluation (clinrl.prm.score / select / evaluate); the scoring options: _prm_scoring
_AGGREGATE_HELP = "Note score from the slots (default: the model's, else sum_log)."
_QUIET = typer.Option(False, "--quiet", help="No progress bar.")
_LEXICAL = "lexical: a no-model verifier, word overlap with the dialogue"
_MODEL_HELP = "PRM folder (--scorer prm/orm) or judge folder (--scorer judge; made by prm judge-init)."


def _check_judge(scorer: str, model: Optional[Path]) -> None:
    """``--scorer judge`` needs a judge folder: refuse anything else before data or a model loads."""
    from clinrl.errors import ClinrlError
    from clinrl.prm.judge import JUDGE_FILE, is_judge_folder

    if scorer == "judge" and not is_judge_folder(model):
        where = f"{model} has no {JUDGE_FILE}" if model is not None else "no --model given"
        raise ClinrlError(f"--scorer judge needs --model DIR, a judge folder made by 'clinrl prm judge-init' ({where})")


def _progress(total: int, label: str, quiet: bool = False):
    """A transient rich progress bar on stderr and its advance callback; disabled under --quiet."""
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True, disable=not progress_on(quiet))
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.advance(task, n)


@app.command("score")
@scoring_options
def score_command(
    model: Path = typer.Option(..., "--model", help="A trained PRM folder (clinrl_prm.json inside) or a judge folder."),
    notes: Path = typer.Option(..., "--notes", help="PRM-Clinic JSON notes, or one free-text note (.txt)."),
    dialogue: Optional[Path] = typer.Option(None, "--dialogue", help="Dialogue text file (replaces the notes' own)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write per-slot P(+) and note scores here (no note text). [required]"
    ),
    no_fast: bool = typer.Option(False, "--no-fast", help="Use the one-note-at-a-time reference procedure."),
    quiet: bool = _QUIET,
    old_json: Optional[Path] = hidden_alias("--json", "--out"),
    scoring: ScoringOptions = ScoringOptions(),
) -> None:
    """Score notes with a PRM: P(+) at every label slot and note scores (sum_log, min, mean, last)."""
    from clinrl.errors import ClinrlError
    from clinrl.io import read_text_file, write_json_atomic
    from clinrl.prm.select import read_candidates

    json_out = alias(out, old_json, "--json", "--out")
    if json_out is None:
        raise ClinrlError("--out FILE is required (the scores are written there)")
    candidates, names = read_candidates([notes])
    dialog = read_text_file(dialogue, field="--dialogue") if dialogue is not None else None
    if dialog is None and any(isinstance(n, str) for n in candidates):
        raise ClinrlError("a free-text note needs --dialogue")
    progress, advance = _progress(len(candidates), "scoring", quiet)
    results = []
    chunk = 64 if scoring.backend == "vllm" else 1  # vLLM batches and prefix-caches a whole engine call
    with scoring.scorer(model, fast=not no_fast) as scorer, progress:
        for start in range(0, len(candidates), chunk):
            part = candidates[start : start + chunk]
            for name, note, scored in zip(names[start:], part, scorer.score_notes(part, dialog)):
                extra = {} if isinstance(note, str) else {"case_id": note.case_id, "sample_no": note.sample_no}
                results.append({"name": name, **extra, **scored.to_dict()})
            advance(len(part))
    backend = getattr(scorer, "backend", scoring.backend)  # a judge folder says where its model runs
    write_json_atomic(json_out, {"model": str(model), "config": vars(scorer.config), "head": scorer.head,
                                 "objective": scorer.objective, "backend": backend, "notes": results})  # fmt: skip
    typer.echo(f"{len(results)} notes scored ({dict(scorer.stats)}) -> {json_out}", err=True)


@app.command("best-of-n")
@scoring_options
def best_of_n_command(
    model: Path = typer.Option(..., "--model", help="A trained PRM folder or a judge folder (prm judge-init)."),
    dialogue: Path = typer.Option(..., "--dialogue", help="The dialogue, as a text file."),
    notes: list[Path] = typer.Option(..., "--notes", help="Candidate note (free text or PRM-Clinic JSON); repeat."),
    aggregate: Optional[Aggregate] = typer.Option(None, "--aggregate", help=_AGGREGATE_HELP),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Write the ranking with per-slot scores here (JSON report)."
    ),
    weakest: int = typer.Option(3, "--weakest", min=0, help="Weakest steps shown per note."),
    show_text: bool = typer.Option(False, "--show-text", help="Show the weakest steps' text (patient data!)."),
    scoring: ScoringOptions = ScoringOptions(),
) -> None:
    """Rank candidate notes for one dialogue with a PRM (each note scored on its own)."""
    from rich.console import Console

    from clinrl.io import read_text_file, write_json_atomic
    from clinrl.prm.select import best_of_n, ranking_table, read_candidates

    candidates, names = read_candidates(notes)
    dialog = read_text_file(dialogue, field="--dialogue")  # before the model loads
    with scoring.scorer(model) as scorer:
        ranking = best_of_n(dialog, candidates, scorer, aggregate, names=names, weakest=weakest)
    Console().print(ranking_table(ranking, show_text=show_text))
    if json_out is not None:
        write_json_atomic(json_out, ranking.to_dict())


@app.command("eval-selection")
@scoring_options
def eval_selection_command(
    gold: Path = typer.Option(..., "--gold", help="Gold notes of the verification task (PRM-Clinic JSON)."),
    errors: Path = typer.Option(..., "--errors", help="Error samples of the same cases."),
    scorer: Literal["medoid", "random", "length", "lexical", "prm", "orm", "judge"] = typer.Option(
        ...,
        "--scorer",
        help="A rule (random: its exact expectation; " + _LEXICAL + ") or a model (prm, orm, judge: --model).",
    ),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
    aggregate: Optional[Aggregate] = typer.Option(
        None, "--aggregate", help="prm/orm/lexical/judge: " + _AGGREGATE_HELP
    ),
    json_out: Path = typer.Option(..., "--json", help="Write the report (per Data_source; fractions) here."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N cases of each Data_source."),
    false_alarm_rate: float = typer.Option(
        0.05, "--false-alarm-rate", min=0.0, max=0.99, help="Share of '+' slots flagged at the at_false_alarm cut."
    ),
    quiet: bool = _QUIET,
    scoring: ScoringOptions = ScoringOptions(),
) -> None:
    """Gold-selection accuracy per Data_source (+ step-level error detection for prm, orm and lexical)."""
    from rich.console import Console

    from clinrl.io import write_json_atomic
    from clinrl.prm.evaluate import (
        MODEL_SCORERS,
        detection_table,
        evaluate_selection,
        group_cases,
        limit_cases,
        selection_table,
    )
    from clinrl.prm.schema import load_notes

    _check_judge(scorer, model)
    cases, dropped = group_cases(load_notes(gold), load_notes(errors))
    if limit is not None:
        cases = limit_cases(cases, limit)
    progress, advance = _progress(len(cases), f"eval {scorer}", quiet)
    with scoring.scorer(model if scorer in MODEL_SCORERS else None) as loaded, progress:
        report = evaluate_selection(cases, scorer, model=loaded, aggregate=aggregate, dropped=dropped,
                                    progress=advance, false_alarm_rate=false_alarm_rate)  # fmt: skip
    Console().print(selection_table(report))
    if (detection := detection_table(report)) is not None:
        Console().print(detection)
    if any(dropped.values()):
        typer.echo(f"dropped: {dropped}", err=True)
    write_json_atomic(json_out, {**report.to_dict(), "model": str(model) if model else None})


@app.command("eval-preference")
@scoring_options
def eval_preference_command(
    csv_path: Path = typer.Option(..., "--csv", help="A-Prefer-style CSV: Case_id, Sample_no, Training_note."),
    labels: Path = typer.Option(..., "--labels", help="CSV: Case_id, Preferred_note."),
    scorer: Literal["prm", "orm", "judge", "lexical", "random", "length", "first"] = typer.Option(
        ...,
        "--scorer",
        help="A model (prm, orm, judge: --model) or a rule (random: its exact expectation; " + _LEXICAL + ").",
    ),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
    tokens: str = typer.Option("llama3", "--tokens", help="Tokens of the strings: llama3, new or a JSON file."),
    aggregate: Optional[Aggregate] = typer.Option(
        None, "--aggregate", help="prm/orm/lexical/judge: " + _AGGREGATE_HELP
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result here (JSON report; fractions)."),
    quiet: bool = _QUIET,
    scoring: ScoringOptions = ScoringOptions(),
) -> None:
    """Accuracy of picking the physician-preferred note (A-Prefer-style data)."""
    from clinrl.io import write_json_atomic
    from clinrl.prm.build import resolve_tokens
    from clinrl.prm.evaluate import MODEL_SCORERS, evaluate_preference, load_preference_cases

    _check_judge(scorer, model)
    cases, dropped = load_preference_cases(csv_path, labels, resolve_tokens(tokens)[1])
    progress, advance = _progress(len(cases), f"eval {scorer}", quiet)
    with scoring.scorer(model if scorer in MODEL_SCORERS else None) as loaded, progress:
        result = evaluate_preference(cases, scorer, model=loaded, aggregate=aggregate, progress=advance)
    result["dropped"] = dropped
    acc = result["accuracy"]
    typer.echo(f"{scorer}: {'—' if acc is None else f'{100 * acc:.1f} %'} preferred note picked "
               f"({result['correct']:g}/{result['total']})")  # fmt: skip
    if any(dropped.values()):
        typer.echo(f"dropped: {dropped}", err=True)
    if json_out is not None:
        write_json_atomic(json_out, result)


@app.command("judge-init")
@openai_options
def judge_init_command(
    out: Path = typer.Option(..., "--out", help="The judge folder to write (clinrl_judge.json; cache/ beside it)."),
    model: str = typer.Option(
        ..., "--model", help="With --endpoint: the model's name there; without: a local causal-LM folder."
    ),
    api: Literal["auto", "completions", "chat"] = typer.Option(
        "auto", "--api", help="completions (endpoint default), chat (local default when the tokenizer has a template)."
    ),
    rationale: bool = typer.Option(False, "--rationale", help="The judge also writes one sentence why (kept)."),
    max_rationale_tokens: int = typer.Option(64, "--max-rationale-tokens", min=1, help="Tokens of that sentence."),
    top_logprobs: int = typer.Option(20, "--top-logprobs", min=1, max=20, help="Alternatives read at the verdict."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="local: questions per forward pass."),
    device: Optional[str] = typer.Option(None, "--device", help="local: cpu, cuda … (default: cuda if present)."),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Make a judge folder: a served or local LM that answers Yes/No per note step, usable wherever a PRM
    folder is (--model of prm score/best-of-n/eval-*, serve --prm, a notes recipe's prm:). Nothing is sent now;
    scoring sends dialogue and note text to the endpoint."""
    from clinrl.errors import ClinrlError
    from clinrl.prm.judge import JudgeConfig, write_judge_folder

    if openai.endpoint is None and not Path(model).is_dir():
        raise ClinrlError(f"--model {model!r} is not a folder: give --endpoint URL for a model served there")
    where = {"endpoint": openai.endpoint, "served_model": model} if openai.endpoint else {"local_model": model}
    config = JudgeConfig(
        **where, api=api, api_key_env=openai.api_key_env, concurrency=openai.concurrency, timeout_s=openai.timeout_s,
        request_retries=openai.request_retries, cache_dir=str(openai.cache_dir) if openai.cache_dir else None,
        rationale=rationale, max_rationale_tokens=max_rationale_tokens, top_logprobs=top_logprobs,
        batch_size=batch_size, device=device,
    )  # fmt: skip
    path = write_judge_folder(out, config)
    target = f"{openai.endpoint} ({model})" if openai.endpoint else model
    typer.echo(f"judge -> {path} ({target}, api {api})", err=True)
