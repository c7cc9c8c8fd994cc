"""``clinrl drg …``: MS-DRG coding commands. Heavy imports stay inside each command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import typer

from clinrl.cli._common import Dtype, alias, hidden_alias, progress_on
from clinrl.cli._openai import OpenAIOptions, openai_options
from clinrl.cli._train import TrainRequest, trainer_command

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
    from clinrl.drg.prep.split import SplitConfig, split_prepared
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
    n_notes: Optional[int] = typer.Option(
        None, "--n-notes", help="Number of discharge notes (one per admission) to generate. [required]"
    ),
    out: Path = typer.Option(..., "--out", help="Folder for discharge.csv.gz, drgcodes.csv.gz, synth_manifest.json."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
    classes: int = typer.Option(20, "--classes", help="Number of MS-DRG v34 classes used as labels."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    old_n: Optional[int] = hidden_alias("--n", "--n-notes"),
) -> None:
    """Write SYNTHETIC MIMIC-IV-shaped discharge notes and DRG codes (for tests, demos and benchmarks)."""
    from clinrl.drg.synth.generate import write_synthetic
    from clinrl.errors import ClinrlError

    n = alias(n_notes, old_n, "--n", "--n-notes")
    if n is None:
        raise ClinrlError("--n-notes N is required (the number of notes to generate)")
    summary = write_synthetic(out, n, seed=seed, classes=classes, progress=progress_on(quiet))
    counts = {k: v for k, v in summary.counts.items() if isinstance(v, int)}
    typer.echo(json.dumps({"synthetic": True, "out": str(summary.out), "seconds": summary.seconds, **counts}))


@app.command("prepare")
def prepare_command(
    discharge: Path = typer.Option(..., "--discharge", help="MIMIC-IV note/discharge.csv.gz (gzip or plain CSV)."),
    drgcodes: Path = typer.Option(..., "--drgcodes", help="MIMIC-IV hosp/drgcodes.csv.gz (gzip or plain CSV)."),
    out: Path = typer.Option(..., "--out", help="Folder for train/test.parquet, flow.json, prepare_report.json."),
    split_by: Literal["subject", "admission"] = typer.Option(
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
    from clinrl.drg.prep.mimic import DEFAULT_CHUNKSIZE, prepare, print_summary

    flow = prepare(
        discharge,
        drgcodes,
        out,
        split_by=split_by,
        test_size=test_size,
        min_class_count=min_class_count,
        seed=seed,
        ontology=msdrg,
        chunksize=chunksize or DEFAULT_CHUNKSIZE,
        progress=progress_on(quiet),
    )
    if progress_on(quiet):
        print_summary(flow, json.loads((out / "prepare_report.json").read_text(encoding="utf-8")), out)


@trainer_command(app, "sft", group="drg", example="sft, tiny/sft", recipe_class="clinrl.drg.train.sft:DRGSFTConfig")
def sft_command(run: TrainRequest) -> None:
    """Supervised fine-tuning (cold start + knowledge rows). Extra --key value pairs override the recipe."""
    from clinrl.drg.train.sft import run_from_cli

    run.train_and_print(run_from_cli)


@trainer_command(
    app, "grpo", group="drg", example="best, tiny/best", recipe_class="clinrl.drg.train.grpo:DRGGRPOConfig"
)
def grpo_command(run: TrainRequest) -> None:
    """GRPO with our rewards. Extra --key value pairs override the recipe (--training.learning_rate 1e-6)."""
    from clinrl.drg.train.grpo import run_from_cli

    run.train_and_print(run_from_cli)


@app.command("recipes")
def recipes_command() -> None:
    """List the DRG training recipes (names for --recipe); `clinrl recipes` lists every group."""
    from clinrl.cli.recipes import print_group

    print_group("drg", prefix=False)


@app.command("tiny-workspace")
def tiny_workspace_command(
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", help="Root to build in (default: $CLINRL_HOME, else the current folder); created if missing."
    ),
    n_notes: int = typer.Option(2400, "--n-notes", min=100, help="Synthetic discharge notes."),
    classes: int = typer.Option(19, "--classes", min=2, help="MS-DRG classes used as labels."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Build what the drg tiny/* recipes read, under ROOT/runs/tiny-drg: SYNTHETIC notes, a split, a tokenizer
    and a random-init tiny model (CPU, about 15 s; idempotent). Then: clinrl drg sft --recipe tiny/sft --workdir ROOT."""
    from clinrl.config import run_root
    from clinrl.demo.workspace import TINY_DRG, build_tiny_workspace

    root, _ = run_root(workdir, create=True)
    ws = build_tiny_workspace(root / TINY_DRG, n_notes=n_notes, classes=classes, seed=seed, quiet=True)
    typer.echo(json.dumps({"root": str(root), "model": str(ws.model), "sft": str(ws.split / "sft.parquet"),
                           "rl": str(ws.split / "rl.parquet")}))  # fmt: skip


@app.command("difficulty")
def difficulty_command(
    model: Path = typer.Option(..., "--model", help="Model folder (transformers format) used to sample."),
    data: Path = typer.Option(..., "--data", help="Cases (parquet/JSONL): hadm_id, text, solution or description."),
    out: Path = typer.Option(..., "--out", help="Tag file (JSONL); an existing one is resumed, tagged cases skipped."),
    samples: int = typer.Option(8, "--samples", min=1, help="Completions sampled per case."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Tokens generated per completion at most."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Courses are cut to fit this prompt size."),
    batch_size: int = typer.Option(4, "--batch-size", help="Cases per generate call (batch-size × k sequences)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Tag at most this many new cases in this run (≥ 1)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    old_k: Optional[int] = hidden_alias("--k", "--samples", min=1),
) -> None:
    """Tag cases easy (all samples correct), hard (all wrong, equal rewards) or mixed, for GRPO curricula."""

    from clinrl.drg.train.difficulty import DifficultyConfig, tag_dataset

    config = DifficultyConfig(
        k=alias(samples, old_k, "--k", "--samples"),
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_prompt_tokens=max_prompt_tokens,
        limit=limit,
        seed=seed,
    )
    summary = tag_dataset(model, data, out, config, progress=progress_on(quiet))
    keys = ("cases", "easy", "mixed", "hard", "tagged_now", "skipped_already_tagged")
    typer.echo(json.dumps({key: summary[key] for key in keys}))


@app.command("distill-cot")
@openai_options(endpoint_required=True)
def distill_cot_command(
    model: str = typer.Option(
        ..., "--model", help="Model name at --endpoint (the teacher; course text is sent there)."
    ),
    data: Path = typer.Option(..., "--data", help="Cases (parquet/JSONL): hadm_id, text, solution or description."),
    out: Path = typer.Option(..., "--out", help="Traces JSONL (valid rows; an existing file is resumed)."),
    variant: Literal["explain", "differential"] = typer.Option(
        "explain", "--variant", help="explain: the study's prompt; differential: weigh three candidate DRGs."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Attempt at most this many new cases now (≥ 1)."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="Sampling temperature (study: 0.7)."),
    max_new_tokens: int = typer.Option(
        2048, "--max-new-tokens", min=1, help="Tokens per answer at most (study: 2048)."
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Tries per case before it counts as failed."),
    retry_failures: bool = typer.Option(False, "--retry-failures", help="Also redo cases that failed before."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and of the differential candidates."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    old_max_tokens: Optional[int] = hidden_alias("--max-tokens", "--max-new-tokens", min=1),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Distil reasoning traces from a teacher shown the gold DRG; the JSONL feeds `drg sft` (traces:)."""
    from clinrl.drg.train.distill import DistillConfig, distill_cot, sidecar_paths

    config = DistillConfig(
        variant=variant, temperature=temperature, max_attempts=max_attempts, chunk_size=openai.concurrency,
        max_new_tokens=alias(max_new_tokens, old_max_tokens, "--max-tokens", "--max-new-tokens"),
        limit=limit, seed=seed, retry_failures=retry_failures, model=model,
    )  # fmt: skip
    config.validate()
    backend = openai.backend(model, sent="course text")
    report = distill_cot(backend, data, out, config, progress=progress_on(quiet))
    keys = ("cases", "skipped_already_done", "attempted_now", "written_now", "failed_now", "request_errors",
            "requests", "torn_lines_truncated", "valid_total", "failed_total", "missing_total")  # fmt: skip
    summary = {key: report[key] for key in keys}
    summary["failed_now_by_reason"] = report["failed_now_by_reason"]
    if report["request_errors"]:  # some requests failed (all failing is an error): say why
        typer.secho(
            f"warning: {report['request_errors']} cases got no answer, left for the next run "
            f"(last error: {report['last_request_error']})",
            err=True,
            fg="yellow",
        )
    typer.echo(f"-> {out} (failures: {sidecar_paths(out)[0].name}, report: {sidecar_paths(out)[1].name})", err=True)
    typer.echo(json.dumps(summary))


# --------------------------------------------------------------------------- evaluation, inference, analysis


# Options shared by `eval` and `predict`: where the model runs (the endpoint options: clinrl.cli._openai).
GenBackend = Literal["transformers", "vllm", "openai"]
_BACKEND = typer.Option(
    "transformers", "--backend", help="Where the model runs; openai: a served model (--endpoint, --model NAME)."
)
_TOKENIZER = typer.Option(
    None, "--tokenizer", help="openai: local tokenizer of the served model, to cut courses to --max-prompt-tokens."
)


def _generation_backend(kind: str, model: Path, batch_size: int, vllm: dict | None = None):
    """A local backend; ``vllm``: the vLLM engine options of the command line (None values left out)."""
    from clinrl.llm.backends import get_backend

    if kind == "transformers":
        return get_backend("transformers", model=str(model), batch_size=batch_size)
    options = {k: v for k, v in (vllm or {}).items() if v is not None}
    engine = {k: options.pop(k) for k in ("dtype", "enforce_eager") if k in options}
    if kind == "vllm":
        return get_backend("vllm", model=str(model), engine=engine, **options)
    return get_backend(kind, model=str(model))


def _openai_eval_backend(
    openai: OpenAIOptions, model: str, tokenizer: Optional[Path], max_prompt_tokens: Optional[int]
):
    """(OpenAIBackend, tokenizer or None) for ``drg eval --backend openai``.

    The server's tokenizer and context length are unknown here, so courses are cut only when the user gives
    both a local ``--tokenizer`` of the served model and ``--max-prompt-tokens``; with neither, each course
    is sent whole (said on stderr) and a server whose context is too short refuses that case (HTTP 400,
    the run stops; finished batches stay in generations.jsonl). One without the other is refused: a budget
    cannot be counted without the tokenizer, and a tokenizer alone gives no budget."""
    from clinrl.errors import ClinrlError

    if not openai.endpoint:
        raise ClinrlError("--backend openai needs --endpoint URL and --model NAME (course text is sent there)")
    if (tokenizer is None) != (max_prompt_tokens is None):
        raise ClinrlError("--backend openai cuts courses only with both --tokenizer PATH and --max-prompt-tokens N")
    tok = None
    if tokenizer is not None:
        from clinrl.llm.loading import load_tokenizer

        tok = load_tokenizer(tokenizer)
    else:
        typer.echo("courses are sent whole (no --tokenizer/--max-prompt-tokens): the server must fit them", err=True)
    return openai.backend(model, sent="course text"), tok


def _local_only(openai: OpenAIOptions, tokenizer: Optional[Path]) -> None:
    """A local backend refuses the endpoint's options rather than ignore them."""
    from clinrl.errors import ClinrlError

    if openai.endpoint is not None or tokenizer is not None:
        raise ClinrlError("--endpoint and --tokenizer belong to --backend openai")


@app.command("eval")
@openai_options
def eval_command(
    model: Path = typer.Option(..., "--model", help="Model folder (transformers format) or vLLM model path."),
    data: Path = typer.Option(..., "--data", help="Test cases (parquet/JSONL): text and solution or description."),
    out: Path = typer.Option(..., "--out", help="Folder for generations.jsonl, metrics.json, summary.md, plots."),
    samples: int = typer.Option(8, "--samples", min=1, help="Completions sampled per case (the n of Pass@k)."),
    temperature: float = typer.Option(0.6, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling threshold."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", help="Tokens generated per completion at most."),
    max_prompt_tokens: Optional[int] = typer.Option(
        None, "--max-prompt-tokens", help="Cut courses to this prompt size (default: context − max-new-tokens)."
    ),
    backend: GenBackend = _BACKEND,
    tokenizer: Optional[Path] = _TOKENIZER,
    batch_size: int = typer.Option(8, "--batch-size", help="Cases per generate call (and per flush to disk)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N cases (≥ 1)."),
    constrained: bool = typer.Option(False, "--constrained", help="Answers restricted to v34 descriptions."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    sft_examples: Optional[int] = typer.Option(
        None, "--sft-examples", help="Record the model's number of SFT examples (for `clinrl drg scaling`)."
    ),
    shard: Optional[str] = typer.Option(
        None, "--shard", help="i/N: run only shard i of N (merge the N folders with `clinrl drg eval-merge`)."
    ),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", help="vLLM: GPUs per model."),
    gpu_memory_utilization: Optional[float] = typer.Option(
        None, "--gpu-memory-utilization", help="vLLM: memory share for weights + KV cache (CPU: of system memory)."
    ),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="vLLM: context length of the engine."),
    dtype: Optional[Dtype] = typer.Option(None, "--dtype", help="vLLM: weights' dtype."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vLLM: no graph capture/compilation."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    old_n: Optional[int] = hidden_alias("--n", "--samples", min=1),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Sample completions per test case (resumable) and score them: Pass@1/Pass@k/Maj@k and more."""
    from clinrl.drg.eval.evaluate import parse_shard, run_eval
    from clinrl.errors import check_limit
    from clinrl.llm.backends import SamplingParams

    check_limit(limit)  # before the model loads
    n = alias(samples, old_n, "--n", "--samples")
    part = parse_shard(shard) if shard is not None else None
    progress = progress_on(quiet)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    meta = {"model": str(model), **({"sft_examples": sft_examples} if sft_examples is not None else {})}
    tok = None
    if backend == "openai":
        gen, tok = _openai_eval_backend(openai, str(model), tokenizer, max_prompt_tokens)
        meta.update(endpoint=openai.endpoint, **({"tokenizer": str(tokenizer)} if tokenizer is not None else {}))
    else:
        _local_only(openai, tokenizer)
        vllm = {
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "enforce_eager": enforce_eager or None,
            "progress": progress,
        }
        gen = _generation_backend(backend, model, batch_size, vllm)
    metrics = run_eval(
        gen,
        data,
        params,
        out,
        limit=limit,
        constrained=constrained,
        batch_size=batch_size,
        progress=progress,
        max_prompt_tokens=max_prompt_tokens,
        meta=meta,
        tokenizer=tok,
        shard=part,
    )
    typer.echo((out / "summary.md").read_text(encoding="utf-8"), err=True)
    typer.echo(json.dumps(_headline(metrics)))


@app.command("eval-merge")
def eval_merge_command(
    parts: list[Path] = typer.Argument(..., help="The folders of `drg eval --shard i/N` runs, every i of one N."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged generations, metrics and plots."),
) -> None:
    """Join sharded evaluation runs into the files and metrics of one run."""
    from clinrl.drg.eval.evaluate import merge_shards

    metrics = merge_shards(parts, out)
    typer.echo((out / "summary.md").read_text(encoding="utf-8"), err=True)
    typer.echo(json.dumps(_headline(metrics)))


def _headline(metrics: dict) -> dict:
    """The figures a terminal line can hold."""
    n = str(metrics["n_samples"])
    line = {"n_cases": metrics["n_cases"], "n_samples": metrics["n_samples"]}
    for target in ("drg", "principal", "cc_mcc"):
        m = metrics[target]
        line[target] = {
            "pass@1": round(m["pass@1"], 4),
            f"pass@{n}": round(m["pass@k"][n], 4),
            f"maj@{n}": round(m["maj@k"][n], 4),
        }
    for key in ("format_failure_rate", "invalid_answer_rate"):
        line[key] = round(metrics[key], 4)
    return line


@app.command("score")
def score_command(
    generations: Path = typer.Option(..., "--generations", help="generations.jsonl: solution + completions per line."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write metrics.json here (default: print only)."),
    k: Optional[list[int]] = typer.Option(None, "--k", help="k for Pass@k/Maj@k (repeatable; default 1, 2, 4, …, n)."),
) -> None:
    """Score a generations file: Pass@1, Pass@k, Maj@k (DRG, principal, CC/MCC), rates, case mix, errors."""
    from clinrl.drg.eval.metrics import score_generations
    from clinrl.io import write_json_atomic

    metrics = score_generations(generations, ks=k or None)
    if out is not None:
        write_json_atomic(out, metrics)
        typer.echo(f"-> {out}", err=True)
    typer.echo(json.dumps(metrics if out is None else _headline(metrics)))


@app.command("predict")
@openai_options
def predict_command(
    note: str = typer.Argument(..., help="A text file with a discharge summary or hospital course; - reads stdin."),
    model: Path = typer.Option(..., "--model", help="Model folder (transformers format), or its name at --endpoint."),
    samples: int = typer.Option(
        1, "--samples", min=1, help="Samples to draw; > 1 gives a vote distribution as confidence."
    ),
    temperature: Optional[float] = typer.Option(
        None, "--temperature", help="Default: 0 (greedy) for 1 sample, else 0.6."
    ),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling threshold."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", help="Tokens generated per sample at most."),
    max_prompt_tokens: Optional[int] = typer.Option(None, "--max-prompt-tokens", help="Cut the course to fit this."),
    backend: GenBackend = _BACKEND,
    tokenizer: Optional[Path] = _TOKENIZER,
    constrained: bool = typer.Option(False, "--constrained", help="Answers restricted to v34 descriptions."),
    output_format: Literal["text", "json"] = typer.Option("text", "--format", help="json: print one JSON object."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    old_n: Optional[int] = hidden_alias("--n", "--samples", min=1),
    old_json: bool = typer.Option(False, "--json", hidden=True, help="Deprecated spelling of --format json."),
    openai: OpenAIOptions = OpenAIOptions(),
) -> None:
    """Predict the MS-DRG of one note: description, code, MDC, weight, reasoning (and votes with --samples)."""
    import sys

    from clinrl.drg.eval.predict import format_prediction, predict_note
    from clinrl.errors import ClinrlError
    from clinrl.llm.backends import SamplingParams

    if note == "-":
        text = sys.stdin.read()
    else:
        path = Path(note)
        if not path.is_file():
            raise ClinrlError(f"{path}: file not found")
        text = path.read_text(encoding="utf-8", errors="replace")
    n = alias(samples, old_n, "--n", "--samples")
    as_json = alias(output_format == "json", True if old_json else None, "--json", "--format json")
    temp = temperature if temperature is not None else (0.0 if n == 1 else 0.6)
    params = SamplingParams(n=n, temperature=temp, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    if backend == "openai":
        gen, tok = _openai_eval_backend(openai, str(model), tokenizer, max_prompt_tokens)
    else:
        _local_only(openai, tokenizer)
        gen, tok = _generation_backend(backend, model, 8), None
    result = predict_note(gen, text, params, max_prompt_tokens=max_prompt_tokens, constrained=constrained,
                          tokenizer=tok)  # fmt: skip
    typer.echo(json.dumps(result, ensure_ascii=False) if as_json else format_prediction(result))


@app.command("scaling")
def scaling_command(
    runs: Optional[list[Path]] = typer.Option(
        None, "--runs", help="Evaluation folders (from `clinrl drg eval --out`)."
    ),
    more: Optional[list[Path]] = typer.Argument(None, help="More evaluation folders (`--runs A B C` works too)."),
    out: Path = typer.Option(Path("scaling.png"), "--out", help="The plot (PNG)."),
    metric: str = typer.Option("drg.pass@1", "--metric", help="Dotted metrics.json path, e.g. drg.maj@k.8."),
) -> None:
    """Fit accuracy against log2(number of SFT examples) over runs; plot it, print slope/intercept/R².

    A run's number of SFT examples comes from `eval --sft-examples N`, else from the sft_summary.json of the
    evaluated model (followed back from a GRPO run to its SFT start)."""
    from clinrl.drg.eval.scaling import scaling_report
    from clinrl.errors import ClinrlError

    folders = [*(runs or []), *(more or [])]
    if not folders:
        raise ClinrlError("give the evaluation folders: --runs DIR [DIR …]")
    report = scaling_report(folders, out, metric)
    for p in report["points"]:
        typer.echo(f"{p['sft_examples']:>8} SFT examples  {metric} {100 * p['value']:.1f}  {p['run']}", err=True)
    fit = report["fit"]
    if fit:
        typer.echo(
            f"{metric} = {100 * fit['intercept']:.2f} + {100 * fit['slope']:.2f} · log2(n)  (in points; "
            f"R² {'undefined' if fit['r2'] is None else format(fit['r2'], '.3f')}) -> {out}",
            err=True,
        )
    typer.echo(json.dumps(report))
