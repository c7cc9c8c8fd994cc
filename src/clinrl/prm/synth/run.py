"""``clinrl prm synth-errors`` as a Python call: gold-note file in, label-checked error-sample file out.

:func:`synthesize_error_file` loads the gold notes (and the pool hallucinations may borrow from), makes the
samples by rule or — given an OpenAI-compatible ``client`` — by a model whose edits our code validates and
labels, re-checks every label, and writes the samples; with a model it also writes ``<out>.report.json``
(rejects by reason, request counts). The command line only parses options and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrl.io import write_json_atomic
from clinrl.prm.schema import Note, load_notes, save_notes
from clinrl.prm.synth.inject import SynthConfig, synthesize
from clinrl.prm.synth.labels import check_label_consistency
from clinrl.prm.synth.llm_inject import LLMErrorSynthesizer, LLMSynthConfig, synthesize_with_llm

__all__ = ["SynthErrorsRun", "synthesize_error_file"]


@dataclass
class SynthErrorsRun:
    """What one run made: the samples, the gold notes they came from, and (model runs) the report."""

    notes: list[Note]
    gold: list[Note]
    skipped: list[str]
    out: Path
    llm_report: dict[str, Any] | None = None
    report_path: Path | None = None


def synthesize_error_file(
    gold: Path | Sequence[Note],
    out: Path,
    *,
    per_note: int = 8,
    seed: int = 0,
    config: SynthConfig | None = None,
    pool: Path | None = None,
    client: Any = None,
    llm: Any = None,
    progress: Callable[[int], None] | None = None,
    report_extra: dict[str, Any] | None = None,
) -> SynthErrorsRun:
    """Make ``per_note`` error samples of every gold note in ``gold`` (a file, or notes already loaded) and
    write them to ``out``.

    ``client`` None: rule-based edits (``pool`` notes feed content hallucinations; default the gold notes).
    Else the model writes the edits with ``llm`` (:class:`clinrl.prm.synth.llm_inject.LLMSynthConfig`) and
    ``<out>.report.json`` gets the counts plus ``report_extra`` (e.g. endpoint and model name; never a key).
    Samples that fail the label check are a bug in our code, never written (RuntimeError)."""

    config = config or SynthConfig()  # validated in SynthConfig.__post_init__
    gold_notes = load_notes(gold) if isinstance(gold, (str, Path)) else list(gold)
    llm_report = None
    if client is None:
        pool_notes = load_notes(pool) if pool is not None else None
        result = synthesize(gold_notes, per_note, seed=seed, pool=pool_notes, config=config, progress=progress)
    else:
        synthesizer = LLMErrorSynthesizer(client, config, llm or LLMSynthConfig(seed=seed))
        result = synthesize_with_llm(gold_notes, per_note, synthesizer, seed=seed, progress=progress)
        llm_report = result.to_dict()
    check = check_label_consistency(result.notes)
    if not check.ok:  # a bug, not a user mistake: never write inconsistent samples
        raise RuntimeError(f"synthesized samples failed the label check:\n{check.summary()}")
    save_notes(result.notes, out)
    run = SynthErrorsRun(list(result.notes), gold_notes, list(result.skipped), out, llm_report)
    if llm_report is not None:
        run.report_path = out.with_name(out.name + ".report.json")
        write_json_atomic(run.report_path, {**(report_extra or {}), **llm_report})
    return run
