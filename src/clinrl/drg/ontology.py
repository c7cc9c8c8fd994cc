"""MS-DRG version 34: the 757 DRGs, their MDC, type, base DRG, CC/MCC class, weight and GMLOS.

The answer vocabulary of the DRG task is the v34 description text, spelled exactly as CMS wrote it
(typos such as GASTROENTERISTIS kept). MIMIC-IV labels come from several grouper versions in an
abbreviated style, so they are mapped to v34 *by description* (REFERENCE A, "Data"):
normalise, exact match against the table, else the curated mapping table.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

__all__ = [
    "CCMCC",
    "DRG",
    "MDC_NAMES",
    "MappingResult",
    "Ontology",
    "canonical_key",
    "load_ontology",
    "normalize_description",
]

TABLE_FILES = ("DRG_34.tsv", "DRG_34_dissection.csv", "msdrg_v34.csv", "DRG34_Mapping.csv")


class CCMCC(IntEnum):
    """Severity class of a DRG, as coded in ``DRG_34_dissection.csv``."""

    WITHOUT_CC_MCC = 0
    WITH_CC_OR_CC_MCC = 1
    WITH_MCC = 2
    WITHOUT_MCC = 3
    NOT_APPLICABLE = 4

    @property
    def label(self) -> str:
        return _CCMCC_LABELS[self]


_CCMCC_LABELS = {
    CCMCC.WITHOUT_CC_MCC: "without CC/MCC",
    CCMCC.WITH_CC_OR_CC_MCC: "with CC or CC/MCC",
    CCMCC.WITH_MCC: "with MCC",
    CCMCC.WITHOUT_MCC: "without MCC",
    CCMCC.NOT_APPLICABLE: "not applicable",
}

# Major Diagnostic Categories (CMS titles, v34). "PRE" = pre-MDC, "99" = no MDC (981-989, 998, 999).
MDC_NAMES: dict[str, str] = {
    "PRE": "Pre-MDC (transplants, ECMO, tracheostomy)",
    "01": "Diseases and Disorders of the Nervous System",
    "02": "Diseases and Disorders of the Eye",
    "03": "Diseases and Disorders of the Ear, Nose, Mouth and Throat",
    "04": "Diseases and Disorders of the Respiratory System",
    "05": "Diseases and Disorders of the Circulatory System",
    "06": "Diseases and Disorders of the Digestive System",
    "07": "Diseases and Disorders of the Hepatobiliary System and Pancreas",
    "08": "Diseases and Disorders of the Musculoskeletal System and Connective Tissue",
    "09": "Diseases and Disorders of the Skin, Subcutaneous Tissue and Breast",
    "10": "Endocrine, Nutritional and Metabolic Diseases and Disorders",
    "11": "Diseases and Disorders of the Kidney and Urinary Tract",
    "12": "Diseases and Disorders of the Male Reproductive System",
    "13": "Diseases and Disorders of the Female Reproductive System",
    "14": "Pregnancy, Childbirth and the Puerperium",
    "15": "Newborns and Other Neonates with Conditions Originating in the Perinatal Period",
    "16": "Diseases and Disorders of Blood, Blood Forming Organs and Immunological Disorders",
    "17": "Myeloproliferative Diseases and Disorders, Poorly Differentiated Neoplasms",
    "18": "Infectious and Parasitic Diseases",
    "19": "Mental Diseases and Disorders",
    "20": "Alcohol/Drug Use and Alcohol/Drug Induced Organic Mental Disorders",
    "21": "Injuries, Poisonings and Toxic Effects of Drugs",
    "22": "Burns",
    "23": "Factors Influencing Health Status and Other Contacts with Health Services",
    "24": "Multiple Significant Trauma",
    "25": "Human Immunodeficiency Virus Infections",
    "99": "No MDC (procedures unrelated to principal diagnosis, ungroupable)",
}

_WS = re.compile(r"\s+")
# Order matters: W/O before the lone W.
_NORMALISATION_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bW/O\b"), "WITHOUT"),
    (re.compile(r"(?<=\s)W(?=\s|$)"), "WITH"),
    (re.compile(r"&"), "AND"),
    (re.compile(r","), ""),
    (re.compile(r"\bCATH\b"), "CATHETERIZATION"),
    (re.compile(r"\bPROC\b"), "PROCEDURES"),
)


def canonical_key(text: str) -> str:
    """Upper-case and collapse white space: the key under which answers and labels are compared."""
    return _WS.sub(" ", text).strip().upper()


def normalize_description(raw: str) -> str:
    """Expand MIMIC-IV's abbreviated DRG description the way the study did (REFERENCE A, "Data").

    W/O→WITHOUT, ``W``→WITH, &→AND, commas dropped, CATH→CATHETERIZATION, PROC→PROCEDURES, spaces
    collapsed. The result is a :func:`canonical_key`.
    """
    text = canonical_key(raw)
    for pattern, replacement in _NORMALISATION_RULES:
        text = pattern.sub(replacement, text)
    return canonical_key(text)


@dataclass(frozen=True)
class DRG:
    """One MS-DRG v34 entry."""

    code: int
    description: str
    mdc: str  # "01".."25", "PRE" or "99"
    type: Literal["MED", "SURG"] | None
    principal: str  # base DRG text (the description without its severity split)
    principal_id: int
    cc_mcc: CCMCC
    short_title: str
    weight: float | None
    gmlos: float | None

    @property
    def mdc_name(self) -> str:
        return MDC_NAMES.get(self.mdc, self.mdc)


@dataclass(frozen=True)
class MappingResult:
    """How a raw MIMIC-IV description mapped to v34.

    ``how`` is ``exact`` (normalised text is a v34 description), ``mapped`` (via the mapping table),
    ``unmappable`` (the table says ``NaN``) or ``unknown`` (in neither); ``drg`` is None for the last two.
    """

    drg: DRG | None
    how: Literal["exact", "mapped", "unmappable", "unknown"]
    normalized: str


class OntologyError(ValueError):
    """The MS-DRG tables are missing or inconsistent."""


class Ontology:
    """Lookups over the v34 tables. Build with :func:`load_ontology`."""

    def __init__(self, drgs: Iterable[DRG], mapping: dict[str, str | None]):
        self.drgs: tuple[DRG, ...] = tuple(sorted(drgs, key=lambda d: d.code))
        self._by_code = {d.code: d for d in self.drgs}
        self._by_key = {canonical_key(d.description): d for d in self.drgs}
        self._by_normalized = {normalize_description(d.description): d for d in self.drgs}
        self._mapping: dict[str, DRG | None] = {}
        for raw, target in mapping.items():
            if target is None:
                self._mapping[normalize_description(raw)] = None
                continue
            drg = self._by_key.get(canonical_key(target))
            if drg is None:
                raise OntologyError(f"mapping target {target!r} (for {raw!r}) is not a v34 description")
            self._mapping[normalize_description(raw)] = drg
        self._principals = sorted({d.principal for d in self.drgs})

    def __len__(self) -> int:
        return len(self.drgs)

    def __iter__(self):
        return iter(self.drgs)

    @property
    def principals(self) -> list[str]:
        """The base DRGs (340 in v34), sorted."""
        return list(self._principals)

    def by_code(self, code: int | str) -> DRG:
        """The DRG with this number (``"291"``, ``291`` or ``"DRG 291"``)."""
        try:
            number = int(str(code).upper().replace("DRG", "").strip())
        except ValueError:
            raise KeyError(f"not a DRG number: {code!r}") from None
        if number not in self._by_code:
            raise KeyError(f"DRG {number} is not in MS-DRG v34")
        return self._by_code[number]

    def find(self, description: str) -> DRG | None:
        """The DRG whose description equals ``description`` after upper-casing and collapsing spaces."""
        return self._by_key.get(canonical_key(description))

    def is_valid(self, description: str) -> bool:
        return self.find(description) is not None

    def to_v34(self, raw: str) -> MappingResult:
        """Map a raw (MIMIC-IV, any grouper version) description to v34."""
        normalized = normalize_description(raw)
        # The study dropped commas ("HIP,FOOT" -> "HIPFOOT"), which the mapping table's keys rely on;
        # reading a comma as a space as well only recovers labels that would otherwise be lost.
        candidates = dict.fromkeys([normalized, normalize_description(raw.replace(",", " "))])
        for key in candidates:
            drg = self._by_normalized.get(key)
            if drg is not None:
                return MappingResult(drg, "exact", key)
        for key in candidates:
            if key in self._mapping:
                target = self._mapping[key]
                return MappingResult(target, "mapped" if target else "unmappable", key)
        return MappingResult(None, "unknown", normalized)

    def mdc_families(self) -> dict[str, list[DRG]]:
        """DRGs grouped by MDC, in MDC order (PRE, 01..25, 99)."""
        order = list(MDC_NAMES)
        families: dict[str, list[DRG]] = {m: [] for m in order}
        for drg in self.drgs:
            families.setdefault(drg.mdc, []).append(drg)
        return {m: ds for m, ds in families.items() if ds}


def _read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    if not path.exists():
        raise OntologyError(f"missing MS-DRG table: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


def _float_or_none(value: str) -> float | None:
    return float(value) if value.strip() else None


def _build(directory: Path) -> Ontology:
    tsv = {int(r["DRG"]): r for r in _read_csv(directory / "DRG_34.tsv", "\t")}
    dissection = {int(r["DRG"]): r for r in _read_csv(directory / "DRG_34_dissection.csv")}
    weights = {int(r["drg"]): r for r in _read_csv(directory / "msdrg_v34.csv")}
    if not (tsv.keys() == dissection.keys() == weights.keys()):
        raise OntologyError(f"the MS-DRG tables in {directory} list different DRG numbers")
    drgs = []
    for code, row in tsv.items():
        cut, info = dissection[code], weights[code]
        if not (row["Description"] == cut["Description"] == info["description"]):
            raise OntologyError(f"DRG {code}: descriptions differ between the tables in {directory}")
        drgs.append(
            DRG(
                code=code,
                description=row["Description"],
                mdc=info["mdc"].strip(),
                type=(info["type"].strip() or None),  # type: ignore[arg-type]
                principal=cut["principal_diagnosis"],
                principal_id=int(cut["principal_diagnosis_label"]),
                cc_mcc=CCMCC(int(cut["CC/MCC"])),
                short_title=info["short_title"],
                weight=_float_or_none(info["weight"]),
                gmlos=_float_or_none(info["gmlos"]),
            )
        )
    mapping = {
        r["raw_description"]: (None if r["DRG_34_description"].strip() == "NaN" else r["DRG_34_description"])
        for r in _read_csv(directory / "DRG34_Mapping.csv")
    }
    return Ontology(drgs, mapping)


def default_table_dir() -> Path:
    """Where the vendored v34 tables live inside the installed package."""
    return Path(str(resources.files("clinrl") / "data" / "msdrg"))


@lru_cache(maxsize=8)
def _cached(directory: str) -> Ontology:
    return _build(Path(directory))


def load_ontology(directory: str | Path | None = None) -> Ontology:
    """Load (and cache) the v34 ontology from ``directory`` or from the package's own tables."""
    return _cached(str(Path(directory) if directory else default_table_dir()))
