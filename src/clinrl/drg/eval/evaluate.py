"""``clinrl drg eval``: sample n completions per test case through a generation backend, resumably, then
score them (:mod:`clinrl.drg.eval.metrics`) and draw the plots.

Files in ``out_dir``:

- ``generations.jsonl`` — one line per finished case ``{"hadm_id", "solution", "completions": [n texts]}``,
  appended and flushed batch by batch. A rerun with the same sampling settings skips the cases already
  there (a torn last line from a killed run is cut off first); different settings raise ClinrlError.
- ``eval_config.json`` — the sampling settings the generations were made with, plus ``meta``.
- ``metrics.json`` — :func:`clinrl.drg.eval.metrics.score_generations` over the selected cases, plus
  ``"eval"`` (settings, model, counts of cases generated now and reused).
- ``summary.md`` — a short readable summary; ``cc_mcc_confusion.png``; ``training_curves.png`` when the
  model folder holds a TRL ``trainer_state.json``.

Sharding (``shard=(i, N)``, ``clinrl drg eval --shard i/N``): the cases are cut into batches of
``batch_size`` by their position in the whole test set, and shard ``i`` takes the ``i``-th of ``N``
contiguous runs of whole batches. A batch's sampling seed is ``seed + position of its first case``, in a
sharded run as in a single one, so every batch is generated with the same prompts, the same companions and
the same seed whichever machine runs it: :func:`merge_shards` then rebuilds exactly the files and metrics of
one run (exact on one kind of machine; across different hardware only as exact as the kernels are).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clinrl.drg.eval.constrained import answer_regex, transformers_constraint
from clinrl.drg.eval.metrics import TARGETS, read_generations, score_generations
from clinrl.drg.eval.plots import find_trainer_state, plot_cc_mcc_confusion, plot_training_curves
from clinrl.drg.prep.cases import load_cases
from clinrl.drg.prompts import build_messages, truncate_course
from clinrl.errors import ClinrlError, DataError
from clinrl.io import cut_torn_line, write_json_atomic, write_text_atomic
from clinrl.llm.backends import GenerationBackend, SamplingParams

__all__ = [
    "GENERATIONS",
    "case_messages",
    "constrain_backend",
    "evaluate_prompts",
    "merge_shards",
    "parse_shard",
    "prompt_budget",
    "run_eval",
    "shard_batches",
    "summary_markdown",
]

GENERATIONS = "generations.jsonl"
# settings that change what a generation looks like: a resumed run must use the same ones
_SAMPLING_KEYS = ("n", "temperature", "top_p", "max_new_tokens", "seed", "constrained", "max_prompt_tokens")
# batches and their seeds follow from these: a resumed run must keep them too
_BATCH_KEYS = ("batch_size", "shard", "n_cases_total")


def prompt_budget(backend: Any, params: SamplingParams, max_prompt_tokens: int | None) -> int | None:
    """The prompt token budget: ``max_prompt_tokens`` if given, else (for local models) the model's
    context length minus ``max_new_tokens``; None = no truncation."""
    if max_prompt_tokens is not None:
        return max_prompt_tokens
    context = getattr(backend, "context_length", None)  # vLLM: the engine's max_model_len
    if context is None:
        config = getattr(getattr(backend, "model", None), "config", None)
        context = getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and context > params.max_new_tokens:
        return context - params.max_new_tokens
    return None


def case_messages(text: str, backend: Any, budget: int | None, tokenizer: Any = None) -> list[dict[str, str]]:
    """The chat prompt of one case, its course cut to ``budget`` tokens with ``tokenizer`` (default: the
    backend's own; a remote backend has none unless the caller gives one, and then courses go whole)."""

    tokenizer = tokenizer if tokenizer is not None else getattr(backend, "tokenizer", None)
    if tokenizer is not None and budget is not None:
        text = truncate_course(text, tokenizer, budget)
    return build_messages(text)


def constrain_backend(backend: Any, ontology: Any = None) -> Callable[[], None]:
    """Restrict the backend's answers to v34 descriptions (trie processor for transformers-like backends
    with ``logits_processors``, guided regex for ones with ``guided_regex``); returns an undo function."""

    if hasattr(backend, "logits_processors"):
        old = backend.logits_processors
        constraint = transformers_constraint(ontology)
        backend.logits_processors = lambda tok: (list(old(tok)) if old else []) + constraint(tok)
        return lambda: setattr(backend, "logits_processors", old)
    if hasattr(backend, "guided_regex"):
        old_regex = backend.guided_regex
        backend.guided_regex = answer_regex(ontology)
        return lambda: setattr(backend, "guided_regex", old_regex)
    raise ClinrlError(f"the {getattr(backend, 'name', type(backend).__name__)} backend cannot constrain answers")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → ``(i, N)`` with 0 ≤ i < N; ClinrlError otherwise."""
    parts = str(text).split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise ClinrlError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ClinrlError(f"--shard i/N needs 0 ≤ i < N, got {text!r}")
    return index, count


def shard_batches(n_cases: int, batch_size: int, shard: tuple[int, int] | None = None) -> list[range]:
    """The case positions of each batch this run generates: batches of ``batch_size`` over the whole
    test set, and for ``shard=(i, N)`` only the ``i``-th of ``N`` contiguous runs of whole batches."""
    batches = [range(s, min(s + batch_size, n_cases)) for s in range(0, n_cases, batch_size)]
    if shard is None:
        return batches
    index, count = shard
    return batches[len(batches) * index // count : len(batches) * (index + 1) // count]


def start_backend(backend: Any) -> None:
    """Start a backend that starts lazily (vLLM's engine) so that a missing extra or model fails before
    ``eval_config.json`` is written: a config left by a run that never generated would refuse the rerun."""
    start = getattr(backend, "start", None)
    if callable(start):
        start()


def _check_config(out: Path, config: dict[str, Any]) -> None:
    path = out / "eval_config.json"
    if path.is_file() and (out / GENERATIONS).is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        keys = [*_SAMPLING_KEYS, *(k for k in _BATCH_KEYS if k in old)]  # older folders lack the batch keys
        diff = {k: (old.get(k), config[k]) for k in keys if old.get(k) != config[k]}
        if diff:
            shown = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in diff.items())
            raise ClinrlError(f"{out} holds generations made with other settings ({shown}); use a new --out")
    write_json_atomic(path, config)


def run_eval(
    backend: GenerationBackend,
    data: Any,
    params: SamplingParams,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    constrained: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    max_prompt_tokens: int | None = None,
    ontology: Any = None,
    ks: Sequence[int] | None = None,
    meta: dict[str, Any] | None = None,
    plots: bool = True,
    shard: tuple[int, int] | None = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Generate ``params.n`` completions for every case of ``data`` (first ``limit``; for ``shard=(i, N)``
    only that shard's batches) not yet in ``out_dir/generations.jsonl``, one backend call per batch of
    ``batch_size`` cases, then write and return the metrics (module docstring). ``meta`` (e.g.
    ``{"model": PATH, "sft_examples": N}``) is recorded. ``tokenizer`` cuts courses for a backend without
    one of its own (an endpoint)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ClinrlError(f"batch_size must be ≥ 1, got {batch_size}")
    all_cases = load_cases(data, limit)
    start_backend(backend)  # before anything is written: a backend that cannot start leaves no run behind
    out = Path(out_dir)
    batches = shard_batches(len(all_cases), batch_size, shard)
    cases = [all_cases[i] for batch in batches for i in batch]
    budget = prompt_budget(backend, params, max_prompt_tokens)
    config = {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "seed": params.seed,
        "constrained": constrained,
        "max_prompt_tokens": budget,
        "backend": getattr(backend, "name", type(backend).__name__),
        "data": None if not isinstance(data, (str, Path)) else str(data),
        "limit": limit,
        "meta": meta or {},
        "batch_size": batch_size,
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "n_cases_total": len(all_cases),
    }
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    gen_path = out / GENERATIONS
    done: dict[str, dict[str, Any]] = {}
    if gen_path.is_file():
        cut_torn_line(gen_path)

        done = {str(r.get("hadm_id")): r for r in read_generations(gen_path)}
    todo_batches = [[i for i in batch if str(all_cases[i]["hadm_id"]) not in done] for batch in batches]
    todo_batches = [b for b in todo_batches if b]
    n_todo = sum(map(len, todo_batches))
    reused = len(cases) - n_todo
    undo = constrain_backend(backend, ontology) if constrained and n_todo else (lambda: None)
    try:
        with (
            gen_path.open("a", encoding="utf-8") as fh,
            tqdm(total=n_todo, desc="drg eval", unit="case", disable=not progress) as bar,
        ):
            for positions in todo_batches:
                batch = [all_cases[i] for i in positions]
                prompts = [case_messages(c["text"], backend, budget, tokenizer) for c in batch]
                first = positions[0] - positions[0] % batch_size  # the batch's first case in the whole set
                seed = None if params.seed is None else params.seed + first
                outputs = backend.generate(prompts, params.with_(seed=seed))
                if len(outputs) != len(batch):
                    raise ClinrlError(f"the backend returned {len(outputs)} results for {len(batch)} prompts")
                for case, texts in zip(batch, outputs):
                    record = {"hadm_id": case["hadm_id"], "solution": case["solution"], "completions": list(texts)}
                    done[str(case["hadm_id"])] = record
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                bar.update(len(batch))
    finally:
        undo()
    selected = [done[str(c["hadm_id"])] for c in cases]
    return _write_report(out, selected, {**config, "generated_now": n_todo, "reused": reused}, ontology, ks, plots)


def _write_report(
    out: Path,
    records: list[dict[str, Any]],
    eval_block: dict[str, Any],
    ontology: Any,
    ks: Sequence[int] | None,
    plots: bool,
) -> dict[str, Any]:
    """metrics.json (with ``eval_block`` as ``"eval"``), summary.md and the plots of ``records``."""
    metrics = score_generations(records, ontology, ks)
    metrics["eval"] = eval_block
    write_json_atomic(out / "metrics.json", metrics)
    title = f"DRG evaluation: {out.name}" + (f" (shard {eval_block['shard']})" if eval_block.get("shard") else "")
    write_text_atomic(out / "summary.md", summary_markdown(metrics, title=title))
    if plots:
        _plots(out, metrics, (eval_block.get("meta") or {}).get("model"))
    return metrics


def merge_shards(
    parts: Sequence[str | Path],
    out_dir: str | Path,
    *,
    ontology: Any = None,
    ks: Sequence[int] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Join the folders of ``drg eval --shard i/N`` runs (every i of one N, each finished) into ``out_dir``:
    generations in test-set order, eval_config.json, metrics.json, summary.md and plots, exactly as one
    unsharded run writes them. Refuses parts made with other settings, missing or repeated shards, or
    unfinished ones."""

    configs: dict[int, tuple[Path, dict[str, Any]]] = {}
    for part in map(Path, parts):
        path = part / "eval_config.json"
        if not path.is_file():
            raise DataError("not an evaluation folder (no eval_config.json)", path=part)
        config = json.loads(path.read_text(encoding="utf-8"))
        if not config.get("shard"):
            raise DataError("not a shard (made without --shard)", path=path)
        index, count = parse_shard(config["shard"])
        if index in configs:
            raise DataError(f"shard {config['shard']} given twice", path=path)
        configs[index] = (part, config)
    counts = {parse_shard(c["shard"])[1] for _, c in configs.values()}
    count = counts.pop()
    if counts or sorted(configs) != list(range(count)):
        missing = sorted(set(range(count)) - set(configs))
        raise ClinrlError(f"shards do not make one run: need 0..{count - 1} of /{count}, missing {missing}")
    first = configs[0][1]
    same = [k for k in (*_SAMPLING_KEYS, "data", "limit", "batch_size", "n_cases_total", "backend")]
    for part, config in configs.values():
        diff = [k for k in same if config.get(k) != first.get(k)]
        if diff:
            raise ClinrlError(f"{part} was made with other settings than shard 0 ({', '.join(diff)})")
    records: list[dict[str, Any]] = []
    totals = {"generated_now": 0, "reused": 0}
    for index in range(count):
        part, config = configs[index]
        expected = len(_shard_positions(config, index, count))
        got = read_generations(part / GENERATIONS) if (part / GENERATIONS).is_file() else []
        if len(got) != expected:
            raise ClinrlError(f"{part}: shard {index}/{count} is unfinished ({len(got)} of {expected} cases)")
        records += got
        metrics_path = part / "metrics.json"
        if metrics_path.is_file():
            block = json.loads(metrics_path.read_text(encoding="utf-8")).get("eval", {})
            for key in totals:
                totals[key] += int(block.get(key, 0))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {**first, "shard": None}
    write_json_atomic(out / "eval_config.json", config)
    write_text_atomic(out / GENERATIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return _write_report(out, records, {**config, **totals}, ontology, ks, plots)


def _shard_positions(config: dict[str, Any], index: int, count: int) -> list[int]:
    """The case positions of shard ``index``/``count`` of a run recorded in ``config``."""
    batches = shard_batches(int(config["n_cases_total"]), int(config["batch_size"]), (index, count))
    return [i for batch in batches for i in batch]


def _plots(out: Path, metrics: dict[str, Any], model: Any) -> None:
    plot_cc_mcc_confusion(metrics, out / "cc_mcc_confusion.png")
    state = find_trainer_state(model) if model else None
    if state is not None:
        try:
            plot_training_curves(state, out / "training_curves.png")
        except ClinrlError:
            pass  # a trainer state without any of the plotted series


def evaluate_prompts(
    backend: GenerationBackend,
    prompts: Sequence[Any],
    golds: Sequence[str],
    params: SamplingParams,
    *,
    ontology: Any = None,
    ks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """In-memory evaluation (no files): sample ``params.n`` completions per prompt and score them
    against the gold descriptions; returns the metrics dict."""
    outputs = backend.generate(list(prompts), params)
    records = [{"solution": g, "completions": list(t)} for g, t in zip(golds, outputs, strict=True)]
    return score_generations(records, ontology, ks)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_markdown(metrics: dict[str, Any], title: str = "DRG evaluation") -> str:
    """A short markdown report of a metrics dict."""
    n = metrics["n_samples"]
    ks = list(metrics["drg"]["maj@k"])
    pass_ks = [k for k in ks if k != "1"]  # Pass@1 has its own column
    lines = [
        f"# {title}",
        "",
        f"{metrics['n_cases']} cases × {n} samples. Figures in %.",
        "",
        "| target | " + " | ".join(["Pass@1"] + [f"Pass@{k}" for k in pass_ks] + [f"Maj@{k}" for k in ks]) + " |",
        "|---" * (2 + len(pass_ks) + len(ks)) + "|",
    ]
    for target in TARGETS:
        m = metrics[target]
        cells = [_pct(m["pass@1"])] + [_pct(m["pass@k"][k]) for k in pass_ks] + [_pct(m["maj@k"][k]) for k in ks]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    mix, errors = metrics["case_mix"], metrics["error_breakdown"]

    def weight(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines += [
        "",
        f"- format failures {_pct(metrics['format_failure_rate'])} %, invalid answers "
        f"{_pct(metrics['invalid_answer_rate'])} %, no answer {_pct(metrics['no_answer_rate'])} %",
        f"- macro-F1 {_pct(metrics['macro_f1'])} (samples), {_pct(metrics['macro_f1_maj'])} (majority vote)",
        f"- case mix: mean predicted weight {weight(mix['mean_pred_weight'])} vs true "
        f"{weight(mix['mean_true_weight'])}, mean |error| {weight(mix['mean_abs_weight_error'])} "
        f"({mix['n_samples']} samples)",
        f"- wrong DRGs ({errors['n_wrong']}): wrong principal {_pct(errors['wrong_principal'])} %, wrong CC/MCC "
        f"{_pct(errors['wrong_cc_mcc'])} %, both {_pct(errors['both'])} %",
        "",
        "| MDC | cases | DRG Pass@1 |",
        "|---|---|---|",
    ]
    for mdc, row in metrics["per_mdc"].items():
        lines.append(f"| {mdc} {row['name']} | {row['n_cases']} | {_pct(row['pass@1'])} |")
    return "\n".join(lines) + "\n"
