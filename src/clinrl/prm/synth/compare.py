"""Profile an error set and compare two (synthetic vs the real dev set): mixes, counts, lengths, support.

``dialogue support`` is the share of content words (lower-cased, stop words removed, see
:func:`clinrl.prm.synth.lexicon.content_words`) of swapped-in text that occur in the dialogue, pooled over all
swaps of a level and error type: over all words of ``New_content`` ("new") and over the words it adds,
i.e. not in ``Original_content`` ("novel"). Hallucinated content should score low on "novel".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any

from clinrl.prm.schema import ERROR_TYPES, LEVELS, Note
from clinrl.prm.synth.labels import EditError, restore_gold
from clinrl.prm.synth.lexicon import content_words

__all__ = ["compare_error_sets", "comparison_table", "flatten_profile", "profile_error_set"]


def _share_dist(values: list[int]) -> dict[int, float]:
    counts = Counter(values)
    return {k: counts[k] / len(values) for k in sorted(counts)} if values else {}


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _gold_for(note: Note, gold: Mapping[str, Note] | None) -> Note | None:
    if gold is not None and note.case_id in gold:
        return gold[note.case_id]
    try:
        return restore_gold(note)
    except EditError:
        return None


def _as_mapping(gold: Iterable[Note] | Mapping[str, Note] | None) -> Mapping[str, Note] | None:
    if gold is None or isinstance(gold, Mapping):
        return gold
    return {g.case_id: g for g in gold}


def _counted(values: list[int]) -> dict[str, Any]:
    return {"mean": _mean([float(v) for v in values]), "dist": _share_dist(values)}


def _length_figures(notes: Sequence[Note], gold: Mapping[str, Note] | None) -> dict[str, Any]:
    chars, steps, steps_rel, unmatched = [], [], [], 0
    for note in notes:
        ref = _gold_for(note, gold)
        if ref is None:
            unmatched += 1
            continue
        gold_chars, gold_steps = len(ref.text()), ref.n_steps
        if gold_chars:
            chars.append(len(note.text()) / gold_chars - 1.0)
        steps.append(float(note.n_steps - gold_steps))
        if gold_steps:
            steps_rel.append(note.n_steps / gold_steps - 1.0)
    return {
        "chars_change_rel": _mean(chars),
        "steps_change": _mean(steps),
        "steps_change_rel": _mean(steps_rel),
        "samples_without_gold": unmatched,
    }


def _support_figures(notes: Sequence[Note]) -> dict[str, dict[str, Any]]:
    totals: dict[str, list[int]] = {f"{lv}/{t}": [0, 0, 0, 0] for lv in LEVELS for t in ERROR_TYPES}
    for note in notes:
        if not note.swaps:
            continue
        dialogue = set(content_words(note.dialogue))
        for swap in note.swaps:
            new = content_words(swap.new)
            old = set(content_words(swap.original))
            novel = [w for w in new if w not in old]
            row = totals.setdefault(f"{swap.level}/{swap.error_type}", [0, 0, 0, 0])
            row[0] += sum(w in dialogue for w in new)
            row[1] += len(new)
            row[2] += sum(w in dialogue for w in novel)
            row[3] += len(novel)
    return {
        key: {
            "new": new_hits / new_total if new_total else None,
            "novel": novel_hits / novel_total if novel_total else None,
            "new_words": new_total,
            "novel_words": novel_total,
        }
        for key, (new_hits, new_total, novel_hits, novel_total) in totals.items()
    }


def profile_error_set(notes: Sequence[Note], gold: Iterable[Note] | Mapping[str, Note] | None = None) -> dict[str, Any]:
    """Figures describing an error set. Gold notes (by ``Case_id``) are rebuilt from the edits if not given."""
    n_swaps = sum(len(n.swaps) for n in notes)
    type_counts = Counter((s.level, s.error_type) for n in notes for s in n.swaps)
    prob_rm = [sum(r.level == "Problem" for r in n.removals) for n in notes]

    def share(count: int) -> float | None:
        return count / n_swaps if n_swaps else None

    return {
        "n_samples": len(notes),
        "n_cases": len({n.case_id for n in notes}),
        "n_swaps": n_swaps,
        "swaps_per_sample": _counted([len(n.swaps) for n in notes]),
        "level_share": {lv: share(sum(type_counts[(lv, t)] for t in ERROR_TYPES)) for lv in LEVELS},
        "type_mix": {lv: {t: share(type_counts[(lv, t)]) for t in ERROR_TYPES} for lv in LEVELS},
        "steps_removed_per_sample": _counted([sum(r.level == "Step" for r in n.removals) for n in notes]),
        "problems_removed_per_sample": _counted(prob_rm),
        "removals_per_sample": _counted([len(n.removals) for n in notes]),
        "share_with_removal": _mean([float(bool(n.removals)) for n in notes]),
        "share_with_problem_removal": _mean([float(p > 0) for p in prob_rm]),
        "share_without_problems": _mean([float(not n.problems) for n in notes]),
        "length": _length_figures(notes, _as_mapping(gold)),
        "dialogue_support": _support_figures(notes),
    }


def flatten_profile(profile: Mapping[str, Any]) -> dict[str, float | int | None]:
    """One row per figure, in a stable order, for tables and diffs."""
    rows: dict[str, float | int | None] = {
        "samples": profile["n_samples"],
        "swaps per sample": profile["swaps_per_sample"]["mean"],
    }
    for k, v in profile["swaps_per_sample"]["dist"].items():
        rows[f"  share with {k} swaps"] = v
    rows["problem-level share of swaps"] = profile["level_share"]["Problem"]
    for level in LEVELS:
        for error_type in ERROR_TYPES:
            rows[f"  {level} {error_type} (share of swaps)"] = profile["type_mix"][level][error_type]
    rows["step removals per sample"] = profile["steps_removed_per_sample"]["mean"]
    for k, v in profile["steps_removed_per_sample"]["dist"].items():
        rows[f"  share with {k} steps removed"] = v
    rows["problem removals per sample"] = profile["problems_removed_per_sample"]["mean"]
    rows["removals per sample"] = profile["removals_per_sample"]["mean"]
    rows["share with any removal"] = profile["share_with_removal"]
    rows["share with a problem removed"] = profile["share_with_problem_removal"]
    rows["share with no problem left"] = profile["share_without_problems"]
    rows["note chars vs gold (relative change)"] = profile["length"]["chars_change_rel"]
    rows["note steps vs gold (change)"] = profile["length"]["steps_change"]
    rows["note steps vs gold (relative change)"] = profile["length"]["steps_change_rel"]
    for key, figures in profile["dialogue_support"].items():
        rows[f"dialogue support, {key}: new text"] = figures["new"]
        rows[f"dialogue support, {key}: added words"] = figures["novel"]
    return rows


def _merged_order(first: list[str], second: list[str]) -> list[str]:
    """``first``, with the metrics only ``second`` has inserted after their predecessor there."""
    order = list(first)
    for i, metric in enumerate(second):
        if metric not in order:
            prev = next((m for m in reversed(second[:i]) if m in order), None)
            order.insert(order.index(prev) + 1 if prev is not None else 0, metric)
    return order


def compare_error_sets(
    synthetic: Sequence[Note],
    real: Sequence[Note],
    *,
    synthetic_gold: Iterable[Note] | Mapping[str, Note] | None = None,
    real_gold: Iterable[Note] | Mapping[str, Note] | None = None,
) -> dict[str, Any]:
    """Profiles of both sets and a row-by-row comparison (``rows``: metric, synthetic, real, difference)."""
    synth_profile = profile_error_set(synthetic, synthetic_gold)
    real_profile = profile_error_set(real, real_gold)
    a, b = flatten_profile(synth_profile), flatten_profile(real_profile)
    rows = []
    for metric in _merged_order(list(a), list(b)):
        if metric.startswith("  share with") and metric not in a:
            a_value: float | int | None = 0.0
        else:
            a_value = a.get(metric)
        b_value = b.get(metric, 0.0 if metric.startswith("  share with") else None)
        diff = a_value - b_value if a_value is not None and b_value is not None else None
        rows.append({"metric": metric, "synthetic": a_value, "real": b_value, "difference": diff})
    return {"synthetic": synth_profile, "real": real_profile, "rows": rows}


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def comparison_table(result: Mapping[str, Any], title: str = "Synthetic vs real error samples"):
    """A rich table of :func:`compare_error_sets`'s result, or of one profile (``{"rows": …}`` absent)."""
    from rich.table import Table

    if "rows" in result:
        table = Table(title=title)
        for name in ("figure", "synthetic", "real", "difference"):
            table.add_column(name, justify="left" if name == "figure" else "right")
        for row in result["rows"]:
            table.add_row(row["metric"], _fmt(row["synthetic"]), _fmt(row["real"]), _fmt(row["difference"]))
        return table
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for metric, value in flatten_profile(result).items():
        table.add_row(metric, _fmt(value))
    return table
