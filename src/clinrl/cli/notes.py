"""``clinrl notes …``: clinical-note generation trained with a PRM reward. Heavy imports stay inside commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clinrl.cli._show_config import SHOW_CONFIG_HELP, recipe_command, show_config_and_exit

app = typer.Typer(no_args_is_help=True)

_TRAIN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("grpo", context_settings=_TRAIN_CONTEXT, cls=recipe_command("clinrl.notes.grpo:NotesGRPOConfig"))
def grpo_command(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", help="Notes GRPO recipe YAML (e.g. recipes/notes/grpo_prm.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in output_dir."),
    show_config: bool = typer.Option(False, "--show-config", help=SHOW_CONFIG_HELP),
) -> None:
    """GRPO of an Assessment & Plan writer with the PRM as reward. Extra --key value pairs override the recipe."""
    if show_config:
        show_config_and_exit("clinrl.notes.grpo:NotesGRPOConfig", config, ctx.args)
    from clinrl.notes.grpo import run_from_cli

    summary = run_from_cli(config, ctx.args, resume)
    typer.echo(json.dumps(summary, default=str))


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
