"""Dialogues for note generation: the gold notes' dialogues, split train/held-out by case, and the prompts.

Each gold note (PRM-Clinic schema, :mod:`clinrl.prm.schema`) gives one :class:`DialogueCase`: the dialogue and
its gold Assessment & Plan as the *reference* (used for completeness terms and SFT targets, never shown to the
policy). The split is by case and deterministic: a case is held out when ``sha256(f"{seed}:{case_id}")``,
read as a fraction, falls below ``held_out_fraction`` — independent of file order and of the other cases.
Cases sharing one dialogue text are put on the side of the first of them, so no dialogue is on both sides.
Records that cannot serve (error samples, an empty dialogue, no problems, a repeated case id) are skipped and
counted in :class:`DialogueSplit.report`.

Prompts (:func:`prompt_messages`): a system message — the PRM study's instruction plus the output layout the
parser reads (:func:`clinrl.prm.structure.structure_note`) — and a user message with the dialogue, cut to its
first lines that fit ``max_dialogue_tokens`` when a tokenizer is given. Rewards always see the full dialogue.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.prm import demo_data_dir
from clinrl.prm.format import PROMPT
from clinrl.prm.schema import Note, Problem, load_notes

__all__ = [
    "DEMO",
    "FORMAT_INSTRUCTION",
    "DialogueCase",
    "DialogueSplit",
    "cut_dialogue",
    "fit_note",
    "load_dialogues",
    "prompt_messages",
    "render_note",
    "rl_rows",
    "sft_rows",
    "split_dialogues",
]

DEMO = "demo"  # alias: the bundled prm_clinic_gold.json.gz
FORMAT_INSTRUCTION = (
    "Write one block per problem: a header line ending with a colon, then one line per assessment or plan "
    'sentence, each starting with "- ". End with a "Follow-up instructions:" block.'
)


@dataclass(frozen=True)
class DialogueCase:
    """One dialogue and its gold note (the reference)."""

    case_id: str
    dialogue: str
    reference: Note
    data_source: str = ""

    @property
    def stats(self) -> dict[str, Any]:
        """Reference size, as dataset columns for the rewards: problems, steps, words, headers."""
        ref = self.reference
        return {
            "ref_problems": len(ref.problems),
            "ref_steps": ref.n_steps,
            "ref_words": len(ref.text().split()),
            "ref_headers": [p.header for p in ref.problems],
        }


@dataclass
class DialogueSplit:
    """Train and held-out cases plus a report (counts only, no text)."""

    train: list[DialogueCase]
    held_out: list[DialogueCase]
    report: dict[str, Any] = field(default_factory=dict)


def _gold_path(source: str | Path) -> Path:
    if str(source) == DEMO:
        return demo_data_dir() / "prm_clinic_gold.json.gz"
    return Path(source)


def load_dialogues(source: str | Path = DEMO) -> tuple[list[DialogueCase], dict[str, int]]:
    """The usable cases of a gold-note file (``demo``: the bundled one) and the counts of skipped records."""
    path = _gold_path(source)
    skipped: Counter[str] = Counter()
    cases: list[DialogueCase] = []
    seen: set[str] = set()
    for i, note in enumerate(load_notes(path)):
        case_id = note.case_id or f"row{i}"
        if note.is_error_sample:
            skipped["error_sample"] += 1
        elif not note.dialogue.strip():
            skipped["empty_dialogue"] += 1
        elif not note.problems or not note.n_steps:
            skipped["no_problems"] += 1
        elif case_id in seen:
            skipped["duplicate_case"] += 1
        else:
            seen.add(case_id)
            cases.append(DialogueCase(case_id, note.dialogue, note, note.data_source))
    if not cases:
        raise ClinrlError(f"{path}: no usable dialogues (skipped: {dict(skipped)})")
    return cases, dict(skipped)


def _fraction(seed: int, case_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_dialogues(
    cases: Sequence[DialogueCase], held_out_fraction: float = 0.1, seed: int = 0, skipped: dict[str, int] | None = None
) -> DialogueSplit:
    """Split by case (hash of seed and case id); cases with the same dialogue text stay together."""
    if not 0 < held_out_fraction < 1:
        raise ClinrlError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    side_of_dialogue: dict[str, bool] = {}
    train: list[DialogueCase] = []
    held: list[DialogueCase] = []
    shared = 0
    for case in cases:
        key = " ".join(case.dialogue.split())
        if key in side_of_dialogue:
            shared += 1
        is_held = side_of_dialogue.setdefault(key, _fraction(seed, case.case_id) < held_out_fraction)
        (held if is_held else train).append(case)
    if not train or not held:
        raise ClinrlError(f"split left one side empty ({len(train)} train, {len(held)} held out): change the fraction")
    report = {
        "cases": len(cases),
        "train": len(train),
        "held_out": len(held),
        "held_out_fraction": held_out_fraction,
        "seed": seed,
        "cases_sharing_a_dialogue": shared,
        "by_source": {
            side: dict(Counter(c.data_source or "unknown" for c in group))
            for side, group in (("train", train), ("held_out", held))
        },
        "skipped": dict(skipped or {}),
    }
    return DialogueSplit(train, held, report)


def render_note(note: Note) -> str:
    """A note as the text the policy should write: header line, then one ``- step`` line per step."""
    return "\n\n".join(p.header + "".join(f"\n- {s.text}" for s in p.steps) for p in note.problems)


def cut_dialogue(dialogue: str, tokenizer: Any = None, max_tokens: int | None = None) -> tuple[str, bool]:
    """The dialogue's first lines within ``max_tokens`` tokens (cut at the last line break inside the budget; a
    first line alone that is too long is cut mid-line), and whether anything was cut. Unchanged without a
    tokenizer or limit."""
    return _cut_all([dialogue], tokenizer, max_tokens)[0]


def _cut_all(dialogues: Sequence[str], tokenizer: Any, max_tokens: int | None) -> list[tuple[str, bool]]:
    """:func:`cut_dialogue` for many dialogues with one batched tokenizer call (offsets locate the budget)."""
    if tokenizer is None or max_tokens is None or not dialogues:
        return [(d, False) for d in dialogues]
    encoded = tokenizer(list(dialogues), add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for dialogue, ids, offsets in zip(dialogues, encoded["input_ids"], encoded["offset_mapping"]):
        if len(ids) <= max_tokens:
            out.append((dialogue, False))
            continue
        head = dialogue[: offsets[max_tokens - 1][1] if max_tokens > 0 else 0]
        lines = head[: head.rfind("\n")].rstrip() if "\n" in head else ""
        out.append((lines if lines.strip() else head.rstrip(), True))
    return out


def prompt_messages(dialogue: str) -> list[dict[str, str]]:
    """The chat prompt for one dialogue (already cut if needed)."""
    return [
        {"role": "system", "content": f"{PROMPT} {FORMAT_INSTRUCTION}"},
        {"role": "user", "content": f"###DIALOGUE:\n{dialogue}"},
    ]


def rl_rows(
    cases: Sequence[DialogueCase], tokenizer: Any = None, max_dialogue_tokens: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """GRPO rows ``{"prompt", "case_id", "dialogue", ref_*}`` (the full dialogue for the rewards) and how
    many prompts had their dialogue cut."""
    rows, cut = [], 0
    shown_all = _cut_all([c.dialogue for c in cases], tokenizer, max_dialogue_tokens)
    for case, (shown, was_cut) in zip(cases, shown_all):
        cut += was_cut
        rows.append(
            {"prompt": prompt_messages(shown), "case_id": case.case_id, "dialogue": case.dialogue, **case.stats}
        )
    return rows, cut


def fit_note(note: Note, tokenizer: Any, max_tokens: int) -> Note:
    """A shortened copy of ``note`` within ``max_tokens`` tokens that keeps its problem structure: steps are
    dropped from the end of the problem with the most steps (every problem keeps one), then whole problems from
    the end (at least one problem stays)."""
    problems = [Problem(p.header, p.no, list(p.steps), p.label, p.completeness) for p in note.problems]

    def size() -> int:
        return len(tokenizer(render_note(Note(problems=problems)), add_special_tokens=False)["input_ids"])

    while size() > max_tokens:
        longest = max(problems, key=lambda p: len(p.steps))
        if len(longest.steps) > 1:
            longest.steps.pop()
        elif len(problems) > 1:
            problems.pop()
        else:
            break
    return Note(problems=problems)


def sft_rows(
    cases: Sequence[DialogueCase],
    tokenizer: Any = None,
    max_dialogue_tokens: int | None = None,
    max_note_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Prompt–completion rows (TRL conversational) whose completion is the reference note, shortened to
    ``max_note_tokens`` by :func:`fit_note` (so a short model still learns the whole layout and to stop)."""
    rows = []
    shown_all = _cut_all([c.dialogue for c in cases], tokenizer, max_dialogue_tokens)
    for case, (shown, _) in zip(cases, shown_all):
        note = case.reference
        if tokenizer is not None and max_note_tokens is not None:
            note = fit_note(note, tokenizer, max_note_tokens)
        rows.append(
            {"prompt": prompt_messages(shown), "completion": [{"role": "assistant", "content": render_note(note)}]}
        )
    return rows
