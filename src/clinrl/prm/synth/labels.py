"""Label semantics of PRM-Clinic error samples: labels recomputed from the edits, and a consistency check.

The rules, measured on all 768 samples of ``verification_dev_error.json.gz`` against their gold notes
(2,699 swaps, 872 step and 144 problem removals):

* a '-' only where an edit landed, everything else '+';
* a step swap makes that step's ``Step_score`` '-'; a problem-level swap makes ``Problem_score`` '-';
* a removed step makes its problem's ``Problem_completeness_score`` '-' (also when every step went);
* a removed problem makes ``Note_completeness_score`` '-' (8 samples lost their only problem);
* swaps come first, then removals, steps before problems; nothing is renumbered, so edits are matched by
  ``Problem_no``/``Step_no``. Removed content is stored as it was when removed, labels included: a removed
  problem keeps its swapped steps' '-' (181 swaps sit in removed problems) and lacks the steps removed
  before it, its completeness then '-' (43 such steps). No swapped step was ever removed on its own;
* ``Total_error_no`` = number of swaps (always); ``Total_steps_removed``/``Total_problems_removed`` are
  present only when that kind of removal happened, and count them; ``Removed_info`` only with a removal.

Label noise: five swaps have ``New_content == Original_content`` — no edit landed, yet the position is
labelled '-' (A_Validate_18 sample 5 Problem 1 header; Dialogue_G_1256 sample 6 Problem 2 Step 2;
Dialogue_G_1289 samples 1, 6, 7 Problem 1 Steps 4, 3, 2). By default such a swap earns no '-', so the check
reports exactly these five; ``count_noop_swaps=True`` reproduces every stored label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from clinrl.errors import DataError
from clinrl.prm.schema import Note, Problem, Step

__all__ = [
    "EditError",
    "EditIssue",
    "LabelMismatch",
    "LabelReport",
    "Position",
    "check_label_consistency",
    "clone_problem",
    "expected_labels",
    "label_positions",
    "number_key",
    "relabel",
    "restore_gold",
]

Label = Literal["+", "-"]
Kind = Literal["header", "step", "completeness", "note"]


class EditError(DataError):
    """The edits of an error sample cannot be undone (they point at something that is not there)."""


@dataclass(frozen=True)
class Position:
    """One label position. ``removed`` marks a position inside ``Removed_info`` content."""

    kind: Kind
    problem_no: str = ""
    step_no: str = ""
    removed: bool = False

    def __str__(self) -> str:
        text = {
            "header": f"Problem {self.problem_no} header",
            "step": f"Problem {self.problem_no} Step {self.step_no}",
            "completeness": f"Problem {self.problem_no} completeness",
            "note": "Note completeness",
        }[self.kind]
        return f"Removed_info: {text}" if self.removed else text


# ------------------------------------------------------------------------------------ edit index
@dataclass
class _Edits:
    """Where the edits of one note landed."""

    step_swaps: set[tuple[str, str]] = field(default_factory=set)
    header_swaps: set[str] = field(default_factory=set)
    noop: set[tuple[str, str]] = field(default_factory=set)  # (problem_no, step_no or "") of no-op swaps
    steps_removed_from: set[str] = field(default_factory=set)
    problem_removed: bool = False

    @classmethod
    def of(cls, note: Note, count_noop_swaps: bool = False) -> _Edits:
        edits = cls()
        for swap in note.swaps:
            key = (swap.problem_no, swap.step_no or "")
            if not swap.landed and not count_noop_swaps:
                edits.noop.add(key)
            elif swap.level == "Step":
                edits.step_swaps.add(key)
            else:
                edits.header_swaps.add(swap.problem_no)
        for removal in note.removals:
            if removal.level == "Step":
                edits.steps_removed_from.add(removal.problem_no)
            else:
                edits.problem_removed = True
        return edits

    def expected(self, pos: Position) -> Label:
        hit = {
            "header": pos.problem_no in self.header_swaps,
            "step": (pos.problem_no, pos.step_no) in self.step_swaps,
            "completeness": pos.problem_no in self.steps_removed_from,
            "note": self.problem_removed,
        }[pos.kind]
        return "-" if hit else "+"


def _problem_positions(problem: Problem, no: str, removed: bool) -> list[tuple[Position, Label]]:
    out: list[tuple[Position, Label]] = [(Position("header", no, removed=removed), problem.label)]
    out += [(Position("step", no, s.no, removed), s.label) for s in problem.steps]
    out.append((Position("completeness", no, removed=removed), problem.completeness))
    return out


def label_positions(note: Note) -> list[tuple[Position, Label]]:
    """The stored labels with their positions: the note in PRM-string order, then ``Removed_info`` content."""
    out: list[tuple[Position, Label]] = []
    for problem in note.problems:
        out += _problem_positions(problem, problem.no, removed=False)
    out.append((Position("note"), note.completeness))
    for removal in note.removals:
        if isinstance(removal.original, Problem):
            out += _problem_positions(removal.original, removal.problem_no, removed=True)
        else:
            step_no = removal.step_no if removal.step_no is not None else removal.original.no
            out.append((Position("step", removal.problem_no, step_no, True), removal.original.label))
    return out


def expected_labels(note: Note, *, count_noop_swaps: bool = False) -> list[tuple[Position, Label]]:
    """The labels ``note`` should carry, recomputed from its swaps and removals only.

    Same positions and order as :func:`label_positions`; ``[l for p, l in …if not p.removed]`` lines up with
    ``note.labels()``. A swap that leaves its text unchanged counts only with ``count_noop_swaps``.
    """
    edits = _Edits.of(note, count_noop_swaps)
    return [(pos, edits.expected(pos)) for pos, _ in label_positions(note)]


def relabel(note: Note) -> Note:
    """Set every label of ``note`` (including ``Removed_info`` content) from its edits, in place."""
    edits = _Edits.of(note)

    def fix(problem: Problem, no: str, removed: bool) -> None:
        problem.label = edits.expected(Position("header", no, removed=removed))
        for step in problem.steps:
            step.label = edits.expected(Position("step", no, step.no, removed))
        problem.completeness = edits.expected(Position("completeness", no, removed=removed))

    for problem in note.problems:
        fix(problem, problem.no, False)
    note.completeness = edits.expected(Position("note"))
    for removal in note.removals:
        if isinstance(removal.original, Problem):
            fix(removal.original, removal.problem_no, True)
        else:
            step_no = removal.step_no if removal.step_no is not None else removal.original.no
            removal.original.label = edits.expected(Position("step", removal.problem_no, step_no, True))
    return note


# ------------------------------------------------------------------------------------ undo edits
def clone_problem(problem: Problem) -> Problem:
    """A copy of ``problem`` with its own steps (much faster than ``copy.deepcopy``)."""
    steps = [Step(s.text, s.no, s.label) for s in problem.steps]
    return Problem(problem.header, problem.no, steps, problem.label, problem.completeness)


def number_key(no: str) -> tuple[int, int | str]:
    """Sort key of a ``Problem_no``/``Step_no``: numbers numerically, anything else after them."""
    return (0, int(no)) if no.isdigit() else (1, no)


def _insert_numbered(items: list, item: Any) -> None:
    """Insert before the first sibling numbered after ``item`` (numbering is never renumbered)."""
    key = number_key(item.no)
    for i, other in enumerate(items):
        if number_key(other.no) > key:
            items.insert(i, item)
            return
    items.append(item)


def _find_problem(problems: list[Problem], no: str) -> Problem | None:
    return next((p for p in problems if p.no == no), None)


def restore_gold(note: Note) -> Note:
    """The gold note an error sample was made from: removals put back, swaps undone, all labels '+'.

    Raises :class:`EditError` when an edit points at a problem that is not there.
    """
    problems = [clone_problem(p) for p in note.problems]
    for i, removal in reversed(list(enumerate(note.removals))):
        original = removal.original
        original = clone_problem(original) if isinstance(original, Problem) else Step(original.text, original.no)
        if isinstance(original, Problem):
            _insert_numbered(problems, original)
            continue
        target = _find_problem(problems, removal.problem_no)
        if target is None:
            raise EditError(f"Removed_info[{i}] removes a step of problem {removal.problem_no}, which is not there")
        _insert_numbered(target.steps, original)
    for i, swap in enumerate(note.swaps):
        target = _find_problem(problems, swap.problem_no)
        if target is None:
            raise EditError(f"Swapped_info[{i}] points at problem {swap.problem_no}, which is not there")
        if swap.level == "Problem":
            target.header = swap.original
            continue
        step = next((s for s in target.steps if s.no == swap.step_no), None)
        if step is None:
            raise EditError(f"Swapped_info[{i}] points at Problem {swap.problem_no} Step {swap.step_no}, not there")
        step.text = swap.original
    for problem in problems:
        problem.label = problem.completeness = "+"
        for step in problem.steps:
            step.label = "+"
    return Note(
        problems=problems,
        dialogue=note.dialogue,
        case_id=note.case_id,
        case_no=note.case_no,
        data_source=note.data_source,
    )


# ------------------------------------------------------------------------------------ the check
@dataclass(frozen=True)
class LabelMismatch:
    """A stored label that differs from the one recomputed from the edits."""

    case_id: str
    sample_no: int | None
    position: str
    stored: str
    expected: str
    reason: str


@dataclass(frozen=True)
class EditIssue:
    """An edit record that does not fit the note (or the gold note)."""

    case_id: str
    sample_no: int | None
    where: str
    message: str


@dataclass
class LabelReport:
    """Result of :func:`check_label_consistency`. Never holds note text, only positions."""

    n_samples: int = 0
    n_labels: int = 0
    gold_checked: bool = False
    mismatches: list[LabelMismatch] = field(default_factory=list)
    issues: list[EditIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.issues

    @property
    def noisy_samples(self) -> list[tuple[str, int | None]]:
        """(case, sample) of every sample with a label mismatch, sorted."""
        keys = {(m.case_id, m.sample_no) for m in self.mismatches}
        return sorted(keys, key=lambda k: (k[0], -1 if k[1] is None else k[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "n_labels": self.n_labels,
            "gold_checked": self.gold_checked,
            "n_mismatches": len(self.mismatches),
            "n_issues": len(self.issues),
            "noisy_samples": [list(k) for k in self.noisy_samples],
            "mismatches": [asdict(m) for m in self.mismatches],
            "issues": [asdict(i) for i in self.issues],
        }

    def summary(self) -> str:
        lines = [
            f"{self.n_samples} samples, {self.n_labels} labels checked"
            + (" (edits also checked against the gold notes)" if self.gold_checked else ""),
            f"{len(self.mismatches)} label mismatches in {len(self.noisy_samples)} samples, "
            f"{len(self.issues)} edit issues",
        ]
        for m in self.mismatches:
            lines.append(
                f"  mismatch {m.case_id} sample {m.sample_no}: {m.position} stored {m.stored!r}, "
                f"expected {m.expected!r} ({m.reason})"
            )
        for i in self.issues:
            lines.append(f"  issue {i.case_id} sample {i.sample_no}: {i.where}: {i.message}")
        return "\n".join(lines)


def _mismatch_reason(pos: Position, stored: str, edits: _Edits) -> str:
    if stored == "-" and (pos.problem_no, pos.step_no if pos.kind == "step" else "") in edits.noop:
        if pos.kind in ("header", "step"):
            return "swap leaves the text unchanged (New_content == Original_content)"
    if stored == "-":
        return "'-' where no edit landed"
    return {
        "header": "the header was swapped but is labelled '+'",
        "step": "the step was swapped but is labelled '+'",
        "completeness": "a step of this problem was removed but completeness is '+'",
        "note": "a problem was removed but note completeness is '+'",
    }[pos.kind]


def _check_labels(note: Note, report: LabelReport) -> None:
    edits = _Edits.of(note)
    stored = label_positions(note)
    report.n_labels += len(stored)
    for pos, label in stored:
        want = edits.expected(pos)
        if label != want:
            reason = _mismatch_reason(pos, label, edits)
            report.mismatches.append(LabelMismatch(note.case_id, note.sample_no, str(pos), label, want, reason))


def _text_at(note: Note, level: str, problem_no: str, step_no: str | None) -> list[str]:
    """Every text at a position: in the note and in ``Removed_info`` content (normally exactly one)."""
    problems = [(p.no, p) for p in note.problems]
    problems += [(r.problem_no, r.original) for r in note.removals if isinstance(r.original, Problem)]
    out: list[str] = []
    for no, problem in problems:
        if no != problem_no:
            continue
        if level == "Problem":
            out.append(problem.header)
        else:
            out += [s.text for s in problem.steps if s.no == step_no]
    if level == "Step":
        for r in note.removals:
            if isinstance(r.original, Step) and r.problem_no == problem_no:
                if (r.step_no if r.step_no is not None else r.original.no) == step_no:
                    out.append(r.original.text)
    return out


def _check_structure(note: Note, issue) -> None:
    """Metadata, numbering and edit records that can be checked without the gold note."""
    if note.total_error_no != len(note.swaps):
        issue("Total_error_no", f"is {note.total_error_no}, but there are {len(note.swaps)} swaps")
    for key, level, value in (
        ("Total_steps_removed", "Step", note.total_steps_removed),
        ("Total_problems_removed", "Problem", note.total_problems_removed),
    ):
        count = sum(r.level == level for r in note.removals)
        if count and value != count:
            issue(key, f"is {value}, but {count} were removed")
        elif not count and value is not None:
            issue(key, f"is present ({value}) although none was removed")
    numbers = Counter(p.no for p in note.problems)
    for no, n in numbers.items():
        if n > 1:
            issue("Problems", f"problem number {no} appears {n} times")
    for problem in note.problems:
        for no, n in Counter(s.no for s in problem.steps).items():
            if n > 1:
                issue(f"Problem {problem.no}", f"step number {no} appears {n} times")
    for key, n in Counter((s.level, s.problem_no, s.step_no) for s in note.swaps).items():
        if n > 1:
            issue("Swapped_info", f"{n} swaps at {key[0]} level, problem {key[1]}, step {key[2]}")
    for i, swap in enumerate(note.swaps):
        texts = _text_at(note, swap.level, swap.problem_no, swap.step_no)
        where = f"Swapped_info[{i}]"
        if not texts:
            issue(where, "points at a position that is neither in the note nor in Removed_info")
        elif any(t != swap.new for t in texts):
            issue(where, "New_content differs from the text at that position")
    present = {(p.no, None) for p in note.problems} | {(p.no, s.no) for p in note.problems for s in p.steps}
    removed_problems: set[str] = set()
    for i, removal in enumerate(note.removals):
        where = f"Removed_info[{i}]"
        expected_change = "Step Incompleteness" if removal.level == "Step" else "Problem Incompleteness"
        if removal.change_type != expected_change:
            issue(where, f"Change_type {removal.change_type!r} at {removal.level} level")
        if isinstance(removal.original, Problem) != (removal.level == "Problem"):
            issue(where, f"Original_content does not match Error_level {removal.level}")
            continue
        if removal.level == "Problem":
            if (removal.problem_no, None) in present:
                issue(where, f"problem {removal.problem_no} is removed but still in the note")
            if removal.original.no != removal.problem_no:
                issue(where, f"Problem_no {removal.problem_no} but the content is numbered {removal.original.no}")
            removed_problems.add(removal.problem_no)
        else:
            if (removal.problem_no, removal.step_no) in present:
                issue(where, f"step {removal.problem_no}.{removal.step_no} is removed but still in the note")
            if removal.original.no != removal.step_no:
                issue(where, f"Step_no {removal.step_no} but the content is numbered {removal.original.no}")
            if removal.problem_no in removed_problems:
                issue(where, f"removes a step of problem {removal.problem_no} after that problem was removed")


def _check_against_gold(note: Note, gold: Note, issue) -> None:
    """Swaps' Original_content and the note with its edits undone must match the gold note."""
    gold_problems = {p.no: p for p in gold.problems}
    for i, swap in enumerate(note.swaps):
        where = f"Swapped_info[{i}]"
        problem = gold_problems.get(swap.problem_no)
        if problem is None:
            issue(where, f"gold note has no problem {swap.problem_no}")
            continue
        if swap.level == "Problem":
            gold_text = problem.header
        else:
            step = next((s for s in problem.steps if s.no == swap.step_no), None)
            if step is None:
                issue(where, f"gold note has no step {swap.problem_no}.{swap.step_no}")
                continue
            gold_text = step.text
        if gold_text != swap.original:
            issue(where, "Original_content differs from the gold text at that position")
    try:
        restored = restore_gold(note)
    except EditError as err:
        issue("edits", str(err))
        return
    got = [p.no for p in restored.problems]
    want = [p.no for p in gold.problems]
    if got != want:
        issue("Problems", f"with the edits undone the problems are {got}, the gold has {want}")
    for problem in restored.problems:
        ref = gold_problems.get(problem.no)
        if ref is None:
            continue
        if problem.header != ref.header:
            issue(f"Problem {problem.no}", "header differs from the gold once the edits are undone")
        if [s.no for s in problem.steps] != [s.no for s in ref.steps]:
            issue(
                f"Problem {problem.no}",
                f"with the edits undone the steps are {[s.no for s in problem.steps]}, "
                f"the gold has {[s.no for s in ref.steps]}",
            )
            continue
        for step, ref_step in zip(problem.steps, ref.steps):
            if step.text != ref_step.text:
                issue(f"Problem {problem.no} Step {step.no}", "differs from the gold once the edits are undone")


def check_label_consistency(
    notes: Iterable[Note], gold: Iterable[Note] | Mapping[str, Note] | None = None
) -> LabelReport:
    """Check every error sample's labels against the ones recomputed from its edits.

    Also checks the edit records themselves (totals, numbering, ``New_content`` against the note) and, when
    ``gold`` notes are given (matched by ``Case_id``), ``Original_content`` and removed content against the
    gold. Never raises on odd input: everything found lands in the report.
    """
    gold_by_case: Mapping[str, Note] | None
    if gold is None:
        gold_by_case = None
    elif isinstance(gold, Mapping):
        gold_by_case = gold
    else:
        gold_by_case = {g.case_id: g for g in gold}
    report = LabelReport(gold_checked=gold_by_case is not None)
    for note in notes:
        report.n_samples += 1

        def issue(where: str, message: str, _note: Note = note) -> None:
            report.issues.append(EditIssue(_note.case_id, _note.sample_no, where, message))

        _check_labels(note, report)
        _check_structure(note, issue)
        if gold_by_case is not None:
            ref = gold_by_case.get(note.case_id)
            if ref is None:
                issue("Case_id", "no gold note for this case")
            else:
                _check_against_gold(note, ref, issue)
    return report
