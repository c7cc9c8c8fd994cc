"""What every trainer recipe shares, and the plumbing of a training run.

One schema for the four trainers (``clinrl drg sft``, ``clinrl drg grpo``, ``clinrl notes grpo``,
``clinrl prm train``): :class:`TrainerRecipe` holds the common fields under the same names — ``model``,
``data``, ``output_dir``, ``name``, ``description``, ``seed``, ``report_to`` and ``training`` (the arguments
passed straight to the library's config: ``trl.SFTConfig``, ``trl.GRPOConfig`` or
``transformers.TrainingArguments``) — and their checks (``__post_init__``); :class:`TRLRecipe` adds LoRA and
``limit`` for the TRL trainers. ``training`` is one name for all three libraries because TRL's configs are
``TrainingArguments`` subclasses: the same key (``training.learning_rate``) means the same thing everywhere.

:func:`run_from_cli` is the one entry of the four commands: the recipe and its overrides are checked against
the schema before torch/transformers/trl are imported (a misspelt key fails in well under a second, with the
closest valid names), then loaded for real and trained. :func:`show_config` prints the resolved recipe with
where each value came from. The library's field names, types and defaults for those two come from a shipped
list (``clinrl/data/training_fields.json``, :func:`write_training_fields`), which a test compares with the
installed libraries.

The run helpers (checkpoints, saving, split reading, leaving the process group) are here too.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import logging
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

from clinrl import cards
from clinrl.config import (
    TRAINING_KEY,
    RecipeError,
    build_from_dict,
    config_to_dict,
    resolve_paths,
    resolve_with_sources,
    valid_keys,
)
from clinrl.drg.prep.prepared import check_prepared_input
from clinrl.errors import ClinrlError, DataError, check_limit, limit_problem
from clinrl.io import atomic_path, read_parquet_checked, write_json_atomic
from clinrl.llm import vllm_colocate
from clinrl.llm.loading import load_tokenizer
from clinrl.tracking import apply_report_to

__all__ = [
    "LoraOptions",
    "TRLRecipe",
    "TrainerRecipe",
    "checkpoint_complete",
    "finish_distributed",
    "load_trainer_config",
    "override_help",
    "read_split",
    "resume_checkpoint",
    "run_from_cli",
    "save_full_model",
    "show_config",
    "train_and_save",
    "training_fields",
]

log = logging.getLogger(__name__)

C = TypeVar("C", bound="TrainerRecipe")

FIELDS_FILE = Path(__file__).resolve().parent / "data" / "training_fields.json"
LIBRARY_CLASSES = ("trl.SFTConfig", "trl.GRPOConfig", "transformers.TrainingArguments")


# --------------------------------------------------------------------------- the schema


@dataclasses.dataclass
class LoraOptions:
    """LoRA adapters (peft); off by default (full fine-tuning, as in the study)."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"

    def to_peft(self):
        """A ``peft.LoraConfig`` for these options, or None when disabled."""
        if not self.enabled:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


@dataclass(kw_only=True)
class TrainerRecipe:
    """The fields every trainer recipe has (same names, same checks).

    Class attributes a trainer sets: ``TRAINING_CLASS`` (the library config ``training:`` is passed to),
    ``TRAINING_DEFAULTS`` (our defaults where they differ from the library's; shown by ``--show-config``),
    ``TOP_LEVEL`` (library arguments that come from our own fields and so may not appear under
    ``training:``), ``RENAMED`` (old key → new key, for a one-line error on an old recipe).
    """

    TRAINING_CLASS: ClassVar[str] = "transformers.TrainingArguments"
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {}
    TOP_LEVEL: ClassVar[tuple[str, ...]] = ("output_dir", "seed", "report_to")
    RENAMED: ClassVar[dict[str, str]] = {}

    model: str
    data: Any
    output_dir: str
    name: str = ""
    description: str = ""
    seed: int = 42
    report_to: list[str] = field(default_factory=lambda: ["none"])  # tracking (wandb, tensorboard …): opt-in
    data_allows_public_release: bool = False  # with training.hub_private_repo: false (clinrl.cards.check_hub_push)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # our defaults under the recipe's own entries, also for a config built in code; no hub pushes unless asked
        self.training = {"push_to_hub": False, **self.TRAINING_DEFAULTS, **self.training}
        for key in self.TOP_LEVEL:
            if key in self.training:
                raise ValueError(f"set {key} at the top level of the recipe, not under {TRAINING_KEY}")
        if not self.output_dir:
            raise ValueError("output_dir must not be empty")

    def training_arguments(self, **forced: Any) -> Any:
        """The library config (``TRAINING_CLASS``) from ``training`` plus our top-level fields; ``forced``
        entries (values the trainer decides) win. Invalid settings are a :class:`RecipeError`."""
        library = library_class(self.TRAINING_CLASS)
        kwargs = {
            "output_dir": self.output_dir,
            "seed": self.seed,
            "report_to": self.report_to,
            **self.training,
            **forced,
        }
        try:
            args = library(**kwargs)
        except (TypeError, ValueError) as err:
            detail = " ".join(str(err).split())[:300]
            raise RecipeError(f"recipe {self.name!r}: invalid {TRAINING_KEY} settings: {detail}") from None
        cards.check_hub_push(self, args)  # before the model loads: private by default, public only if the data allow it
        return args


@dataclass(kw_only=True)
class TRLRecipe(TrainerRecipe):
    """A recipe of a TRL trainer: the common fields plus LoRA and ``limit`` (first N training rows)."""

    TRAINING_CLASS: ClassVar[str] = "trl.GRPOConfig"

    limit: int | None = None
    lora: LoraOptions = field(default_factory=LoraOptions)

    def __post_init__(self) -> None:
        super().__post_init__()
        if limit_problem(self.limit):
            raise ValueError(limit_problem(self.limit))


@dataclass(kw_only=True)
class GRPORecipe(TRLRecipe):
    """A GRPO recipe (``training`` goes to ``trl.GRPOConfig``): the rewards by name, their weights (TRL's
    ``reward_weights``, set at the top level) and extra ``vllm.LLM`` keywords for TRL's colocated rollouts.

    A subclass gives ``rewards`` its default and says in :meth:`known_rewards` which names exist."""

    TRAINING_CLASS: ClassVar[str] = "trl.GRPOConfig"
    TOP_LEVEL: ClassVar[tuple[str, ...]] = (*TRLRecipe.TOP_LEVEL, "reward_weights")

    rewards: list[str] = field(default_factory=list)
    reward_weights: list[float] | None = None
    vllm_engine: dict[str, Any] = field(default_factory=dict)  # extra vllm.LLM keywords (colocate mode)

    def known_rewards(self) -> Sequence[str]:
        """The reward names a recipe may list."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        super().__post_init__()
        known = self.known_rewards()
        unknown = [r for r in self.rewards if r not in known]
        if unknown or not self.rewards:
            raise ValueError(f"rewards: unknown {unknown or 'empty list'}; available: {', '.join(known)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards")

    def grpo_arguments(self, **forced: Any) -> Any:
        """``trl.GRPOConfig`` of the recipe with ``reward_weights`` and ``forced`` (values the trainer decides)."""
        return self.training_arguments(reward_weights=self.reward_weights, **forced)

    def rollout_engine(self, args: Any) -> Any:
        """The context to build the trainer in: a colocated vLLM engine (``args.use_vllm``) gets ``vllm_engine``."""
        return vllm_colocate.engine_options(self.vllm_engine if args.use_vllm else None)


class GRPOInputs(NamedTuple):
    """What a GRPO run needs before its trainer (:func:`grpo_inputs`)."""

    checkpoint: str | None
    tokenizer: Any
    dataset: Any
    report: Any
    args: Any


def grpo_inputs(
    cfg: GRPORecipe, resume: bool, build_dataset: Callable[[Any, Any], tuple[Any, Any]], **forced: Any
) -> GRPOInputs:
    """The resume point, tokenizer, dataset (``build_dataset(cfg, tokenizer)`` → (dataset, report)) and
    ``trl.GRPOConfig`` (``reward_weights`` and ``forced`` added) of a run, cheapest check first: a bad
    ``--resume`` or recipe fails before a reward model or the policy loads."""
    checkpoint = resume_checkpoint(cfg.output_dir, resume)
    tokenizer = load_tokenizer(cfg.model)
    dataset, report = build_dataset(cfg, tokenizer)
    args = cfg.grpo_arguments(**forced)
    return GRPOInputs(checkpoint, tokenizer, dataset, report, args)


# --------------------------------------------------------------------------- the library's fields


def library_class(name: str) -> type:
    """``"trl.GRPOConfig"`` → the class (imports the library: seconds)."""
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _type_tag(annotation: Any) -> str:
    """A small type name for the shipped list: bool/int/float/str/list/dict/any, ``?`` when None is allowed.
    Unions of several types (``str | SchedulerType``) are ``any``: the full check runs on the real class."""
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(annotation))
        if options and all(o is str or (isinstance(o, type) and issubclass(o, enum.Enum)) for o in options):
            annotation = str  # a name or its enum (SchedulerType, SaveStrategy …): the library takes the string
        elif len(options) != 1:
            return "any"
        else:
            annotation = options[0]
    origin = typing.get_origin(annotation)
    if annotation in (bool, int, float, str):
        tag = annotation.__name__
    elif origin in (list, tuple) or annotation in (list, tuple):
        tag = "list"
    elif origin is dict or annotation is dict:
        tag = "dict"
    else:
        tag = "any"
    return tag + ("?" if nullable and tag != "any" else "")


_TAG_TYPES: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "list": list[Any], "dict": dict}


def _tag_annotation(tag: str) -> Any:
    base = _TAG_TYPES.get(tag.rstrip("?"), Any)
    return base | None if tag.endswith("?") and base is not Any else base


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def describe_library(name: str) -> dict[str, dict[str, Any]]:
    """The installed library class's init fields: ``{name: {"type": tag, "default": value}}`` (imports it)."""
    cls = library_class(name)
    hints = typing.get_type_hints(cls)
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out[f.name] = {"type": _type_tag(hints.get(f.name, Any)), "default": _jsonable(default)}
    return out


def write_training_fields(path: str | Path = FIELDS_FILE) -> Path:
    """Regenerate the shipped list from the installed libraries (after upgrading trl/transformers)."""
    import transformers
    import trl

    data = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
        "classes": {name: describe_library(name) for name in LIBRARY_CLASSES},
    }
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return Path(path)


_FIELDS_CACHE: dict[str, Any] = {}


def training_fields(name: str) -> dict[str, dict[str, Any]]:
    """The shipped ``{field: {"type", "default"}}`` of library class ``name`` (no library import)."""
    if not _FIELDS_CACHE:
        _FIELDS_CACHE.update(json.loads(FIELDS_FILE.read_text(encoding="utf-8")))
    return _FIELDS_CACHE["classes"][name]


def _light_fields(name: str) -> dict[str, Any]:
    return {key: _tag_annotation(spec["type"]) for key, spec in training_fields(name).items()}


# --------------------------------------------------------------------------- loading, showing, running


def load_trainer_config(
    cls: type[C], path: str | Path, overrides: Mapping[str, Any] | Sequence[str] = (), *, light: bool = False
) -> C:
    """Recipe ``path`` with ``overrides`` as ``cls``. ``light``: typed by the shipped field list, without
    importing the library (a check before the heavy imports); otherwise by the installed library class
    (also checks ``report_to``'s trackers)."""
    recipe, _, _, source = resolve_with_sources(path, overrides)
    if light:
        return build_from_dict(cls, recipe, source, training_fields=_light_fields(cls.TRAINING_CLASS))
    config = build_from_dict(cls, recipe, source, training_class=library_class(cls.TRAINING_CLASS))
    cards.check_hub_push(config)  # at load: a refused push fails before anything runs
    return config


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of a dataclass or non-empty mapping, expanded; anything else as one entry."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if f.init]
    elif isinstance(value, Mapping) and value:
        items = list(value.items())
    else:
        return [(prefix, value)]
    out: list[tuple[str, Any]] = []
    for key, item in items:
        out += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def _source_of(key: str, sources: Mapping[str, str]) -> str | None:
    """The file (or ``override``) that set ``key`` or a mapping above it."""
    while key:
        if key in sources:
            return sources[key]
        key = key.rpartition(".")[0]
    return None


def resolved_rows(cls: type[TrainerRecipe], path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()):
    """``(key, value, source)`` for every key of the resolved recipe: our fields, then every argument of the
    library config under ``training.`` (source ``default``, ``default (clinrl)`` for ``TRAINING_DEFAULTS``,
    ``default (<library class>)``, the recipe file that set it, or ``override``)."""
    config = load_trainer_config(cls, path, overrides, light=True)
    _, sources, _, _ = resolve_with_sources(path, overrides)
    rows = []
    for key, value in _flatten(config, ""):
        if key.startswith(TRAINING_KEY + ".") or key == TRAINING_KEY:
            continue
        rows.append((key, value, _source_of(key, sources) or "default"))
    library = training_fields(cls.TRAINING_CLASS)
    for name in sorted(set(library) | set(config.training)):
        if name in cls.TOP_LEVEL:
            continue  # set from our top-level field of that name
        key = f"{TRAINING_KEY}.{name}"
        source = _source_of(key, sources)
        if source is None:
            source = (
                "default (clinrl)"
                if name in cls.TRAINING_DEFAULTS or name == "push_to_hub"
                else (f"default ({cls.TRAINING_CLASS})")
            )
        value = config.training[name] if name in config.training else library[name]["default"]
        rows.append((key, value, source))
    return rows


def _show_value(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else (value or '""')


def show_config(cls: type[TrainerRecipe], path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> str:
    """The resolved recipe as text: one line per key, ``key  value  # source`` (files relative to the
    working directory where possible)."""
    rows = resolved_rows(cls, path, overrides)
    cwd = Path.cwd()

    def short(source: str) -> str:
        try:
            return str(Path(source).relative_to(cwd)) if source.startswith("/") else source
        except ValueError:
            return source

    width = max(len(k) for k, _, _ in rows)
    lines = [f"# {cls.__name__} from {short(str(Path(path).resolve()))}; library config {cls.TRAINING_CLASS}"]
    for key, value, source in rows:
        lines.append(f"{key.ljust(width)}  {_show_value(value)}  # {short(source)}")
    return "\n".join(lines)


_COMMON_TRAINING_KEYS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "warmup_steps", "lr_scheduler_type", "bf16", "gradient_checkpointing", "logging_steps", "save_strategy",
    "save_steps", "save_total_limit",
)  # fmt: skip


def override_help(cls: type[TrainerRecipe]) -> str:
    """The overridable keys of ``cls`` for a command's ``--help`` (our fields, the common library arguments)."""
    ours = [
        k
        for k in valid_keys(cls)
        if k != TRAINING_KEY
        and not any(
            k == p.name and dataclasses.is_dataclass(typing.get_type_hints(cls)[p.name])
            for p in dataclasses.fields(cls)
        )
    ]
    training = ", ".join(f"--{TRAINING_KEY}.{k}" for k in _COMMON_TRAINING_KEYS)
    return (
        "Any recipe key can be overridden with --KEY VALUE (dotted for nested keys). Recipe keys: "
        + ", ".join(f"--{k}" for k in ours)
        + f". Library arguments ({cls.TRAINING_CLASS}) go under {TRAINING_KEY}., e.g. {training}. "
        "--show-config prints every key with its value and where it came from."
    )


def run_from_cli(
    config_cls: type[C],
    train_fn: Callable[..., Any],
    path: str | Path,
    overrides: Sequence[str],
    resume: bool,
    *,
    workdir: str | Path | None = None,
    report_to: str | None = None,
) -> Any:
    """The entry of every trainer command: check the recipe and overrides against the schema without heavy
    imports (a misspelt key fails at once, with the closest names) and the tracker (``report_to``: the
    ``--report-to`` choice, None keeps the recipe's; :func:`clinrl.tracking.apply_report_to`), load it typed
    by the library, make its relative paths absolute against the root (``workdir`` > ``$CLINRL_HOME`` > the
    current folder; :func:`clinrl.config.resolve_paths`, which also reports a missing input), train
    (``train_fn(config, resume=resume)``), then leave the process group cleanly."""
    overrides = list(overrides)
    apply_report_to(load_trainer_config(config_cls, path, overrides, light=True), report_to)
    config = apply_report_to(load_trainer_config(config_cls, path, overrides), report_to)
    config = resolve_paths(config, workdir)
    result = train_fn(config, resume=resume)  # on an error, no barrier: the other ranks may wait in a
    finish_distributed()  # collective this rank never joins; the launcher stops them when this one exits
    return result


# --------------------------------------------------------------------------- run helpers shared by the trainers


def resume_checkpoint(output_dir: str | Path, resume: bool) -> str | None:
    """The checkpoint to resume from: the last *complete* ``checkpoint-N`` in ``output_dir`` when ``resume``.

    The trainer writes a checkpoint in place, ``trainer_state.json`` last; a run killed while saving
    leaves a folder without it (or with it cut short). Such a folder is skipped with a warning: resuming
    from it would restart at step 0 or fail on half-written weights. ``resume`` without a complete
    checkpoint, or a fresh run into a folder that already holds checkpoints (which would mix two runs),
    raise :class:`ClinrlError`.
    """
    out = Path(output_dir)
    found = sorted(
        (p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()),
        key=lambda p: int(p.name.removeprefix("checkpoint-")),
    ) if out.is_dir() else []  # fmt: skip
    complete = [p for p in found if checkpoint_complete(p)]
    if resume:
        if not found:
            raise ClinrlError(f"--resume: no checkpoint-* folder in {out}")
        if not complete:
            names = ", ".join(p.name for p in found)
            raise ClinrlError(f"--resume: no complete checkpoint-* folder in {out} ({len(found)} incomplete: {names})")
        newer = [p.name for p in found[found.index(complete[-1]) + 1 :]]
        if newer:
            logging.getLogger(__name__).warning(
                "skipping incomplete %s (interrupted while saving); resuming from %s",
                ", ".join(newer),
                complete[-1].name,
            )
        return str(complete[-1])
    if found:
        raise ClinrlError(
            f"{out} already holds checkpoints ({found[-1].name}); pass --resume or choose a new output_dir"
        )
    return None


def checkpoint_complete(folder: str | Path) -> bool:
    """Whether a trainer checkpoint folder was written to the end (its ``trainer_state.json`` parses)."""
    import json

    try:
        return isinstance(json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def train_and_save(
    trainer: Any,
    config: Any,
    tokenizer: Any,
    checkpoint: str | None,
    summary_file: str,
    fields: Mapping[str, Any],
    late_fields: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``trainer`` (from ``checkpoint`` when resuming) and save the model, tokenizer and resolved recipe to
    ``config.output_dir``; write and return the run summary: recipe, output_dir, ``fields``, step, resume
    point, loss, then ``late_fields()`` (values known only after training) and the seconds taken.
    Files are written by the main process only."""

    out = Path(config.output_dir)
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "clinrl_recipe.json", config_to_dict(config))
    start = time.perf_counter()
    vllm_colocate.install_weight_sync(trainer)  # GRPO with colocated vLLM rollouts; no-op otherwise
    cards.install(trainer, config)  # checkpoints and hub pushes write our model card, not TRL's
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        vllm_colocate.shutdown(trainer)
    save_full_model(trainer, out)
    if main:
        tokenizer.save_pretrained(str(out))
        # The log history (loss, reward, completion length, KL …) for curves, also when no checkpoint was saved.
        with atomic_path(out / "trainer_state.json") as tmp:
            trainer.state.save_to_json(str(tmp))
        cards.write_model_card(out, config, trainer.state.log_history)  # after the save: replaces TRL's/peft's
    summary = {
        "recipe": config.name,
        "output_dir": config.output_dir,
        **fields,
        "global_step": trainer.state.global_step,
        "resumed_from": checkpoint,
        "train_loss": result.training_loss,
        **(late_fields() if late_fields else {}),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if main:
        write_json_atomic(out / summary_file, summary)
    return summary


def save_full_model(trainer: Any, out: str | Path) -> None:
    """Save ``trainer``'s model to ``out`` as one consolidated Hugging Face model (every process must call it;
    the main process writes), whatever the sharding:

    * DeepSpeed ZeRO-3: the parameters are gathered even when the config lacks
      ``stage3_gather_16bit_weights_on_model_save`` (without it ``Trainer.save_model`` writes 0-element
      tensors plus a DeepSpeed checkpoint that needs zero_to_fp32.py);
    * FSDP/FSDP2: a full state dict (``Trainer.save_model`` writes no model at all under
      ``SHARDED_STATE_DICT``, the fast checkpoint format);
    * a peft model: its adapter (``adapter_model.safetensors``), from the gathered weights.
    """
    if getattr(trainer, "is_deepspeed_enabled", False):
        engine = trainer.model_wrapped
        zero = getattr(getattr(engine, "_config", None), "zero_config", None)
        if zero is not None:
            zero.gather_16bit_weights_on_model_save = True
        trainer.save_model(str(out))
    elif getattr(trainer, "is_fsdp_enabled", False):
        state_dict = trainer.accelerator.get_state_dict(trainer.model)  # collective: every rank
        if trainer.args.should_save:
            trainer._save(str(out), state_dict=state_dict)
    else:
        trainer.save_model(str(out))  # main process only
    trainer.accelerator.wait_for_everyone()


def read_split(path: str | Path, columns: Sequence[str] = ("text", "solution"), limit: int | None = None):
    """A split parquet (from ``clinrl drg split``) as a DataFrame, checked for ``columns``; first ``limit`` rows."""

    check_limit(limit)
    frame = read_parquet_checked(path, columns, made_by="clinrl drg split")

    check_prepared_input(path)  # training straight on a `drg prepare` output: one finished run only
    if frame.empty:
        raise DataError("no rows", path=path)
    return frame.head(limit).reset_index(drop=True) if limit is not None else frame


def finish_distributed() -> None:
    """Leave a torch.distributed group cleanly (barrier, then destroy) so that every rank exits 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
