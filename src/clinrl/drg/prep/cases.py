"""Reading cases — ``{hadm_id, text, solution}`` rows of a prepared split — in one place, for evaluation,
difficulty tagging and CoT distillation (SFT and GRPO read their split frames with
:func:`clinrl.training.read_split`)."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from clinrl.drg.ontology import load_ontology
from clinrl.drg.prep.prepared import check_prepared_input
from clinrl.errors import DataError, check_limit

__all__ = ["case_key", "load_cases", "read_cases"]


def load_cases(data: Any, limit: int | None = None, *, require_id: bool = False) -> list[dict[str, Any]]:
    """Cases ``{hadm_id, text, solution}`` from a DataFrame or a parquet/JSONL file (``solution`` from
    ``description`` when absent; ``hadm_id`` defaults to the row number unless ``require_id``); the first
    ``limit`` rows. Raises DataError for an unreadable file, a missing column or a repeated hadm_id."""
    import pandas as pd

    from clinrl.drg.prep.split import add_solution  # lazy: pulls pandas

    check_limit(limit)
    path = None
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        path = Path(data)
        if not path.is_file():
            raise DataError("file not found", path=path)
        try:
            frame = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_parquet(path)
        except Exception as err:  # pandas/pyarrow raise several types for unreadable input
            raise DataError(f"cannot read ({type(err).__name__}: {err})", path=path) from None

        check_prepared_input(path)  # a `drg prepare` output must come from one finished run
    if limit is not None:
        frame = frame.head(limit)
    if "text" not in frame.columns:
        raise DataError("missing column", path=path, field="text")
    if "hadm_id" not in frame.columns:
        if require_id:
            raise DataError("missing column", path=path, field="hadm_id")
        frame = frame.assign(hadm_id=range(1, len(frame) + 1))
    if "solution" not in frame.columns:
        if "description" not in frame.columns:
            raise DataError("missing column (need solution or description)", path=path, field="solution")
        frame = add_solution(frame, load_ontology(), path=path)
    ids = [_plain(h) for h in frame["hadm_id"].tolist()]
    if len(set(map(str, ids))) != len(ids):
        raise DataError("repeated hadm_id (cases are keyed on it)", path=path, field="hadm_id")
    return [{"hadm_id": h, "text": t, "solution": s} for h, t, s in zip(ids, frame["text"], frame["solution"])]


def _plain(value: Any) -> Any:
    """numpy scalars → Python ints/strings, so that ids survive a JSON round trip unchanged."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


def case_key(value: Any) -> Any:
    """A hadm_id as a comparable key: integral numbers (and digit strings) as int, else the string."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):  # exact: float() would merge ids above 2**53
        return int(value)
    if isinstance(value, str):
        return int(value) if value.strip().lstrip("-").isdigit() else value
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isfinite(as_float) and as_float == int(as_float):
        return int(as_float)
    return str(value)


def read_cases(path: str | Path) -> list[dict[str, Any]]:
    """Cases of a parquet/JSONL split with a required ``hadm_id``, made a comparable key (:func:`case_key`)."""
    return [{**case, "hadm_id": case_key(case["hadm_id"])} for case in load_cases(path, require_id=True)]
