"""Model and dataset cards (``README.md``) written by clinrl, and the rule on public hub pushes.

Every trained folder (``drg sft``, ``drg grpo``, ``notes grpo``, ``prm train``, ``clinrl merge``) gets a
model card: YAML front matter (licence, base model, tags, library) and sections on the base model, the
training data and its licence, the resolved recipe (secrets redacted), the prompt format (a template with a
placeholder, never patient text), the final metrics from the trainer's log history and how to evaluate it.
TRL writes its own generic card (``create_model_card``) at every checkpoint and on save; :func:`install`
replaces that method on the trainer so that the card TRL writes during training is already ours, and
:func:`write_model_card` writes the final one after the model is saved (after peft's card, too).

Prepared data folders (``drg prepare``, ``drg split``, ``prm build``) get a dataset card whose ``configs:``
front matter names the splits, so that ``datasets.load_dataset(folder)`` returns ``train``/``test`` or
``sft``/``rl`` instead of one merged ``train`` split; it holds counts and the licence notice, no text.

Where data came from is read from what clinrl wrote beside it (:func:`data_kind`): ``synth_manifest.json``
(``clinrl drg synth``), ``prepare_report.json``/``split_report.json`` (which record the kind at prepare
time), the bundled PRM-Clinic files. Data of unknown origin is treated as restricted.

Public pushes (:func:`check_hub_push`): a recipe that sets ``training.push_to_hub`` gets a *private* repository
(``hub_private_repo`` defaults to true); a public one (``hub_private_repo: false``) needs the recipe's
``data_allows_public_release: true``, and is refused outright when the data is MIMIC-IV, whose licence
forbids sharing a model trained on it in public.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clinrl.drg.prompts import build_messages
from clinrl.errors import ClinrlError
from clinrl.io import write_text_atomic
from clinrl.notes.dialogues import prompt_messages
from clinrl.prm import demo_data_dir

__all__ = [
    "CARD_FILE",
    "DATA_KINDS",
    "MARKER",
    "DataSource",
    "HubPushError",
    "check_hub_push",
    "data_kind",
    "data_sources",
    "most_restricted",
    "raw_notes_kind",
    "redact",
    "remove_dataset_card",
    "install",
    "model_card",
    "write_dataset_card",
    "write_merged_card",
    "write_model_card",
]

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
MARKER = "<!-- written by clinrl.cards -->"  # tells our card from TRL's or peft's


@dataclass(frozen=True)
class _Licence:
    """What a kind of data allows: ``public`` False = never in public, None = only when the user says so."""

    name: str
    notice: str
    public: bool | None


MIMIC_NOTICE = (
    "MIMIC-IV / MIMIC-IV-Note, under the PhysioNet Credentialed Health Data License 1.5.0. Only credentialed "
    "users who signed the data use agreement may access the data, and a model trained on it must not be "
    "shared in public (no public hub repository): share it, if at all, with credentialed users under the "
    "same licence (e.g. through PhysioNet)."
)

DATA_KINDS: dict[str, _Licence] = {
    "mimic-iv": _Licence("physionet-credentialed-health-data-1.5.0", MIMIC_NOTICE, False),
    "synthetic": _Licence("synthetic", "SYNTHETIC notes from `clinrl drg synth`: no patient data.", True),
    "prm-clinic": _Licence("mit", "PRM-Clinic data (the PRM-Clinic study's release), MIT licence.", True),
    "ms-drg": _Licence("public-domain", "CMS MS-DRG v34 definitions (public domain).", True),
    "unknown": _Licence(
        "unknown",
        "Provenance not recorded by clinrl: treat as restricted (possibly patient data) until you know its licence.",
        None,
    ),
}


class HubPushError(ClinrlError):
    """A hub push the data's licence, or the recipe, does not allow."""


# ------------------------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class DataSource:
    """One input of a run: its role, the path as given (never its content) and its kind of data."""

    role: str
    path: str
    kind: str

    @property
    def licence(self) -> _Licence:
        return DATA_KINDS.get(self.kind, DATA_KINDS["unknown"])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_bundled_prm(path: Path) -> bool:
    """Whether ``path`` is one of the bundled PRM-Clinic files (or a copy under the same name)."""

    try:
        if path.resolve().parent == demo_data_dir().resolve():
            return True
    except OSError:
        pass
    return path.name in {"prm_clinic_gold.json.gz", "verification_dev_gold.json.gz", "verification_dev_error.json.gz"}


def data_kind(path: str | Path | None, _depth: int = 0) -> str:
    """The kind of data at ``path`` (a key of :data:`DATA_KINDS`), from the files clinrl wrote beside it.

    ``demo`` and the bundled PRM-Clinic files → ``prm-clinic``; a folder (or a file's folder) with
    ``synth_manifest.json`` → ``synthetic``; a ``drg split``/``drg prepare`` output → the kind its report
    recorded (older reports: the raw notes' folder is checked for a synth manifest, else ``mimic-iv`` — a
    prepared folder is MIMIC-shaped by construction); a ``prm build`` folder → the kinds of its inputs;
    anything else → ``unknown`` (treated as restricted)."""
    if path is None or _depth > 4:
        return "unknown"
    text = str(path)
    if text == "demo":
        return "prm-clinic"
    p = Path(text)
    if _is_bundled_prm(p):
        return "prm-clinic"
    folder = p if p.is_dir() else p.parent
    if (folder / "synth_manifest.json").is_file():
        return "synthetic"
    for report_name in ("split_report.json", "prepare_report.json", "build_report.json"):
        report = _read_json(folder / report_name)
        if report is None:
            continue
        if report.get("data_kind") in DATA_KINDS:
            return report["data_kind"]
        if report_name == "split_report.json" and report.get("source"):
            return data_kind(report["source"], _depth + 1)
        if report_name == "prepare_report.json":
            raw = (report.get("discharge") or {}).get("path")
            return raw_notes_kind(raw) if raw else "mimic-iv"
        if report_name == "build_report.json":
            return most_restricted([data_kind(f, _depth + 1) for f in _build_inputs(report)] or ["unknown"])
    return "unknown"


def raw_notes_kind(discharge: str | Path) -> str:
    """The kind of a raw discharge-notes file given to ``drg prepare``: ``synthetic`` when ``clinrl drg synth``
    wrote it (its manifest sits beside it), else ``mimic-iv`` (the MIMIC-IV-Note schema is what prepare reads)."""
    return "synthetic" if (Path(discharge).parent / "synth_manifest.json").is_file() else "mimic-iv"


def _build_inputs(report: Mapping[str, Any]) -> list[str]:
    """The input files a ``prm build`` report names (``settings.gold`` and ``settings.errors``)."""
    settings = report.get("settings") or {}
    return [str(f) for key in ("gold", "errors") for f in (settings.get(key) or [])]


_ORDER = ("mimic-iv", "unknown", "prm-clinic", "synthetic", "ms-drg")


def most_restricted(kinds: Sequence[str]) -> str:
    return min(kinds, key=lambda k: _ORDER.index(k) if k in _ORDER else 1)


def _prm_sources(config: Mapping[str, Any]) -> list[DataSource]:
    out = []
    if config.get("train_data"):
        out.append(
            DataSource(
                "PRM training set (`clinrl prm build`)", str(config["train_data"]), data_kind(config["train_data"])
            )
        )
    for gold in config.get("gold") or []:
        out.append(DataSource("gold notes", str(gold), data_kind(gold)))
    if config.get("synthesize"):
        out.append(DataSource(f"rule-based error samples ({config['synthesize']} per gold note)", "(derived from the gold notes)",
                              most_restricted([s.kind for s in out] or ["unknown"])))  # fmt: skip
    for notes in config.get("eval_notes") or []:
        out.append(DataSource("evaluation notes (loss during training)", str(notes), data_kind(notes)))
    return out


def data_sources(kind: str, config: Mapping[str, Any]) -> list[DataSource]:
    """The inputs of a run of ``kind`` (see :data:`_KINDS`) from its resolved recipe."""
    if kind == "prm":
        return _prm_sources(config)
    if kind == "notes-grpo":
        sources = [DataSource("dialogues of the gold notes (train side of `clinrl notes split`)", str(config.get("data")),
                              data_kind(config.get("data")))]  # fmt: skip
        prm_report = _read_json(Path(str(config.get("prm"))) / "train_report.json")
        prm_kinds = [s.kind for s in _prm_sources(prm_report.get("config", {}))] if prm_report else []
        sources.append(
            DataSource("reward model (PRM)", str(config.get("prm")), most_restricted(prm_kinds or ["unknown"]))
        )
        return sources
    data = config.get("data")
    sources = [DataSource("training split (`clinrl drg split`)", str(data), data_kind(data))]
    if kind == "drg-sft" and config.get("traces"):
        # distilled from the same notes: they carry the notes' licence
        sources.append(
            DataSource("reasoning traces (distilled from the training notes)", str(config["traces"]), sources[0].kind)
        )
    if kind == "drg-sft" and config.get("knowledge"):
        sources.append(DataSource("MS-DRG knowledge rows (28, packaged)", "clinrl.drg.train.knowledge", "ms-drg"))
    if config.get("difficulty_file") and config.get("curriculum", "none") != "none":
        sources.append(
            DataSource("difficulty tags (`clinrl drg difficulty`)", str(config["difficulty_file"]), sources[0].kind)
        )
    return sources


# ------------------------------------------------------------------------------------------- hub pushes


def check_hub_push(config: Any, args: Any = None) -> None:
    """Refuse a hub push the data do not allow; make pushes private by default. One-line :class:`HubPushError`.

    ``args``: the built ``TrainingArguments`` (TRL config), whose ``hub_private_repo`` is set to True when
    unset; without them the recipe's ``training:`` mapping is checked (at recipe load, before anything runs).
    Nothing happens unless ``push_to_hub`` is on. A public repository (``hub_private_repo: false``) needs
    ``data_allows_public_release: true`` in the recipe, and is refused for MIMIC-IV data whatever it says."""
    trl = getattr(config, "training", None) or {}
    push = getattr(args, "push_to_hub", False) if args is not None else trl.get("push_to_hub", False)
    if not push:
        return
    private = getattr(args, "hub_private_repo", None) if args is not None else trl.get("hub_private_repo")
    if private is None:
        if args is not None:
            args.hub_private_repo = True
        return
    if private:
        return
    sources = data_sources(_kind_of(config), _as_dict(config))
    restricted = [s for s in sources if s.licence.public is False]
    if restricted:
        raise HubPushError(
            f"refusing a public hub repository: {restricted[0].role} {restricted[0].path} is MIMIC-IV data (PhysioNet "
            "Credentialed Health Data License); set training.hub_private_repo: true or do not push"
        )
    if not getattr(config, "data_allows_public_release", False):
        kinds = ", ".join(sorted({s.kind for s in sources}))
        raise HubPushError(
            f"refusing a public hub repository (training.hub_private_repo: false) for data of kind {kinds}: set "
            "data_allows_public_release: true in the recipe if the data's licence allows it, or push privately"
        )


# ------------------------------------------------------------------------------------------- model cards


@dataclass(frozen=True)
class _Kind:
    """How to describe one kind of trained model."""

    title: str
    tags: tuple[str, ...]
    pipeline: str


_KINDS: dict[str, _Kind] = {
    "drg-sft": _Kind("DRG coding, supervised fine-tuning (clinrl drg sft)", ("drg-coding", "sft"), "text-generation"),
    "drg-grpo": _Kind(
        "DRG coding, GRPO (clinrl drg grpo)", ("drg-coding", "grpo", "reinforcement-learning"), "text-generation"
    ),
    "notes-grpo": _Kind(
        "Assessment & Plan writing, GRPO with a PRM reward (clinrl notes grpo)",
        ("clinical-notes", "grpo", "reinforcement-learning"),
        "text-generation",
    ),  # fmt: skip
    "prm": _Kind(
        "Process reward model for clinical notes (clinrl prm train)",
        ("process-reward-model", "clinical-notes"),
        "token-classification",
    ),  # fmt: skip
}
_CONFIG_KINDS = {"DRGSFTConfig": "drg-sft", "DRGGRPOConfig": "drg-grpo", "NotesGRPOConfig": "notes-grpo",
                 "PRMTrainConfig": "prm"}  # fmt: skip


def _kind_of(config: Any) -> str:
    name = type(config).__name__
    if name not in _CONFIG_KINDS:
        raise ClinrlError(f"no model card for a {name}; known: {', '.join(_CONFIG_KINDS)}")
    return _CONFIG_KINDS[name]


def _as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


# hub_token, api_key, password …; not max_prompt_tokens or the PRM's `tokens` (plural: counts and token sets)
_SECRET = re.compile(r"(^|_)(token|secret|password|api_?key|credentials?)$", re.IGNORECASE)


def redact(value: Any) -> Any:
    """``value`` as plain data (enums by value, other objects as text) with the value of every key that looks
    like a secret (token, api_key, …) replaced."""
    if isinstance(value, Mapping):
        return {k: ("<redacted>" if _SECRET.search(str(k)) and v not in (None, "", False) else redact(v))
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, enum.Enum):  # typed recipe values (SchedulerType …) as the recipe spells them
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _base_model(kind: str, config: Mapping[str, Any]) -> str:
    return str(config.get("model_name_or_path") if kind == "prm" else config.get("model"))


def _hub_id(name: str) -> str | None:
    """``name`` when it looks like a hub repository id (``owner/name``, not a local folder), else None: the
    ``base_model`` metadata must be a hub id, a local path would be rejected on upload."""
    if Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return None
    return name if re.fullmatch(r"[\w.-]+/[\w.-]+", name) else None


def _prompt_section(kind: str, config: Mapping[str, Any]) -> list[str]:
    """The prompt template, with a placeholder where the patient text goes (never real text)."""
    if kind in ("drg-sft", "drg-grpo"):
        example = build_messages("<the brief hospital course of a discharge summary>")
        return [
            "Template `clinrl.drg.prompts.build_messages` (system prompt `SYSTEM_PROMPT`, user turn: MS-DRG "
            f"primer, question, the hospital course, cut to `max_prompt_tokens`={config.get('max_prompt_tokens')} "
            f"tokens by `{config.get('truncation', 'head')}`), rendered with the model's chat template. Target: "
            "`<think>reasoning</think>` then `<answer>DRG DESCRIPTION</answer>`.",
            "", "```json", json.dumps(example, indent=2, ensure_ascii=False), "```",
        ]  # fmt: skip
    if kind == "notes-grpo":
        example = prompt_messages("<the doctor-patient dialogue>")
        return [
            "Template `clinrl.notes.dialogues.prompt_messages` (dialogue cut to "
            f"`max_dialogue_tokens`={config.get('max_dialogue_tokens')}); the completion is an Assessment & "
            "Plan as numbered problems with steps.",
            "", "```json", json.dumps(example, indent=2, ensure_ascii=False), "```",
        ]  # fmt: skip
    return [
        f"Input: the PRM string (`clinrl.prm.format`; special tokens `{config.get('tokens')}`, head "
        f"`{config.get('head')}`, objective `{config.get('objective')}`): the dialogue, then the note with one label "
        "slot after every step, problem and completeness marker; the model predicts '+' or '-' at each slot. "
        "`clinrl prm render` shows the layout on your own notes; `clinrl_prm.json` in this folder holds the settings.",
    ]


def _eval_section(kind: str, out: str) -> list[str]:
    if kind in ("drg-sft", "drg-grpo"):
        return ["```bash", f"clinrl drg eval --model {out} --data <prepared>/test.parquet --out {out}/eval", "```",
                "Pass@1 and Pass@k, base-DRG and CC/MCC accuracy (`metrics.json`, `summary.md`)."]  # fmt: skip
    if kind == "notes-grpo":
        return [
            "Held-out dialogues (`dialogue_split.json`: case ids of each side): generate notes for them and score",
            "them with the PRM, e.g. `python benchmarks/notes_prm_rl.py` (held-out PRM reward, Best-of-N) or",
            "```bash",
            "clinrl prm score --model <PRM folder> --notes <generated notes> --json scores.json",
            "```",
        ]
    return ["```bash",
            f"clinrl prm eval-selection --scorer prm --model {out} --gold <verification gold> --errors <error samples> "
            f"--json {out}/selection.json", "```",
            "Selection accuracy (the gold note ranked above its error samples) per data source."]  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def final_metrics(log_history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last logged value of every numeric metric (``loss``, ``reward``, ``eval_loss``, the end-of-run
    ``train_loss``/``train_runtime`` …), sorted by name; ``step`` is the last logged step."""
    last: dict[str, Any] = {}
    for entry in log_history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch",):
                last[key] = value
    return dict(sorted(last.items()))


def model_card(
    kind: str,
    config: Mapping[str, Any],
    log_history: Sequence[Mapping[str, Any]] = (),
    *,
    out: str | Path = ".",
    lora: bool = False,
    extra: Sequence[str] = (),
) -> str:
    """The card text of a model of ``kind`` trained with the resolved recipe ``config``."""
    spec = _KINDS[kind]
    base = _base_model(kind, config)
    sources = data_sources(kind, config)
    restricted = any(s.licence.public is False for s in sources)
    licences = sorted({s.licence.name for s in sources})
    front: dict[str, Any] = {
        "library_name": "peft" if lora else "transformers",
        "license": "other",
        "license_name": "physionet-credentialed-health-data-1.5.0" if restricted else "see-model-card",
        "tags": ["clinrl", *spec.tags, *(["mimic-iv", "restricted-data"] if restricted else [])],
        "pipeline_tag": spec.pipeline,
    }
    if restricted:
        front["license_link"] = "https://physionet.org/content/mimiciv/view-license/"
    if _hub_id(base):
        front["base_model"] = base
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", MARKER, "", f"# {Path(str(out)).name or 'model'}", "",
             f"{spec.title}. Written by clinrl; no patient text is in this card.", ""]  # fmt: skip
    lines += ["## Base model", "", f"`{base}`" + (" (LoRA adapter: load it on top of the base model, or run "
              "`clinrl merge`)" if lora else ""), ""]  # fmt: skip
    lines += ["## Training data and licence", "", "| role | path | data | licence |", "|---|---|---|---|"]
    lines += [f"| {s.role} | `{s.path}` | {s.kind} | {s.licence.name} |" for s in sources]
    lines += [""] + [f"- **{k}**: {DATA_KINDS[k].notice}" for k in sorted({s.kind for s in sources})]
    if restricted:
        lines += ["", "**Do not publish this model.** It was trained on credentialed data; clinrl refuses to push it "
                  "to a public hub repository."]  # fmt: skip
    lines += [
        "",
        f"Licence names in this run: {', '.join(licences)}. The base model's own licence applies as well.",
        "",
    ]
    lines += ["## Prompt format", "", *_prompt_section(kind, config), ""]
    lines += ["## Recipe", "", "The resolved recipe (secrets redacted; also `clinrl_recipe.json` / `train_report.json`):", "",
              "```yaml", yaml.safe_dump(redact(dict(config)), sort_keys=False, allow_unicode=True).rstrip(), "```", ""]  # fmt: skip
    metrics = final_metrics(log_history)
    lines += ["## Final metrics", ""]
    if metrics:
        lines += ["From the trainer's log history (`trainer_state.json`), the last logged value of each:", "",
                  "| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]]  # fmt: skip
    else:
        lines += ["No metrics were logged."]
    lines += ["", "## How to evaluate", "", *_eval_section(kind, str(out)), *extra]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(out: str | Path, config: Any, log_history: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write the model card of a run with recipe ``config`` (a recipe dataclass) to ``out/README.md``."""

    kind = _kind_of(config)
    data = _as_dict(config)
    lora = bool((data.get("lora") or {}).get("enabled"))
    path = Path(out) / CARD_FILE
    write_text_atomic(path, model_card(kind, data, log_history, out=out, lora=lora))
    return path


def install(trainer: Any, config: Any) -> None:
    """Make ``trainer.create_model_card`` (called by TRL at every checkpoint and by ``push_to_hub``) write
    our card instead of TRL's/transformers' default, on the main process."""

    def create_model_card(*_args: Any, **_kwargs: Any) -> None:
        if trainer.is_world_process_zero():
            write_model_card(trainer.args.output_dir, config, trainer.state.log_history)

    trainer.create_model_card = create_model_card


def write_merged_card(adapter: str | Path, out: str | Path, base: str) -> Path:
    """The card of a ``clinrl merge`` output: the adapter's clinrl card (library ``transformers``, plus a
    note on the merge), or, when the adapter has none, a short card whose data is of unknown origin."""

    adapter, out = Path(adapter), Path(out)
    source = adapter / CARD_FILE
    text = source.read_text(encoding="utf-8") if source.is_file() else ""
    note = (f"\n## Merge\n\nLoRA adapter `{adapter}` merged into `{base}` with `clinrl merge`; this folder is a full "
            "model (library transformers).\n")  # fmt: skip
    if MARKER in text:
        text = text.replace("library_name: peft", "library_name: transformers", 1).rstrip() + "\n" + note
    else:
        front = {
            "library_name": "transformers",
            "license": "other",
            "license_name": "see-model-card",
            "tags": ["clinrl"],
        }
        if _hub_id(base):
            front["base_model"] = base
        text = ("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + MARKER + f"\n\n# {out.name}\n\n"
                f"## Training data and licence\n\n- **unknown**: {DATA_KINDS['unknown'].notice}\n" + note)  # fmt: skip
    path = out / CARD_FILE
    write_text_atomic(path, text)
    return path


# ------------------------------------------------------------------------------------------- dataset cards


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def remove_dataset_card(folder: str | Path) -> None:
    """Delete ``folder/README.md`` if clinrl wrote it (a folder's outputs are being replaced)."""
    path = Path(folder) / CARD_FILE
    try:
        if MARKER in path.read_text(encoding="utf-8"):
            path.unlink()
    except (OSError, UnicodeDecodeError):
        pass


def write_dataset_card(folder: str | Path, splits: Mapping[str, str], *, title: str, kind: str,
                       counts: Mapping[str, Any] | None = None, made_by: str = "") -> Path:  # fmt: skip
    """Write ``folder/README.md``: ``configs:`` front matter mapping split names to ``splits`` files, so that
    ``datasets.load_dataset(folder)`` returns those splits; rows per split, ``counts`` (no text) and the
    licence notice of ``kind``."""

    folder = Path(folder)
    licence = DATA_KINDS.get(kind, DATA_KINDS["unknown"])
    front = {
        "configs": [{"config_name": "default", "data_files": [{"split": s, "path": f} for s, f in splits.items()]}],
        "license": "other",
        "license_name": licence.name,
        "tags": ["clinrl", kind],
    }
    rows = {s: _parquet_rows(folder / f) for s, f in splits.items()}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", MARKER, "", f"# {title}", "",
             f"Made by `{made_by}`. `datasets.load_dataset(\"<this folder>\")` returns the splits below.", "",
             "| split | file | rows |", "|---|---|---|", *[f"| {s} | `{splits[s]}` | {n} |" for s, n in rows.items()], "",
             "## Licence", "", f"**{kind}**: {licence.notice}", ""]  # fmt: skip
    if licence.public is False:
        lines += ["Do not upload this folder to a public hub.", ""]
    if counts:
        lines += ["## Counts", "", "```json", json.dumps(counts, indent=2, default=str), "```", ""]
    path = folder / CARD_FILE
    write_text_atomic(path, "\n".join(lines))
    return path
