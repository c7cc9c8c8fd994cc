"""The clinical-note model of the PRM-Clinic study: Note → Problems → Steps, each with '+'/'-' labels.

Loads and saves the study's JSON schema (gold files and error files) losslessly: key order is kept and
unknown keys ride along in ``extra``. Schema problems raise :class:`NoteSchemaError`, which names the
file, the case, the sample and the field.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clinrl.errors import DataError, describe_value, shown_id
from clinrl.io import atomic_path

__all__ = [
    "LABELS",
    "Note",
    "NoteSchemaError",
    "Problem",
    "Removal",
    "Step",
    "Swap",
    "load_notes",
    "note_from_dict",
    "note_to_dict",
    "save_notes",
]

Label = Literal["+", "-"]
LABELS: tuple[str, str] = ("+", "-")
ERROR_TYPES = ("Hallucination", "Unhelpful", "Factual Inaccuracy")
CHANGE_TYPES = ("Step Incompleteness", "Problem Incompleteness")
LEVELS = ("Step", "Problem")

_GOLD_KEYS = ("Problems", "Note_completeness_score", "Case_no", "Dialogue", "Data_source", "Case_id")
_ERROR_KEYS = (
    "Problems", "Note_completeness_score", "Case_no", "Dialogue", "Total_error_no", "Swapped_info",
    "Sample_no", "Removed_info", "Total_steps_removed", "Total_problems_removed", "Data_source", "Case_id",
)  # fmt: skip


class NoteSchemaError(DataError):
    """A note does not follow the PRM-Clinic schema."""


@dataclass
class Step:
    """One assessment or plan sentence and its label."""

    text: str
    no: str
    label: Label = "+"

    def to_dict(self) -> dict[str, Any]:
        return {"Step": self.text, "Step_no": self.no, "Step_score": self.label}


@dataclass
class Problem:
    """A problem header (e.g. "Hypertension:") with its ordered steps.

    ``label`` is the header's own label; ``completeness`` is '-' when a step of it is missing.
    """

    header: str
    no: str
    steps: list[Step] = field(default_factory=list)
    label: Label = "+"
    completeness: Label = "+"

    def to_dict(self) -> dict[str, Any]:
        return {
            "Problem": self.header,
            "Problem_no": self.no,
            "Problem_score": self.label,
            "Steps": [s.to_dict() for s in self.steps],
            "Problem_completeness_score": self.completeness,
        }


@dataclass
class Swap:
    """A replaced header or step (``Swapped_info`` item). ``step_no`` is None at problem level."""

    level: Literal["Step", "Problem"]
    problem_no: str
    step_no: str | None
    error_type: str
    original: str
    new: str

    @property
    def landed(self) -> bool:
        """Whether the swap changed the text. A no-op swap (``New_content == Original_content``, five in
        the released dev set) is no error: no step label and no outcome label counts it."""
        return self.new != self.original

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Error_level": self.level, "Problem_no": self.problem_no}
        if self.step_no is not None:
            out["Step_no"] = self.step_no
        out.update({"Error_type": self.error_type, "Original_content": self.original, "New_content": self.new})
        return out


@dataclass
class Removal:
    """A removed step or problem (``Removed_info`` item); ``original`` is what was removed, with labels."""

    level: Literal["Step", "Problem"]
    problem_no: str
    step_no: str | None
    original: Step | Problem
    change_type: str

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Error_level": self.level, "Problem_no": self.problem_no}
        if self.step_no is not None:
            out["Step_no"] = self.step_no
        out.update({"Original_content": self.original.to_dict(), "Change_type": self.change_type})
        return out


@dataclass
class Note:
    """An Assessment & Plan note with its labels and, for error samples, the edits that made it."""

    problems: list[Problem]
    completeness: Label = "+"
    dialogue: str = ""
    case_id: str = ""
    case_no: int | None = None
    data_source: str = ""
    sample_no: int | None = None  # None for a gold note
    swaps: list[Swap] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    total_error_no: int | None = None
    total_steps_removed: int | None = None
    total_problems_removed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for lossless saving
    key_order: tuple[str, ...] = ()  # key order of the source JSON object

    @property
    def is_error_sample(self) -> bool:
        return self.sample_no is not None or bool(self.swaps or self.removals)

    @property
    def outcome_label(self) -> Label:
        """The end-of-note (ORM) label: '+' for an error-free note, '-' when anything is wrong.

        The same rule as the step labels (:mod:`clinrl.prm.synth.labels`): an edit counts when it landed — a
        removal, or a swap that changed the text — or when a stored label says '-'. A no-op swap alone
        leaves every recomputed label '+', so the outcome is '+' too; otherwise the rendered string would
        contradict itself and fail to parse (audit 2026-12-04, item 5).
        """
        if self.removals or any(swap.landed for swap in self.swaps) or "-" in self.labels():
            return "-"
        return "+"

    @property
    def n_steps(self) -> int:
        return sum(len(p.steps) for p in self.problems)

    @property
    def n_label_positions(self) -> int:
        """Label positions in the PRM string: 2 per problem + 1 per step + note completeness + end."""
        return 2 * len(self.problems) + self.n_steps + 2

    def labels(self) -> list[Label]:
        """Labels in PRM-string order, without the end-of-note label."""
        out: list[Label] = []
        for p in self.problems:
            out.append(p.label)
            out.extend(s.label for s in p.steps)
            out.append(p.completeness)
        out.append(self.completeness)
        return out

    def items(self) -> list[str]:
        """Every header and step text, in order."""
        out: list[str] = []
        for p in self.problems:
            out.append(p.header)
            out.extend(s.text for s in p.steps)
        return out

    def text(self) -> str:
        """The note as plain text: header lines followed by their steps."""
        lines: list[str] = []
        for p in self.problems:
            lines.append(p.header)
            lines.extend(s.text for s in p.steps)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------- loading
class _Ctx:
    """Where we are, for error messages."""

    def __init__(self, path: object, index: int, raw: Any):
        self.path, self.index = path, index
        case = raw.get("Case_id") if isinstance(raw, dict) else None
        sample = raw.get("Sample_no") if isinstance(raw, dict) else None
        self.row = f"{index} (case {shown_id(case)}" + (f", sample {shown_id(sample)})" if sample is not None else ")")

    def fail(self, message: str, field_name: str) -> NoteSchemaError:
        return NoteSchemaError(message, path=self.path, row=self.row, field=field_name)


def _need(obj: Any, key: str, kinds: type | tuple[type, ...], ctx: _Ctx, where: str) -> Any:
    if not isinstance(obj, dict):
        raise ctx.fail(f"expected an object, got {type(obj).__name__}", where or "<note>")
    if key not in obj:
        raise ctx.fail("missing", f"{where}{key}")
    value = obj[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        raise ctx.fail(f"expected {names}, got {type(value).__name__}", f"{where}{key}")
    return value


def _label(obj: dict, key: str, ctx: _Ctx, where: str) -> Label:
    value = _need(obj, key, str, ctx, where)
    if value not in LABELS:
        raise ctx.fail(f"label must be '+' or '-', got {describe_value(value)}", f"{where}{key}")
    return value  # type: ignore[return-value]


MAX_NUMBER_CHARS = 16


def _number(obj: dict, key: str, ctx: _Ctx, where: str) -> str:
    """A ``Problem_no``/``Step_no``: an integer or a short one-line string ("2", "2a"). The cap keeps text
    out of the numbering, which error messages and label reports quote."""
    value = str(_need(obj, key, (str, int), ctx, where))
    if len(value) > MAX_NUMBER_CHARS or not value.isprintable():
        raise ctx.fail(f"expected a short number (≤ {MAX_NUMBER_CHARS} printable characters), got "
                       f"{describe_value(obj[key])}", f"{where}{key}")  # fmt: skip
    return value


def _step(raw: Any, ctx: _Ctx, where: str) -> Step:
    return Step(
        text=_need(raw, "Step", str, ctx, where),
        no=_number(raw, "Step_no", ctx, where),
        label=_label(raw, "Step_score", ctx, where),
    )


def _problem(raw: Any, ctx: _Ctx, where: str) -> Problem:
    steps_raw = _need(raw, "Steps", list, ctx, where)
    return Problem(
        header=_need(raw, "Problem", str, ctx, where),
        no=_number(raw, "Problem_no", ctx, where),
        label=_label(raw, "Problem_score", ctx, where),
        steps=[_step(s, ctx, f"{where}Steps[{j}].") for j, s in enumerate(steps_raw)],
        completeness=_label(raw, "Problem_completeness_score", ctx, where),
    )


def _object(raw: Any, ctx: _Ctx, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ctx.fail(f"expected an object, got {type(raw).__name__}", where.rstrip(".") or "<note>")
    return raw


def _level(raw: dict, ctx: _Ctx, where: str) -> str:
    level = _need(raw, "Error_level", str, ctx, where)
    if level not in LEVELS:
        raise ctx.fail(f"must be one of {LEVELS}, got {describe_value(level)}", f"{where}Error_level")
    if level == "Step" and "Step_no" not in raw:
        raise ctx.fail("missing for a step-level edit", f"{where}Step_no")
    return level


def _swap(raw: Any, ctx: _Ctx, where: str) -> Swap:
    level = _level(_object(raw, ctx, where), ctx, where)
    error_type = _need(raw, "Error_type", str, ctx, where)
    if error_type not in ERROR_TYPES:
        raise ctx.fail(f"must be one of {ERROR_TYPES}, got {describe_value(error_type)}", f"{where}Error_type")
    return Swap(
        level=level,  # type: ignore[arg-type]
        problem_no=_number(raw, "Problem_no", ctx, where),
        step_no=_number(raw, "Step_no", ctx, where) if "Step_no" in raw else None,
        error_type=error_type,
        original=_need(raw, "Original_content", str, ctx, where),
        new=_need(raw, "New_content", str, ctx, where),
    )


def _removal(raw: Any, ctx: _Ctx, where: str) -> Removal:
    level = _level(_object(raw, ctx, where), ctx, where)
    change = _need(raw, "Change_type", str, ctx, where)
    if change not in CHANGE_TYPES:
        raise ctx.fail(f"must be one of {CHANGE_TYPES}, got {describe_value(change)}", f"{where}Change_type")
    content = _need(raw, "Original_content", dict, ctx, where)
    inner = f"{where}Original_content."
    original: Step | Problem = _step(content, ctx, inner) if level == "Step" else _problem(content, ctx, inner)
    return Removal(
        level=level,  # type: ignore[arg-type]
        problem_no=_number(raw, "Problem_no", ctx, where),
        step_no=_number(raw, "Step_no", ctx, where) if "Step_no" in raw else None,
        original=original,
        change_type=change,
    )


_INT64 = (-(2**63), 2**63 - 1)


def _optional_int(raw: dict, key: str, ctx: _Ctx) -> int | None:
    if key not in raw:
        return None
    value = _need(raw, key, int, ctx, "")
    if not _INT64[0] <= value <= _INT64[1]:
        raise ctx.fail("integer out of range (64-bit)", key)
    return value


_KNOWN = set(_ERROR_KEYS)


def note_from_dict(raw: Any, *, path: object = None, index: int = 0) -> Note:
    """Build a :class:`Note` from one item of a PRM-Clinic JSON file."""
    ctx = _Ctx(path, index, raw)
    problems_raw = _need(raw, "Problems", list, ctx, "")
    return Note(
        problems=[_problem(p, ctx, f"Problems[{i}].") for i, p in enumerate(problems_raw)],
        completeness=_label(raw, "Note_completeness_score", ctx, ""),
        dialogue=_need(raw, "Dialogue", str, ctx, ""),
        case_id=_need(raw, "Case_id", str, ctx, "") if "Case_id" in raw else "",
        case_no=_optional_int(raw, "Case_no", ctx),
        data_source=_need(raw, "Data_source", str, ctx, "") if "Data_source" in raw else "",
        sample_no=_optional_int(raw, "Sample_no", ctx),
        swaps=[_swap(s, ctx, f"Swapped_info[{i}].") for i, s in enumerate(raw.get("Swapped_info") or [])]
        if _check_list(raw, "Swapped_info", ctx)
        else [],
        removals=[_removal(s, ctx, f"Removed_info[{i}].") for i, s in enumerate(raw.get("Removed_info") or [])]
        if _check_list(raw, "Removed_info", ctx)
        else [],
        total_error_no=_optional_int(raw, "Total_error_no", ctx),
        total_steps_removed=_optional_int(raw, "Total_steps_removed", ctx),
        total_problems_removed=_optional_int(raw, "Total_problems_removed", ctx),
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
        key_order=tuple(raw.keys()),
    )


def _check_list(raw: dict, key: str, ctx: _Ctx) -> bool:
    if key not in raw:
        return False
    _need(raw, key, list, ctx, "")
    return True


def note_to_dict(note: Note) -> dict[str, Any]:
    """The PRM-Clinic JSON object for ``note``, in its original key order when it was loaded."""
    values: dict[str, Any] = {
        "Problems": [p.to_dict() for p in note.problems],
        "Note_completeness_score": note.completeness,
        "Case_no": note.case_no,
        "Dialogue": note.dialogue,
        "Data_source": note.data_source,
        "Case_id": note.case_id,
    }
    if note.is_error_sample:
        values.update(
            {
                "Total_error_no": note.total_error_no if note.total_error_no is not None else len(note.swaps),
                "Swapped_info": [s.to_dict() for s in note.swaps],
                "Sample_no": note.sample_no,
            }
        )
        if note.removals:
            values["Removed_info"] = [r.to_dict() for r in note.removals]
        steps_removed = note.total_steps_removed
        problems_removed = note.total_problems_removed
        if steps_removed is None and any(r.level == "Step" for r in note.removals):
            steps_removed = sum(r.level == "Step" for r in note.removals)
        if problems_removed is None and any(r.level == "Problem" for r in note.removals):
            problems_removed = sum(r.level == "Problem" for r in note.removals)
        if steps_removed is not None:
            values["Total_steps_removed"] = steps_removed
        if problems_removed is not None:
            values["Total_problems_removed"] = problems_removed
    values.update(note.extra)
    default_order = _ERROR_KEYS if note.is_error_sample else _GOLD_KEYS
    order = [k for k in note.key_order if k in values] or []
    order += [k for k in default_order if k in values and k not in order]
    order += [k for k in values if k not in order]
    return {k: values[k] for k in order}


def _open_text(path: Path):
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    if path.suffix == ".gz":
        raise NoteSchemaError("named .gz but is not gzip-compressed", path=path)
    return path.open("r", encoding="utf-8-sig")  # a leading byte-order mark is allowed


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object naming a key twice would silently keep only the last value."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKey(dup)
    return obj


def _check_unicode(raw: list, path: Path) -> None:
    """Strings must be valid Unicode: a lone surrogate (``"\\ud800"`` in the JSON) cannot be written back."""
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        for i, item in enumerate(raw):
            try:
                json.dumps(item, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as err:
                raise _Ctx(path, i, item).fail(
                    f"invalid Unicode (lone surrogate) at character {err.start}", "<note>"
                ) from None
        raise


def load_notes(path: str | Path) -> list[Note]:
    """Load a PRM-Clinic JSON file (a list of notes; ``.gz`` or plain)."""
    path = Path(path)
    if not path.exists():
        raise NoteSchemaError("no such file", path=path)
    try:
        with _open_text(path) as handle:
            raw = json.load(handle, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise NoteSchemaError(f"a JSON object names key {shown_id(str(err))} twice", path=path) from None
    except RecursionError:
        raise NoteSchemaError("not readable as JSON: nested too deeply", path=path) from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NoteSchemaError(f"not readable as JSON: {err}", path=path) from None
    if not isinstance(raw, list):
        raise NoteSchemaError(f"expected a JSON list of notes, got {type(raw).__name__}", path=path)
    _check_unicode(raw, path)
    return [note_from_dict(item, path=path, index=i) for i, item in enumerate(raw)]


def save_notes(notes: Iterable[Note], path: str | Path, *, indent: int | None = None) -> None:
    """Write notes in the PRM-Clinic schema (gzip when the name ends in ``.gz``), atomically."""
    path = Path(path)
    text = json.dumps([note_to_dict(n) for n in notes], ensure_ascii=False, indent=indent)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with gzip.open(tmp, "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            tmp.write_text(text, encoding="utf-8")
