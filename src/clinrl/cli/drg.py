"""``clinrl drg …``: MS-DRG coding commands. Heavy imports stay inside each command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)

# Commands are added below, one function each.


@app.command("split")
def split_command(
    data: Path = typer.Option(..., "--data", help="A prepared train.parquet (from `clinrl drg prepare`)."),
    out: Path = typer.Option(..., "--out", help="Folder for sft.parquet, rl.parquet and split_report.json."),
    sft_ratio: Optional[float] = typer.Option(
        None, "--sft-ratio", help="Ratio mode: share of rows for SFT, the rest for RL (default 0.9)."
    ),
    small: bool = typer.Option(
        False, "--small", help="DRG-small: drop rare DRGs, 1 % cold-start SFT, 20 % of the rest for RL."
    ),
    min_cases: int = typer.Option(5, "--min-cases", help="--small: drop DRGs with fewer rows than this."),
    cold_start: float = typer.Option(0.01, "--cold-start-fraction", help="--small: share of rows for SFT."),
    rl_fraction: float = typer.Option(0.2, "--rl-fraction", help="--small: share of the remaining rows for RL."),
    seed: int = typer.Option(42, "--seed", help="Random seed of the stratified splits."),
    msdrg: Optional[Path] = typer.Option(None, "--msdrg", help="MS-DRG v34 tables folder (default: bundled)."),
) -> None:
    """Split prepared training data into stratified SFT and RL sets."""
    from clinrl.drg.split import SplitConfig, split_prepared
    from clinrl.errors import ClinrlError

    if small and sft_ratio is not None:
        raise ClinrlError("--sft-ratio and --small exclude each other (--small has its own fractions)")
    config = SplitConfig(
        small=small,
        sft_ratio=0.9 if sft_ratio is None else sft_ratio,
        min_cases=min_cases,
        cold_start_fraction=cold_start,
        rl_fraction=rl_fraction,
        seed=seed,
    )
    report = split_prepared(data, out, config, ontology=msdrg)
    typer.echo(
        f"sft {report['sft']['rows']} rows / {report['sft']['classes']} DRGs, "
        f"rl {report['rl']['rows']} rows / {report['rl']['classes']} DRGs, "
        f"dropped rare {report['dropped_rare']['rows']} rows / {report['dropped_rare']['classes']} DRGs, "
        f"unused {report['unused_rows']} rows -> {out}",
        err=True,
    )


@app.command("synth")
def synth_command(
    n: int = typer.Option(..., "--n", help="Number of discharge notes (one per admission) to generate."),
    out: Path = typer.Option(..., "--out", help="Folder for discharge.csv.gz, drgcodes.csv.gz, synth_manifest.json."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
    classes: int = typer.Option(20, "--classes", help="Number of MS-DRG v34 classes used as labels."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write SYNTHETIC MIMIC-IV-shaped discharge notes and DRG codes (for tests, demos and benchmarks)."""
    from clinrl.drg.synth import write_synthetic

    summary = write_synthetic(out, n, seed=seed, classes=classes, progress=not quiet)
    counts = {k: v for k, v in summary.counts.items() if isinstance(v, int)}
    typer.echo(json.dumps({"synthetic": True, "out": str(summary.out), "seconds": summary.seconds, **counts}))


@app.command("prepare")
def prepare_command(
    discharge: Path = typer.Option(..., "--discharge", help="MIMIC-IV note/discharge.csv.gz (gzip or plain CSV)."),
    drgcodes: Path = typer.Option(..., "--drgcodes", help="MIMIC-IV hosp/drgcodes.csv.gz (gzip or plain CSV)."),
    out: Path = typer.Option(..., "--out", help="Folder for train/test.parquet, flow.json, prepare_report.json."),
    split_by: str = typer.Option(
        "subject", "--split-by", help="subject: each patient on one side; admission: the study's per-row split."
    ),
    test_size: float = typer.Option(0.1, "--test-size", help="Share of notes for the test set."),
    min_class_count: int = typer.Option(2, "--min-class-count", help="Drop DRGs with fewer notes than this."),
    seed: int = typer.Option(42, "--seed", help="Seed of the stratified split."),
    chunksize: Optional[int] = typer.Option(None, "--chunksize", help="Notes per read chunk (default 5000)."),
    msdrg: Optional[Path] = typer.Option(None, "--msdrg", help="MS-DRG v34 tables folder (default: bundled)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar and no summary table."),
) -> None:
    """Extract hospital courses and v34 DRG labels from MIMIC-IV into a stratified train/test split."""
    from clinrl.drg.mimic import DEFAULT_CHUNKSIZE, prepare, print_summary

    flow = prepare(
        discharge,
        drgcodes,
        out,
        split_by=split_by,  # type: ignore[arg-type]
        test_size=test_size,
        min_class_count=min_class_count,
        seed=seed,
        ontology=msdrg,
        chunksize=chunksize or DEFAULT_CHUNKSIZE,
        progress=not quiet,
    )
    if not quiet:
        print_summary(flow, json.loads((out / "prepare_report.json").read_text(encoding="utf-8")), out)


_TRAIN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def _recipe_path(config: Optional[Path], recipe: Optional[str]) -> Path:
    from clinrl.config import resolve_recipe
    from clinrl.errors import ClinrlError

    if (config is None) == (recipe is None):
        raise ClinrlError("give exactly one of --config FILE or --recipe NAME (see `clinrl drg recipes`)")
    return config if config is not None else resolve_recipe(recipe)


@app.command("sft", context_settings=_TRAIN_CONTEXT)
def sft_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="SFT recipe YAML (e.g. recipes/drg/sft.yaml)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe name under recipes/drg (e.g. sft, tiny/sft)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in output_dir."),
) -> None:
    """Supervised fine-tuning (cold start + knowledge rows). Extra --key value pairs override the recipe."""
    from clinrl.drg.sft import run_from_cli

    summary = run_from_cli(_recipe_path(config, recipe), ctx.args, resume)
    typer.echo(json.dumps(summary, default=str))


@app.command("grpo", context_settings=_TRAIN_CONTEXT)
def grpo_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="GRPO recipe YAML (e.g. recipes/drg/best.yaml)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Recipe name under recipes/drg (e.g. best, tiny/best)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in output_dir."),
) -> None:
    """GRPO with our rewards. Extra --key value pairs override the recipe (--trl.learning_rate 1e-6)."""
    from clinrl.drg.grpo import run_from_cli

    summary = run_from_cli(_recipe_path(config, recipe), ctx.args, resume)
    typer.echo(json.dumps(summary, default=str))


@app.command("recipes")
def recipes_command() -> None:
    """List the training recipes under recipes/drg (names for --recipe)."""
    from clinrl.config import RECIPES_DIR, list_recipes, load_recipe

    for name in list_recipes():
        data = load_recipe(RECIPES_DIR / f"{name}.yaml")
        typer.echo(f"{name}\t{data.get('description', '')}")


@app.command("difficulty")
def difficulty_command(
    model: Path = typer.Option(..., "--model", help="Model folder (transformers format) used to sample."),
    data: Path = typer.Option(..., "--data", help="Cases (parquet/JSONL): hadm_id, text, solution or description."),
    out: Path = typer.Option(..., "--out", help="Tag file (JSONL); an existing one is resumed, tagged cases skipped."),
    k: int = typer.Option(8, "--k", help="Completions sampled per case."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Tokens generated per completion at most."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Courses are cut to fit this prompt size."),
    batch_size: int = typer.Option(4, "--batch-size", help="Cases per generate call (batch-size × k sequences)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Tag at most this many new cases in this run."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Tag cases easy (all k samples correct), hard (none) or mixed, for GRPO curricula."""

    from clinrl.drg.difficulty import DifficultyConfig, tag_dataset

    config = DifficultyConfig(
        k=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size,
        max_prompt_tokens=max_prompt_tokens, limit=limit, seed=seed,
    )
    summary = tag_dataset(model, data, out, config, progress=not quiet)
    keys = ("cases", "easy", "mixed", "hard", "tagged_now", "skipped_already_tagged")
    typer.echo(json.dumps({key: summary[key] for key in keys}))
