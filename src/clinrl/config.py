"""Recipes as data: a YAML file (optionally ``extends:`` other recipes) → a config dataclass.

A recipe holds our own fields (model, data, prompt options, rewards, LoRA, sampling, …) at the top
level and the arguments passed straight to TRL's ``SFTConfig``/``GRPOConfig`` under ``trl:``.

- ``extends: base.yaml`` (or a list, applied left to right) deep-merges the named recipes first, paths
  relative to the extending file; the extending file's own keys win.
- Overrides ``--key value`` / ``--key=value`` use dotted keys (``--trl.learning_rate 1e-5``,
  ``--lora.r 8``); values are typed by the dataclass field or the TRL config field they target.
- Unknown keys and values of the wrong type raise :class:`RecipeError`, naming the key and the file.

Reporting is off (``report_to: none``) and hub pushes are refused unless a recipe sets them explicitly.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from clinrl.errors import ClinrlError

__all__ = [
    "RECIPES_DIR",
    "RECIPE_GROUPS",
    "RECIPES_ROOT",
    "recipe_description",
    "recipe_file",
    "resolve_paths",
    "run_root",
    "LoraOptions",
    "RecipeError",
    "apply_overrides",
    "build_config",
    "checkpoint_complete",
    "coerce",
    "config_to_dict",
    "finish_distributed",
    "list_recipes",
    "load_recipe",
    "parse_overrides",
    "read_split",
    "resolve_recipe",
    "resume_checkpoint",
    "save_full_model",
]



def _recipes_root() -> Path:
    """The packaged ``clinrl/recipes`` folder, found through :mod:`importlib.resources` (so it is the same in a
    source checkout, an editable install and a wheel). Recipes name each other by relative path
    (``extends: ../best.yaml``), so they must be real files: a zipped install is refused."""
    from importlib.resources import files

    root = files("clinrl").joinpath("recipes")
    if not isinstance(root, Path):
        raise ClinrlError(f"clinrl's recipes are not plain files ({root!r}); install clinrl unzipped")
    return root


RECIPES_ROOT = _recipes_root()
RECIPE_GROUPS = ("drg", "prm", "notes", "accelerate")  # the folders under RECIPES_ROOT
RECIPES_DIR = RECIPES_ROOT / "drg"  # the default group of list_recipes/resolve_recipe (names kept stable)

T = TypeVar("T")


class RecipeError(ClinrlError):
    """A recipe or override that cannot be loaded: names the key and the file."""


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
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


# --------------------------------------------------------------------------- YAML and extends


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of keys to values, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``top`` replaces ``base``."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe at ``path`` as a plain dict, with every ``extends:`` resolved (cycles are an error)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise RecipeError(f"recipe extends itself: {chain}")
    data = _read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return data
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise RecipeError(f"{path}: 'extends' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = _merge(merged, load_recipe(path.parent / parent, (*_seen, path)))
    return _merge(merged, data)


def list_recipes(root: str | Path = RECIPES_DIR) -> list[str]:
    """Recipe names under ``root`` (``best``, ``tiny/best``, …); files starting with ``_`` are fragments.
    ``root`` is a folder or a group name (``drg``, ``prm``, ``notes``, ``accelerate``)."""
    root = _group_dir(root)
    names = [p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml") if not p.name.startswith("_")]
    return sorted(names, key=lambda n: (n.count("/"), n))


def _group_dir(root: str | Path) -> Path:
    """A group name (``prm``) → its packaged folder; a path stays a path."""
    return RECIPES_ROOT / root if isinstance(root, str) and root in RECIPE_GROUPS else Path(root)


def resolve_recipe(name: str, root: str | Path = RECIPES_DIR) -> Path:
    """The file of recipe ``name`` in group ``root`` (a group name or a folder; default ``drg``):
    ``best`` → recipes/drg/best.yaml, ``tiny/best`` → …/tiny/best.yaml. The group's own prefix is accepted too
    (``drg/best``), as ``clinrl recipes`` prints it. An unknown name is a :class:`RecipeError` listing the
    close names and how to list them all."""
    folder = _group_dir(root)
    stem = name.removesuffix(".yaml")
    if folder.parent == RECIPES_ROOT and stem.startswith(f"{folder.name}/"):
        stem = stem.removeprefix(f"{folder.name}/")
    path = folder / f"{stem}.yaml"
    if not path.is_file() or path.name.startswith("_") or ".." in Path(stem).parts:
        raise RecipeError(_unknown_recipe(name, list_recipes(folder), folder.name if folder.parent == RECIPES_ROOT else None))
    return path


def _unknown_recipe(name: str, known: Sequence[str], group: str | None) -> str:
    """One line: the unknown name, the closest known ones (difflib), and the command that lists them all."""
    import difflib

    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    close += [k for k in known if name in k and k not in close][: 4 - len(close)]  # "best" → "tiny/best"
    listing = f"`clinrl recipes {group}`" if group else "`clinrl recipes`"
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"unknown recipe {name!r}{' in ' + group if group else ''}; {hint}list them with {listing}"


def recipe_file(ref: str) -> Path:
    """The packaged file of ``group/name`` (``accelerate/zero3_cpu``, ``prm/cpu_minilm``, ``drg/tiny/sft``)."""
    group, _, name = ref.removesuffix(".yaml").partition("/")
    if group in RECIPE_GROUPS and name:
        try:
            return resolve_recipe(name, group)
        except RecipeError:
            pass
    import difflib

    every = [f"{g}/{n}" for g in RECIPE_GROUPS for n in list_recipes(g)]
    close = difflib.get_close_matches(ref, every, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise RecipeError(f"unknown recipe {ref!r} (GROUP/NAME, GROUP one of {', '.join(RECIPE_GROUPS)}); "
                      f"{hint}list them with `clinrl recipes`")  # fmt: skip


def recipe_description(path: str | Path, limit: int = 100) -> str:
    """A recipe's one-line description: the file's own ``description:`` (not one inherited through
    ``extends``: a tiny variant says that it is one), else the first sentence of the comment block it opens
    with (accelerate configs and PRM recipes have no such key), cut at a colon or semicolon when longer than
    ``limit`` characters."""
    path = Path(path)
    try:
        described = _read_yaml(path).get("description")
    except RecipeError:
        described = None
    if isinstance(described, str) and described.strip():
        return described.strip()
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    sentence = " ".join(" ".join(lines).split()).split(". ")[0].rstrip(".")
    for mark in (": ", "; "):
        if len(sentence) > limit and mark in sentence:
            sentence = sentence.split(mark)[0]
    if sentence.count("(") > sentence.count(")"):  # cut inside a parenthesis: drop it
        sentence = sentence[: sentence.rindex("(")].rstrip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


# --------------------------------------------------------------------------- the root of relative paths

HOME_ENV = "CLINRL_HOME"

# Recipe fields that hold paths, by name (the same name means the same thing in every trainer's recipe):
# "out" is written, "in" must exist, "model" may also be a Hugging Face Hub name (owner/name), so it is
# taken as a path only when it has two or more parts (runs/tiny-drg/model) or exists under the root.
# Values that are aliases, not paths, are kept as they are.
PATH_FIELDS: dict[str, str] = {
    "output_dir": "out",
    "data": "in", "traces": "in", "difficulty_file": "in", "train_data": "in", "gold": "in", "eval_notes": "in",
    "tokens": "in",
    "model": "model", "model_name_or_path": "model", "prm": "model",
}  # fmt: skip
_ALIASES = {"data": {"demo"}, "gold": {"demo"}, "tokens": {"auto", "llama3", "new"},
            "model_name_or_path": {"minilm"}}  # fmt: skip


def run_root(workdir: str | Path | None = None, *, create: bool = False) -> tuple[Path, str]:
    """The folder that relative paths in a recipe resolve against, and where it came from:
    ``--workdir DIR`` > ``$CLINRL_HOME`` > the current folder. The folder must exist (a typo here would
    otherwise turn every input into "not found"), unless ``create`` (commands that build a workspace)."""
    if workdir is not None:
        root, source = Path(workdir), "--workdir"
    elif os.environ.get(HOME_ENV, "").strip():
        root, source = Path(os.environ[HOME_ENV].strip()), f"${HOME_ENV}"
    else:
        return Path.cwd(), "the current folder"
    root = root.expanduser()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    if not root.is_dir():
        raise ClinrlError(f"{source} {root}: not a folder")
    return root.resolve(), f"{source} {root}"


def _needed(config: Any, name: str) -> bool:
    """Whether an input field is read by this run (``difficulty_file`` only with a curriculum)."""
    return name != "difficulty_file" or getattr(config, "curriculum", "none") != "none"


def resolve_paths(config: T, workdir: str | Path | None = None) -> T:
    """``config`` (a recipe dataclass) with every relative path of :data:`PATH_FIELDS` made absolute against
    :func:`run_root`. Then, before anything loads, a missing input is a :class:`ClinrlError` naming the field
    and the resolved path, and for a relative one the root and how to set it; models are checked first (their
    error was the first one before). Aliases (``demo``, ``minilm``, ``tiny:qwen2``) and hub-like model names
    (``owner/name``, not a folder under the root) are left alone; a missing absolute data path fails where it
    is read, with that reader's own message."""
    root, source = run_root(workdir)
    changes: dict[str, Any] = {}
    missing: list[tuple[bool, str]] = []  # (is a model, message)
    for f in dataclasses.fields(config):
        kind, value = PATH_FIELDS.get(f.name), getattr(config, f.name)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if kind is None or items is None:
            continue
        resolved = []
        for item in items:
            target, problem = _resolve_one(config, f.name, kind, item, root, source)
            resolved.append(target)
            if problem:
                missing.append((kind == "model", problem))
        if resolved != items:
            changes[f.name] = resolved[0] if isinstance(value, str) else resolved
    if missing:
        raise ClinrlError(sorted(missing, key=lambda m: not m[0])[0][1])
    return dataclasses.replace(config, **changes) if changes else config


def _resolve_one(config: Any, name: str, kind: str, value: Any, root: Path, source: str) -> tuple[Any, str | None]:
    """(the resolved value, the message when it is a missing input, else None)."""
    if not isinstance(value, str) or value in _ALIASES.get(name, ()) or value.startswith("tiny:"):
        return value, None
    path = Path(value).expanduser()
    relative = not path.is_absolute()
    target = root / path if relative else path
    if kind == "model" and relative and len(path.parts) < 3 and not target.exists():
        return value, None  # a hub name (owner/name), found or refused by clinrl.llm.hub.resolve_model
    if kind == "out" or not _needed(config, name) or target.exists() or (kind == "in" and not relative):
        return str(target), None
    what = "model folder not found" if kind == "model" else "not found"
    hint = ""
    if relative:
        hint = f"; relative paths in a recipe resolve against {root} ({source}): set --workdir DIR or ${HOME_ENV}"
        if name == "difficulty_file":
            hint += " (`clinrl drg difficulty --out FILE` writes it)"
        elif "tiny-drg" in value:
            hint += " (`clinrl drg tiny-workspace --workdir DIR` builds the tiny recipes' files)"
        elif "notes_prm_rl" in value:
            hint += " (`python benchmarks/notes_prm_rl.py --setup-only`, in a checkout, builds these models)"
    return str(target), f"{name}: {what}: {target}{hint}"


# --------------------------------------------------------------------------- overrides


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """``["--a.b", "1", "--c=2"]`` → ``{"a.b": "1", "c": "2"}`` (dashes in key names become underscores)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise RecipeError(f"unexpected argument {arg!r}; overrides look like --key value or --key=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise RecipeError(f"override --{key} has no value")
            value = args[i + 1]
            i += 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def apply_overrides(recipe: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with dotted-key ``overrides`` set (values stay raw; typing happens in build)."""
    out = _merge({}, recipe)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    return out


# --------------------------------------------------------------------------- typing


def _fail(key: str, source: object, message: str) -> RecipeError:
    return RecipeError(f"{source}: key {key!r}: {message}")


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def coerce(value: Any, annotation: Any, key: str, source: object) -> Any:
    """``value`` converted to ``annotation`` (str from the command line or a YAML value), else RecipeError."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is object:
        return _parse_scalar(value) if isinstance(value, str) else value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and (value is None or (isinstance(value, str) and value.lower() in ("null", "~"))):
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, key, source)
            except RecipeError as err:
                errors.append(str(err).rsplit(": ", 1)[-1])
        raise _fail(key, source, f"{value!r} fits none of {annotation} ({'; '.join(errors)})")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise _fail(key, source, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise _fail(key, source, f"expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise _fail(key, source, f"expected an integer, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and number == number:  # NaN (.nan, "nan") would only poison a run
            return number
        raise _fail(key, source, f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(key, source, f"expected a string, got {value!r}")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise _fail(key, source, f"{value!r} is not one of {', '.join(str(m.value) for m in annotation)}") from None
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if isinstance(value, str):
            parsed = _parse_scalar(value)
            value = parsed if isinstance(parsed, list) else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _fail(key, source, f"expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return [coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, dict):
            raise _fail(key, source, f"expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise _fail(key, source, f"expected a mapping of {annotation.__name__} fields, got {value!r}")
        return _build(annotation, value, source, prefix=f"{key}.")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type[T], data: Mapping[str, Any], source: object, prefix: str = "", trl_class: type | None = None) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _fail(f"{prefix}{key}", source, f"unknown key; {cls.__name__} knows {', '.join(sorted(fields))}")
        if key == "trl" and trl_class is not None:
            kwargs[key] = _check_trl(trl_class, value, source)
        else:
            kwargs[key] = coerce(value, hints[key], f"{prefix}{key}", source)
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _fail(f"{prefix}{missing[0]}", source, f"required but not set (missing: {', '.join(missing)})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{source}: {err}") from None


def _check_trl(trl_class: type, value: Any, source: object) -> dict[str, Any]:
    """Type every entry of the ``trl:`` mapping by ``trl_class``'s field of that name."""
    if not isinstance(value, Mapping):
        raise _fail("trl", source, f"expected a mapping of {trl_class.__name__} arguments, got {value!r}")
    fields = {f.name for f in dataclasses.fields(trl_class) if f.init}
    hints = _hints(trl_class)
    out = {}
    for key, item in value.items():
        if key not in fields:
            raise _fail(f"trl.{key}", source, f"not a {trl_class.__name__} argument")
        out[key] = coerce(item, hints.get(key, Any), f"trl.{key}", source)
    _check_trl_values(out, source)
    return out


# TRL/transformers accept these values and fail only once the model is loaded (the optimiser is built at
# the first step, trackers when the trainer starts): checked here, at recipe load, instead.
_TRL_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "learning_rate": ("> 0", lambda v: v > 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "max_grad_norm": (">= 0", lambda v: v >= 0),
    "warmup_ratio": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "adam_beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_beta2": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_epsilon": (">= 0", lambda v: v >= 0),
}


def _check_trl_values(trl: Mapping[str, Any], source: object) -> None:
    """Refuse ``trl:`` values that would only fail after the model has loaded: out-of-range optimiser
    settings (:data:`_TRL_RANGES`) and ``report_to`` trackers that are unknown or not installed."""
    for key, (rule, ok) in _TRL_RANGES.items():
        value = trl.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
            raise _fail(f"trl.{key}", source, f"must be {rule}, got {value!r}")
    if "report_to" in trl:
        _check_report_to(trl["report_to"], source)


def _check_report_to(report_to: Any, source: object) -> None:
    """Every tracker named in ``report_to`` is one transformers knows and one that is installed."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    installed = set(get_available_reporting_integrations())
    for name in names:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            raise _fail("trl.report_to", source, f"unknown tracker {name!r}; known: {', '.join(INTEGRATION_TO_CALLBACK)}")
        if name not in installed:
            raise _fail("trl.report_to", source, f"tracker {name!r} is not installed (pip install {name}), "
                        "or set report_to: none")  # fmt: skip


def build_config(
    cls: type[T],
    path: str | Path,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    *,
    trl_class: type | None = None,
) -> T:
    """Load recipe ``path``, apply ``overrides`` (a mapping or ``--key value`` strings), return ``cls``.

    ``trl_class`` (e.g. ``trl.GRPOConfig``) types the ``trl:`` entries. Safe defaults are added to them:
    ``report_to: none`` and ``push_to_hub: false`` unless the recipe sets them.
    """
    recipe = load_recipe(path)
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    recipe = apply_overrides(recipe, overrides)
    source = Path(path)
    if overrides:
        source = f"{source} (with overrides {', '.join('--' + k for k in overrides)})"
    trl = recipe.setdefault("trl", {})
    if isinstance(trl, dict):
        trl.setdefault("report_to", "none")
        trl.setdefault("push_to_hub", False)
    return _build(cls, recipe, source, trl_class=trl_class)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A recipe dataclass as plain data (for saving beside a run)."""
    return dataclasses.asdict(config)


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
                "skipping incomplete %s (interrupted while saving); resuming from %s", ", ".join(newer), complete[-1].name
            )
        return str(complete[-1])
    if found:
        raise ClinrlError(f"{out} already holds checkpoints ({found[-1].name}); pass --resume or choose a new output_dir")
    return None


def checkpoint_complete(folder: str | Path) -> bool:
    """Whether a trainer checkpoint folder was written to the end (its ``trainer_state.json`` parses)."""
    import json

    try:
        return isinstance(json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def load_tokenizer(name: str | Path) -> Any:
    """``AutoTokenizer.from_pretrained(name)`` with a pad token; a name that cannot be loaded (no such
    folder, a hub name not in the local cache while the hub is off) is a :class:`ClinrlError`, not a
    traceback. Offline unless ``CLINRL_ALLOW_HUB=1`` (:mod:`clinrl.llm.hub`)."""
    from transformers import AutoTokenizer

    from clinrl.llm.hub import local_files_only, resolve_model

    source = resolve_model(name)  # a missing folder fails here, before any hub request
    try:
        return ensure_pad_token(AutoTokenizer.from_pretrained(source, local_files_only=local_files_only()))
    except (OSError, ValueError) as err:  # ValueError: a folder without tokenizer files
        first = " ".join(str(err).split())[:200]
        raise ClinrlError(f"cannot load the tokenizer of model {str(name)!r} ({type(err).__name__}: {first})") from None


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give ``tokenizer`` a padding token (its EOS) when it has none, as batching needs one; returns it."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


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
    from clinrl.io import atomic_path, write_json_atomic
    from clinrl.llm import vllm_colocate

    out = Path(config.output_dir)
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "clinrl_recipe.json", config_to_dict(config))
    start = time.perf_counter()
    vllm_colocate.install_weight_sync(trainer)  # GRPO with colocated vLLM rollouts; no-op otherwise
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
    from clinrl.errors import DataError, check_limit
    from clinrl.io import read_parquet_checked

    check_limit(limit)
    frame = read_parquet_checked(path, columns, made_by="clinrl drg split")
    from clinrl.drg.prep.prepared import check_prepared_input

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
