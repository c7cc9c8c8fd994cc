"""``clinrl drg split``: a prepared ``train.parquet`` → ``sft.parquet`` + ``rl.parquet`` + a report.

Two modes (REFERENCE A):

- ratio: a stratified SFT/RL split of all rows, e.g. 90 % SFT / 10 % RL for the final model (the study
  also ran 50 / 75 / 95 %).
- small ("DRG-small", used by every ablation): drop DRGs with fewer than ``min_cases`` rows, take a
  ``cold_start_fraction`` (1 %) stratified cold-start SFT set, then ``rl_fraction`` (20 %) of the rest
  for RL; the remaining rows are unused and counted.

Both outputs keep every source column and add ``solution``, the gold v34 description as the ontology
spells it (what the reward functions compare against). Prompts are not baked in — they need the
tokenizer for truncation; map rows with :func:`clinrl.drg.prompts.to_rl_rows` / ``to_sft_rows`` at
training time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinrl.cards import data_kind, write_dataset_card
from clinrl.drg.ontology import Ontology, load_ontology
from clinrl.drg.prep.prepared import check_prepared_input
from clinrl.drg.prep.stratify import stratified_sample, stratified_split
from clinrl.errors import ClinrlError, DataError
from clinrl.io import atomic_path, read_parquet_checked, write_json_atomic

__all__ = ["REQUIRED_COLUMNS", "SplitConfig", "add_solution", "read_prepared", "split_frame", "split_prepared"]

REQUIRED_COLUMNS = ("text", "description")


@dataclass(frozen=True)
class SplitConfig:
    """How to split. ``small=False`` uses ``sft_ratio``; ``small=True`` uses the three DRG-small knobs."""

    small: bool = False
    sft_ratio: float = 0.9
    min_cases: int = 5
    cold_start_fraction: float = 0.01
    rl_fraction: float = 0.2
    seed: int = 42

    def validate(self) -> None:
        """Raise :class:`ClinrlError` for an out-of-range setting."""
        checks = (
            [("cold_start_fraction", self.cold_start_fraction), ("rl_fraction", self.rl_fraction)]
            if self.small
            else [("sft_ratio", self.sft_ratio)]
        )
        for name, value in checks:
            if not 0.0 < value < 1.0:
                raise ClinrlError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if self.small and self.min_cases < 1:
            raise ClinrlError(f"min_cases must be at least 1, got {self.min_cases}")


def read_prepared(path: str | Path) -> pd.DataFrame:
    """Read a prepared parquet and check its required columns (clear errors for user mistakes) and,
    for a ``drg prepare`` output, that it belongs to one finished run."""

    frame = read_parquet_checked(path, REQUIRED_COLUMNS, made_by="clinrl drg prepare")
    check_prepared_input(path)
    return frame


def add_solution(frame: pd.DataFrame, ontology: Ontology, path: object = None) -> pd.DataFrame:
    """A copy of ``frame`` with ``solution`` = the v34 spelling of ``description``.

    Raises DataError (naming the row's ``hadm_id`` when present) for an empty text or a description that
    is not a v34 DRG: such a row would crash the reward functions mid-training.
    """
    ids = frame["hadm_id"].tolist() if "hadm_id" in frame.columns else list(range(1, len(frame) + 1))
    spelled: dict[Any, str | None] = {}
    solutions = []
    for row_id, description in zip(ids, frame["description"].tolist()):
        if description not in spelled:
            drg = ontology.find(description) if isinstance(description, str) else None
            spelled[description] = drg.description if drg else None
        if spelled[description] is None:
            raise DataError(
                f"{description!r} is not an MS-DRG v34 description", path=path, row=row_id, field="description"
            )
        solutions.append(spelled[description])
    texts = frame["text"]
    bad_text = ~texts.map(lambda t: isinstance(t, str) and bool(t.strip()))
    if bad_text.any():
        first = int(np.flatnonzero(bad_text.to_numpy())[0])
        raise DataError("empty or missing course text", path=path, row=ids[first], field="text")
    return frame.assign(solution=solutions)


def _class_counts(labels: pd.Series) -> dict[str, int]:
    return {"rows": int(len(labels)), "classes": int(labels.nunique())}


def split_frame(frame: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split a frame that has ``solution`` into ``(sft, rl, report)``; rows keep their source order."""
    config.validate()
    labels = frame["solution"]
    report: dict[str, Any] = {"mode": "small" if config.small else "ratio", "config": asdict(config)}
    report["input"] = _class_counts(labels)
    counts = labels.value_counts()
    report["input"]["singleton_classes"] = int((counts == 1).sum())
    try:
        if config.small:
            rare = counts[counts < config.min_cases]
            kept = frame[~labels.isin(rare.index)]
            report["dropped_rare"] = {"classes": int(len(rare)), "rows": int(rare.sum())}
            sft_idx = stratified_sample(kept["solution"].tolist(), config.cold_start_fraction, config.seed)
            in_sft = np.zeros(len(kept), dtype=bool)
            in_sft[sft_idx] = True
            rest = kept.iloc[np.flatnonzero(~in_sft)]
            rl_idx = stratified_sample(rest["solution"].tolist(), config.rl_fraction, config.seed)
            sft, rl = kept.iloc[sft_idx], rest.iloc[rl_idx]
            report["unused_rows"] = int(len(rest) - len(rl_idx))
        else:
            sft_idx, rl_idx = stratified_split(labels.tolist(), 1.0 - config.sft_ratio, config.seed)
            sft, rl = frame.iloc[sft_idx], frame.iloc[rl_idx]
            report["dropped_rare"] = {"classes": 0, "rows": 0}
            report["unused_rows"] = 0
    except ValueError as err:
        raise ClinrlError(f"cannot split: {err}") from None
    report["sft"] = _class_counts(sft["solution"])
    report["rl"] = _class_counts(rl["solution"])
    report["classes_only_in_sft"] = int(len(set(sft["solution"]) - set(rl["solution"])))
    report["classes_only_in_rl"] = int(len(set(rl["solution"]) - set(sft["solution"])))
    return sft.reset_index(drop=True), rl.reset_index(drop=True), report


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")


def split_prepared(
    data: str | Path,
    out: str | Path,
    config: SplitConfig = SplitConfig(),
    *,
    ontology: Ontology | str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Read ``data``, split it, write ``out/sft.parquet``, ``out/rl.parquet``, ``out/split_report.json``."""
    from tqdm import tqdm

    config.validate()
    onto = ontology if isinstance(ontology, Ontology) else load_ontology(ontology)
    out = Path(out)
    frame = add_solution(read_prepared(data), onto, path=data)  # before the bar: an input error is one line
    with tqdm(total=3, desc="drg split", unit="step", disable=not progress) as bar:
        sft, rl, report = split_frame(frame, config)
        bar.update()
        _write_parquet(sft, out / "sft.parquet")
        bar.update()
        _write_parquet(rl, out / "rl.parquet")
        bar.update()
    kind = data_kind(data)
    report = {"source": str(data), "data_kind": kind, **report, "outputs": {"sft": "sft.parquet", "rl": "rl.parquet"}}
    counts = {side: report[side] for side in ("input", "sft", "rl")}
    write_dataset_card(out, report["outputs"], title="DRG coding SFT/RL split (clinrl drg split)", kind=kind,
                       counts=counts, made_by="clinrl drg split")  # fmt: skip
    write_json_atomic(out / "split_report.json", report)
    return report
