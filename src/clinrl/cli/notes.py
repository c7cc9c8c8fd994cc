"""``clinrl notes …``: clinical-note generation trained with a PRM reward. Heavy imports stay inside commands."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrl.cli._train import TrainRequest, trainer_command

app = typer.Typer(no_args_is_help=True)


@trainer_command(
    app, "grpo", group="notes", example="grpo_prm, tiny/grpo_prm", recipe_class="clinrl.notes.grpo:NotesGRPOConfig"
)
def grpo_command(run: TrainRequest) -> None:
    """GRPO of an Assessment & Plan writer with the PRM as reward. Extra --key value pairs override the recipe."""
    from clinrl.notes.grpo import run_from_cli

    run.train_and_print(run_from_cli)


@app.command("split")
def split_command(
    data: str = typer.Option("demo", "--data", help="Gold-note file (PRM-Clinic JSON); demo = the bundled one."),
    out: Path = typer.Option(..., "--out", help="JSON report: counts and the case ids on each side (no text)."),
    held_out_fraction: float = typer.Option(0.1, "--held-out-fraction", help="Share of cases held out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hash split."),
) -> None:
    """Split the gold notes' dialogues into train/held-out by case and write the report."""
    from clinrl.io import write_json_atomic
    from clinrl.notes.dialogues import load_dialogues, split_dialogues

    cases, skipped = load_dialogues(data)
    split = split_dialogues(cases, held_out_fraction, seed, skipped)
    report = {**split.report, "train_case_ids": [c.case_id for c in split.train],
              "held_out_case_ids": [c.case_id for c in split.held_out]}  # fmt: skip
    write_json_atomic(out, report)
    typer.echo(f"train {split.report['train']} / held out {split.report['held_out']} cases -> {out}", err=True)
