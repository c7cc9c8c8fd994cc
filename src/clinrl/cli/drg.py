"""``clinrl drg …``: MS-DRG coding commands. Heavy imports stay inside each command."""

from __future__ import annotations

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
    import json

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
    import json

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
