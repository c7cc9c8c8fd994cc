"""Build the PRM training set: PRM strings with true labels for gold notes and error samples, as parquet.

``build_prm_dataset`` writes into ``out_dir``:

- ``data.parquet`` — one row per note: ``text`` (the PRM string) plus metadata columns (:data:`COLUMNS`);
  load it with ``datasets.load_dataset("parquet", data_files=str(out_dir / "data.parquet"))["train"]``;
- ``build_report.json`` — counts by origin, input file and data source, label balance, dropped rows;
- ``special_tokens.json`` — the tokens used, in the study's JSON form.

Rows keep input order: gold files, then error files, then synthetic samples (gold-note order, sample order).
A note that cannot be rendered (a text holding a special-token string) and an exact duplicate string are
dropped and counted in the report, never silently. The output depends only on the inputs and ``seed``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrl.cards import data_kind, most_restricted, write_dataset_card
from clinrl.errors import DataError
from clinrl.io import atomic_path, write_json_atomic
from clinrl.prm.format import LabelMode, PRMFormatError, SpecialTokens, render_prm_string
from clinrl.prm.schema import Note, load_notes
from clinrl.prm.synth.inject import synthesize_errors
from clinrl.registry import Registry, unknown_name_message

__all__ = [
    "COLUMNS",
    "DATA_FILE",
    "REPORT_FILE",
    "TOKENS_FILE",
    "BuildReport",
    "build_prm_dataset",
    "note_row",
    "resolve_tokens",
    "write_rendered",
]

DATA_FILE = "data.parquet"
REPORT_FILE = "build_report.json"
TOKENS_FILE = "special_tokens.json"

# column -> arrow type name; `labels` is the label string in slot order ('+'/'-', one per label position)
COLUMNS: dict[str, str] = {
    "text": "string", "case_id": "string", "case_no": "int64", "sample_no": "int64", "data_source": "string",
    "origin": "string", "source_file": "string", "is_gold": "bool_", "n_problems": "int64", "n_steps": "int64",
    "n_labels": "int64", "n_minus_labels": "int64", "outcome_label": "string", "labels": "string",
    "total_error_no": "int64", "n_swaps": "int64", "n_step_swaps": "int64", "n_problem_swaps": "int64",
    "n_hallucination": "int64", "n_unhelpful": "int64", "n_factual_inaccuracy": "int64", "n_removals": "int64",
    "n_steps_removed": "int64", "n_problems_removed": "int64",
}  # fmt: skip

_TOKEN_SETS: Registry[Any] = Registry("token set", {"llama3": SpecialTokens.llama3, "new": SpecialTokens.new})


def resolve_tokens(spec: str) -> tuple[str, SpecialTokens]:
    """``llama3``, ``new``, or a path to a special-token JSON file → (name, tokens)."""
    if spec in _TOKEN_SETS:
        return spec, _TOKEN_SETS[spec]()
    if Path(spec).suffix == ".json" or Path(spec).exists():
        return str(spec), SpecialTokens.from_json(spec)
    raise DataError(
        unknown_name_message("token set", spec, [*_TOKEN_SETS, "a special-token JSON file"]), field="tokens"
    )


def note_row(note: Note, text: str, *, origin: str, source_file: str) -> dict[str, Any]:
    """The parquet row of one rendered note."""
    labels = "".join(note.labels()) + note.outcome_label
    error_types = Counter(s.error_type for s in note.swaps)
    return {
        "text": text,
        "case_id": note.case_id,
        "case_no": note.case_no,
        "sample_no": note.sample_no,
        "data_source": note.data_source,
        "origin": origin,
        "source_file": source_file,
        "is_gold": not note.is_error_sample and note.outcome_label == "+",
        "n_problems": len(note.problems),
        "n_steps": note.n_steps,
        "n_labels": note.n_label_positions,
        "n_minus_labels": labels.count("-"),
        "outcome_label": note.outcome_label,
        "labels": labels,
        "total_error_no": note.total_error_no if note.total_error_no is not None else len(note.swaps),
        "n_swaps": len(note.swaps),
        "n_step_swaps": sum(s.level == "Step" for s in note.swaps),
        "n_problem_swaps": sum(s.level == "Problem" for s in note.swaps),
        "n_hallucination": error_types["Hallucination"],
        "n_unhelpful": error_types["Unhelpful"],
        "n_factual_inaccuracy": error_types["Factual Inaccuracy"],
        "n_removals": len(note.removals),
        "n_steps_removed": sum(r.level == "Step" for r in note.removals),
        "n_problems_removed": sum(r.level == "Problem" for r in note.removals),
    }


@dataclass
class BuildReport:
    """What went into the dataset and what was dropped (written as ``build_report.json``)."""

    rows: int = 0
    by_origin: Counter = field(default_factory=Counter)
    by_source_file: Counter = field(default_factory=Counter)
    by_data_source: Counter = field(default_factory=Counter)
    by_outcome: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)
    synthetic_skipped_gold: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "by_origin": dict(self.by_origin),
            "by_source_file": dict(self.by_source_file),
            "by_data_source": dict(sorted(self.by_data_source.items())),
            "by_outcome_label": dict(sorted(self.by_outcome.items())),
            "label_positions": dict(sorted(self.labels.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_rows": self.dropped_rows,
            "synthetic_skipped_gold_notes": self.synthetic_skipped_gold,
            "files": {"data": DATA_FILE, "special_tokens": TOKENS_FILE},
            "settings": self.settings,
        }


def _synthesize(gold: list[Note], per_note: int, seed: int) -> list[Note]:
    return synthesize_errors(gold, per_note, seed=seed, pool=gold)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="note", disable=not enabled, leave=False)


def build_prm_dataset(
    gold_paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    error_paths: Sequence[str | Path] = (),
    synthesize: int = 0,
    seed: int = 0,
    tokens: str | SpecialTokens = "llama3",
    eos: str | None = None,
    progress: bool = False,
) -> BuildReport:
    """Render gold notes, error samples and ``synthesize`` synthetic error samples per gold note into
    ``out_dir`` (see the module docstring). ``eos`` is appended to every string when given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if synthesize < 0:
        raise DataError(f"--synthesize must be >= 0, got {synthesize}", field="synthesize")
    token_name, special = resolve_tokens(tokens) if isinstance(tokens, str) else ("custom", tokens)
    sources: list[tuple[str, str, list[Note]]] = []  # (origin, file name, notes)
    gold_notes: list[Note] = []
    for path in gold_paths:
        notes = load_notes(path)
        sources.append(("gold", Path(path).name, notes))
        gold_notes += [n for n in notes if not n.is_error_sample]
    for path in error_paths:
        sources.append(("errors", Path(path).name, load_notes(path)))
    report = BuildReport(
        settings={
            "gold": [str(p) for p in gold_paths], "errors": [str(p) for p in error_paths],
            "synthesize": synthesize, "seed": seed, "tokens": token_name, "eos": eos,
        }
    )  # fmt: skip
    if synthesize:
        synthetic = _synthesize(gold_notes, synthesize, seed)
        made = Counter(n.case_id for n in synthetic)
        report.synthetic_skipped_gold = sum(1 for n in gold_notes if made[n.case_id] == 0)
        sources.append(("synthetic", "synthetic", synthetic))

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    with _progress(sum(len(n) for _, _, n in sources), progress, "render") as bar:
        for origin, name, notes in sources:
            for note in notes:
                bar.update(1)
                where = {"source_file": name, "case_id": note.case_id, "sample_no": note.sample_no}
                try:
                    text = render_prm_string(note, special, "true", eos=eos)
                except PRMFormatError as err:
                    report.dropped["unrenderable"] += 1
                    report.dropped_rows.append({**where, "reason": "unrenderable", "field": err.field})
                    continue
                if text in seen:
                    report.dropped["duplicate"] += 1
                    report.dropped_rows.append({**where, "reason": "duplicate"})
                    continue
                seen.add(text)
                row = note_row(note, text, origin=origin, source_file=name)
                rows.append(row)
                report.by_origin[origin] += 1
                report.by_source_file[name] += 1
                report.by_data_source[note.data_source or "?"] += 1
                report.by_outcome[row["outcome_label"]] += 1
                report.labels.update(row["labels"])
    report.rows = len(rows)

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])
    table = pa.Table.from_pylist(rows, schema=schema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / DATA_FILE) as tmp:
        pq.write_table(table, tmp)
    write_json_atomic(out / TOKENS_FILE, special.to_json_dict())
    kinds = [data_kind(p) for p in (*gold_paths, *error_paths)]
    write_dataset_card(out, {"train": DATA_FILE}, title="PRM training set (clinrl prm build)",
                       kind=most_restricted(kinds or ["unknown"]), counts={"rows": report.rows,
                       "by_origin": dict(report.by_origin), "by_outcome_label": dict(report.by_outcome)},
                       made_by="clinrl prm build")  # fmt: skip
    write_json_atomic(out / REPORT_FILE, report.to_dict())
    return report


def write_rendered(
    notes: Iterable[Note],
    tokens: SpecialTokens,
    out: str | Path,
    *,
    labels: LabelMode = "placeholder",
    eos: str | None = None,
) -> int:
    """Write one JSON line ``{"case_id", "sample_no", "text"}`` per note; returns the count."""
    lines = []
    for note in notes:
        text = render_prm_string(note, tokens, labels, eos=eos)
        row = {"case_id": note.case_id, "sample_no": note.sample_no, "text": text}
        lines.append(json.dumps(row, ensure_ascii=False))
    with atomic_path(out) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)
