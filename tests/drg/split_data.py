"""A small hand-made prepared ``train.parquet`` for the split tests (no clinical text)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinrl.drg.ontology import load_ontology

# DRG code -> number of admissions: big, medium, rare (< 5) and singleton classes.
CLASS_SIZES = {291: 120, 292: 60, 871: 45, 193: 30, 195: 12, 380: 6, 383: 5, 652: 4, 8: 3, 293: 2, 999: 1}


def make_prepared_frame(seed: int = 0) -> pd.DataFrame:
    """Rows shaped like `clinrl drg prepare` output; descriptions in mixed case to exercise `solution`."""
    onto = load_ontology()
    rng = np.random.default_rng(seed)
    codes = np.array([c for c, k in CLASS_SIZES.items() for _ in range(k)])
    rng.shuffle(codes)
    rows = []
    for i, code in enumerate(codes):
        drg = onto.by_code(int(code))
        rows.append(
            {
                "hadm_id": 20_000_000 + i,
                "subject_id": 10_000_000 + i // 2,
                "text": f"Synthetic course {i}: admitted, treated, discharged home.",
                "drg": drg.code,
                "description": drg.description.lower() if i % 7 == 0 else drg.description,
                "mdc": drg.mdc,
                "principal": drg.principal,
                "cc_mcc": int(drg.cc_mcc),
            }
        )
    return pd.DataFrame(rows)


def write_prepared(path: Path, frame: pd.DataFrame | None = None) -> Path:
    (frame if frame is not None else make_prepared_frame()).to_parquet(path, index=False)
    return path
