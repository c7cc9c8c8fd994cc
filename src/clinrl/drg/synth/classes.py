"""Which DRGs the synthetic data can label, and how MIMIC-IV would spell them in ``drgcodes``.

A supported class is a v34 DRG whose base DRG has a phrase bank in :data:`~clinrl.drg.synth.vocab.BASES`.
Every HCFA description offered for a class is checked at build time to map back to that DRG through
:meth:`Ontology.to_v34` (the same route the pipeline uses), so the synthetic labels are recoverable.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clinrl.drg.ontology import CCMCC, DRG, Ontology, canonical_key, default_table_dir, load_ontology
from clinrl.drg.synth.bases import BASES, BaseSpec

__all__ = [
    "DEFAULT_CLASSES",
    "SynthClass",
    "abbreviate",
    "select_classes",
    "supported_classes",
    "unmappable_descriptions",
]

DEFAULT_CLASSES = 20
# Severity order within a base: the class with the most documented conditions first.
_SEVERITY_ORDER = (CCMCC.WITH_MCC, CCMCC.WITH_CC_OR_CC_MCC, CCMCC.WITHOUT_MCC, CCMCC.WITHOUT_CC_MCC)
# Share of a base's admissions per severity class (renormalised over the classes a family has).
_SEVERITY_SHARE = {
    CCMCC.WITH_MCC: 0.4,
    CCMCC.WITH_CC_OR_CC_MCC: 0.35,
    CCMCC.WITHOUT_MCC: 0.45,
    CCMCC.WITHOUT_CC_MCC: 0.25,
}
_ABBREVIATIONS = {"WITH": "W", "WITHOUT": "W/O", "AND": "&"}


@dataclass(frozen=True)
class SynthClass:
    """A DRG the generator can label, with its phrase bank and its MIMIC-style HCFA descriptions.

    ``descriptions`` are current-version spellings (the CMS short title first), ``other_versions`` raw
    descriptions of other grouper versions taken from the mapping table; all map back to ``drg``.
    """

    drg: DRG
    base: BaseSpec
    family: frozenset[CCMCC]
    share: float  # this class's share of its base's admissions
    descriptions: tuple[str, ...]
    other_versions: tuple[str, ...]


def abbreviate(description: str) -> str:
    """MIMIC's abbreviated style: WITH→W, WITHOUT→W/O, AND→& (whole words), spaces collapsed."""
    return " ".join(_ABBREVIATIONS.get(word, word) for word in description.split())


def _maps_to(ontology: Ontology, raw: str, drg: DRG) -> bool:
    return ontology.to_v34(raw).drg == drg


def _mapping_rows(table_dir: Path) -> list[tuple[str, str]]:
    with (table_dir / "DRG34_Mapping.csv").open(newline="", encoding="utf-8") as handle:
        return [(r["raw_description"], r["DRG_34_description"]) for r in csv.DictReader(handle)]


@lru_cache(maxsize=4)
def _supported(table_dir: str | None) -> tuple[SynthClass, ...]:
    ontology = load_ontology(table_dir)
    directory = Path(table_dir) if table_dir else default_table_dir()
    mapping = _mapping_rows(directory)
    families: dict[str, list[DRG]] = {}
    for drg in ontology:
        families.setdefault(drg.principal, []).append(drg)
    classes = []
    for base in BASES:
        family = sorted(families[ontology.by_code(base.drg).principal], key=lambda d: _SEVERITY_ORDER.index(d.cc_mcc))
        kinds = frozenset(d.cc_mcc for d in family)
        total = sum(_SEVERITY_SHARE[d.cc_mcc] for d in family)
        for drg in family:
            candidates = [drg.short_title, abbreviate(drg.description), drg.description]
            descriptions = tuple(dict.fromkeys(c for c in candidates if _maps_to(ontology, c, drg)))
            others: list[str] = []
            for raw, target in mapping:
                if target != "NaN" and canonical_key(target) == canonical_key(drg.description):
                    others += [
                        v
                        for v in (abbreviate(raw), raw)
                        if v not in descriptions and v not in others and _maps_to(ontology, v, drg)
                    ]
            if not descriptions:
                raise ValueError(f"no MIMIC-style description of DRG {drg.code} maps back to it")
            classes.append(
                SynthClass(drg, base, kinds, _SEVERITY_SHARE[drg.cc_mcc] / total, descriptions, tuple(others))
            )
    return tuple(classes)


def supported_classes(table_dir: str | Path | None = None) -> list[SynthClass]:
    """Every class the generator supports, base by base (in :data:`BASES` order), most severe first."""
    return list(_supported(str(table_dir) if table_dir else None))


def select_classes(k: int, table_dir: str | Path | None = None) -> list[SynthClass]:
    """``k`` classes: whole bases in :data:`BASES` order while they fit; if ``k`` cannot be reached with
    whole bases, the next base contributes its most severe classes only."""
    every = supported_classes(table_dir)
    if not 1 <= k <= len(every):
        raise ValueError(f"classes must be between 1 and {len(every)}, got {k}")
    by_base: dict[str, list[SynthClass]] = {}
    for c in every:
        by_base.setdefault(c.base.key, []).append(c)
    chosen: list[SynthClass] = []
    left_over: list[list[SynthClass]] = []
    for group in by_base.values():
        if len(group) <= k - len(chosen):
            chosen += group
        else:
            left_over.append(group)
    if len(chosen) < k:
        chosen += left_over[0][: k - len(chosen)]
    order = {id(c): i for i, c in enumerate(every)}
    return sorted(chosen, key=lambda c: order[id(c)])


@lru_cache(maxsize=4)
def _unmappable(table_dir: str | None) -> tuple[str, ...]:
    ontology = load_ontology(table_dir)
    directory = Path(table_dir) if table_dir else default_table_dir()
    found = []
    for raw, target in _mapping_rows(directory):
        if target == "NaN":
            found += [v for v in dict.fromkeys((abbreviate(raw), raw)) if ontology.to_v34(v).how == "unmappable"]
    return tuple(found)


def unmappable_descriptions(table_dir: str | Path | None = None) -> list[str]:
    """Raw HCFA descriptions with no v34 equivalent (the mapping table's ``NaN`` rows), MIMIC-style."""
    return list(_unmappable(str(table_dir) if table_dir else None))
