"""MS-DRG knowledge rows for SFT (REFERENCE A, "SFT"): the full v34 list and one list per MDC family.

With 27 families (pre-MDC, MDC 01-25, no MDC) this gives the study's 28 rows. Each row is a
prompt-completion pair in TRL's conversational format, so it mixes with the distilled-reasoning rows.
"""

from __future__ import annotations

from clinrl.drg.ontology import MDC_NAMES, Ontology, load_ontology

__all__ = ["knowledge_rows"]

FULL_LIST_QUESTION = "List every MS-DRG version 34 description, one per line."
FAMILY_QUESTION = "List the MS-DRG version 34 descriptions in {name} ({code}), one per line."


def _row(question: str, descriptions: list[str]) -> dict[str, list[dict[str, str]]]:
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": "\n".join(descriptions)}],
    }


def knowledge_rows(ontology: Ontology | None = None) -> list[dict[str, list[dict[str, str]]]]:
    """The full description list, then one row per MDC family, in MDC order."""
    onto = ontology or load_ontology()
    rows = [_row(FULL_LIST_QUESTION, [d.description for d in onto])]
    for mdc, drgs in onto.mdc_families().items():
        code = "pre-MDC" if mdc == "PRE" else ("no MDC" if mdc == "99" else f"MDC {mdc}")
        question = FAMILY_QUESTION.format(name=MDC_NAMES.get(mdc, mdc), code=code)
        rows.append(_row(question, [d.description for d in drgs]))
    return rows
