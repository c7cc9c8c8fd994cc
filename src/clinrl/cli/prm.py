"""``clinrl prm …``: clinical-note PRM commands. Heavy imports stay inside each command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

# Commands are added below, one function each.


@app.command("check-labels")
def check_labels_command(
    errors: Path = typer.Option(..., "--errors", help="Error samples (PRM-Clinic JSON, .json or .json.gz)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="Gold notes, to check the edits against them too."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
) -> None:
    """Recompute every label from the samples' edits and list what does not match (positions only)."""
    from clinrl.io import write_json_atomic
    from clinrl.prm.labels import check_label_consistency
    from clinrl.prm.notes import load_notes

    notes = load_notes(errors)
    report = check_label_consistency(notes, load_notes(gold) if gold is not None else None)
    typer.echo(report.summary())
    if json_out is not None:
        write_json_atomic(json_out, report.to_dict())


@app.command("synth-errors")
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
        None, "--pool", help="Notes whose content hallucinations may borrow (default: the gold notes)."
    ),
    report: bool = typer.Option(False, "--report", help="Print a table of the synthetic set's figures."),
    compare_with: Optional[Path] = typer.Option(
        None, "--compare-with", help="Real error samples to compare with (implies --report)."
    ),
    compare_gold: Optional[Path] = typer.Option(
        None, "--compare-gold", help="Gold notes of --compare-with (default: rebuilt from their edits)."
    ),
) -> None:
    """Synthesize PRM-Clinic error samples from gold notes with rule-based edits (no model needed)."""
    from rich.console import Console
    from rich.progress import Progress

    from clinrl.errors import ClinrlError
    from clinrl.prm.compare import compare_error_sets, comparison_table, profile_error_set
    from clinrl.prm.errors import SynthConfig, synthesize
    from clinrl.prm.labels import check_label_consistency
    from clinrl.prm.notes import load_notes, save_notes

    if min_swaps > max_swaps:
        raise ClinrlError(f"--min-swaps ({min_swaps}) is larger than --max-swaps ({max_swaps})")
    gold_notes = load_notes(gold)
    config = SynthConfig(
        min_swaps=min_swaps, max_swaps=max_swaps, max_removals=max_removals, problem_removal_rate=problem_removal_rate
    )
    pool_notes = load_notes(pool) if pool is not None else None
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("synthesizing", total=len(gold_notes))
        result = synthesize(
            gold_notes, per_note, seed=seed, pool=pool_notes, config=config,
            progress=lambda n: progress.advance(task, n),
        )  # fmt: skip
    check = check_label_consistency(result.notes)
    if not check.ok:  # a bug, not a user mistake: never write inconsistent samples
        raise RuntimeError(f"synthesized samples failed the label check:\n{check.summary()}")
    save_notes(result.notes, out)
    skipped = f"; skipped {len(result.skipped)} notes too small for --min-swaps: {result.skipped}"
    typer.echo(
        f"{len(result.notes)} error samples from {len(gold_notes) - len(result.skipped)} gold notes -> {out}"
        + (skipped if result.skipped else ""),
        err=True,
    )
    if compare_with is not None:
        real = load_notes(compare_with)
        real_gold = load_notes(compare_gold) if compare_gold is not None else None
        comparison = compare_error_sets(result.notes, real, synthetic_gold=gold_notes, real_gold=real_gold)
        Console().print(comparison_table(comparison))
    elif report:
        Console().print(comparison_table(profile_error_set(result.notes, gold_notes), title="Synthetic error samples"))


@app.command("build")
def build_command(
    gold: list[Path] = typer.Option(..., "--gold", help="Gold notes (PRM-Clinic JSON); repeat for several files."),
    errors: Optional[list[Path]] = typer.Option(None, "--errors", help="Error samples to include; repeatable."),
    synthesize: int = typer.Option(0, "--synthesize", min=0, help="Synthetic error samples per gold note."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the synthesis (same seed, same output)."),
    tokens: str = typer.Option("llama3", "--tokens", help="Special tokens: llama3, new, or a JSON file."),
    out: Path = typer.Option(..., "--out", help="Output directory (data.parquet, build_report.json, …)."),
    eos: Optional[str] = typer.Option(None, "--eos", help="Append this EOS string to every PRM string."),
) -> None:
    """Build the PRM training set: true-label PRM strings of gold notes and error samples, as parquet."""
    from clinrl.prm.build import DATA_FILE, build_prm_dataset

    report = build_prm_dataset(
        gold, out, error_paths=errors or [], synthesize=synthesize, seed=seed, tokens=tokens, eos=eos, progress=True
    )
    origins = ", ".join(f"{k} {v}" for k, v in report.by_origin.items())
    dropped = ", ".join(f"{k} {v}" for k, v in report.dropped.items()) or "none"
    typer.echo(f"{report.rows} PRM strings ({origins}); dropped: {dropped} -> {out / DATA_FILE}", err=True)
    if report.synthetic_skipped_gold:
        typer.echo(f"{report.synthetic_skipped_gold} gold notes were too small to synthesize errors from", err=True)


@app.command("render")
def render_command(
    notes: Path = typer.Argument(..., help="Notes to render (PRM-Clinic JSON, .json or .json.gz)."),
    out: Path = typer.Option(..., "--out", help="JSON Lines file: one {case_id, sample_no, text} per note."),
    tokens: str = typer.Option("llama3", "--tokens", help="Special tokens: llama3, new, or a JSON file."),
    labels: str = typer.Option("placeholder", "--labels", help="true, placeholder (inference) or plus."),
    eos: Optional[str] = typer.Option(None, "--eos", help="Append this EOS string to every PRM string."),
) -> None:
    """Render notes as PRM strings (placeholder labels by default, for scoring)."""
    from clinrl.errors import ClinrlError
    from clinrl.prm.build import resolve_tokens, write_rendered
    from clinrl.prm.notes import load_notes

    if labels not in ("true", "placeholder", "plus"):
        raise ClinrlError(f"--labels must be true, placeholder or plus, got {labels!r}")
    special = resolve_tokens(tokens)[1]
    count = write_rendered(load_notes(notes), special, out, labels=labels, eos=eos)  # type: ignore[arg-type]
    typer.echo(f"{count} PRM strings -> {out}", err=True)
