"""Recipes as data: a YAML file (optionally ``extends:`` other recipes) → a config dataclass.

This module only loads recipes; the trainers' shared schema (:class:`clinrl.training.TrainerRecipe`) and run
plumbing (checkpoints, saving, ``run_from_cli``) live in :mod:`clinrl.training`.

A trainer recipe holds our own fields (model, data, output_dir, seed, report_to, LoRA, rewards, …) at the top
level and the arguments passed straight to the training library's config (``trl.SFTConfig``,
``trl.GRPOConfig`` or ``transformers.TrainingArguments``) under ``training:``.

- ``extends: base.yaml`` (or a list, applied left to right) deep-merges the named recipes first, paths
  relative to the extending file; the extending file's own keys win.
- Overrides ``--key value`` / ``--key=value`` use dotted keys (``--training.learning_rate 1e-5``,
  ``--lora.r 8``); values are typed by the dataclass field or the library field they target.
- Unknown keys and values of the wrong type raise :class:`RecipeError`, naming the key and the file and,
  for a misspelt key, the closest valid names.
- ``trl:`` (the name of the block before ``training:``) is still read, with a one-time deprecation warning.

Reporting is off (``report_to: none``) and hub pushes are refused unless a recipe sets them explicitly.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import types
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from clinrl.errors import ClinrlError

__all__ = [
    "RECIPES_DIR",
    "RECIPE_GROUPS",
    "RECIPES_ROOT",
    "TRAINING_KEY",
    "recipe_description",
    "recipe_file",
    "resolve_paths",
    "run_root",
    "RecipeError",
    "alias_overrides",
    "apply_overrides",
    "build_config",
    "build_from_dict",
    "coerce",
    "config_to_dict",
    "did_you_mean",
    "library_fields",
    "list_recipes",
    "load_recipe",
    "load_recipe_sources",
    "parse_overrides",
    "resolve_recipe",
    "resolve_with_sources",
    "valid_keys",
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

TRAINING_KEY = "training"  # the block of library training arguments in every trainer recipe
OLD_TRAINING_KEY = "trl"  # its name before; read with a deprecation warning (remove after one release)
# Keys a recipe sets at the top level, which the old ``trl:`` block carried: moved there by the alias.
_LIFTED_FROM_TRL = ("seed", "report_to")

T = TypeVar("T")


class RecipeError(ClinrlError):
    """A recipe or override that cannot be loaded: names the key and the file."""


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
    return load_recipe_sources(path, _seen)[0]


def load_recipe_sources(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`load_recipe`, plus which file set each value: dotted key (``training.learning_rate``) → file.

    A key's source is the last file in ``extends`` order that set it; a key whose value a later file replaced
    by a whole mapping or scalar takes that file as its source."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise RecipeError(f"recipe extends itself: {chain}")
    data = _alias_old_training_key(_read_yaml(path), path)
    parents = data.pop("extends", None)
    own = {key: str(path) for key in _leaf_keys(data)}
    if parents is None:
        return data, own
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise RecipeError(f"{path}: 'extends' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for parent in parents:
        parent_data, parent_sources = load_recipe_sources(path.parent / parent, (*_seen, path))
        merged = _merge(merged, parent_data)
        sources.update(parent_sources)
    merged = _merge(merged, data)
    sources.update(own)
    leaves = set(_leaf_keys(merged))
    return merged, {key: src for key, src in sources.items() if key in leaves}


def _leaf_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of the non-mapping values (and empty mappings) in ``data``."""
    keys: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


_warned_old_key = False


def _warn_old_training_key(where: object) -> None:
    """One deprecation warning (a log warning, shown without logging set up) per process for the ``trl:`` block / ``--trl.x`` overrides."""
    global _warned_old_key
    if not _warned_old_key:
        _warned_old_key = True
        logging.getLogger(__name__).warning(
            "deprecated: %s: '%s' is now '%s' (recipes: %s: …, overrides: --%s.KEY); '%s' is read for one more release",
            where, OLD_TRAINING_KEY, TRAINING_KEY, TRAINING_KEY, TRAINING_KEY, OLD_TRAINING_KEY,
        )  # fmt: skip


def _alias_old_training_key(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``trl:`` → ``training:`` in one file (its ``seed``/``report_to`` move to the top level), with the
    deprecation warning; both blocks in one file is an error (which one was meant?)."""
    if OLD_TRAINING_KEY not in data:
        return data
    if TRAINING_KEY in data:
        raise RecipeError(f"{path}: both '{OLD_TRAINING_KEY}' and '{TRAINING_KEY}' are set; keep '{TRAINING_KEY}' only")
    _warn_old_training_key(path)
    data = dict(data)
    block = data.pop(OLD_TRAINING_KEY)
    if isinstance(block, Mapping):
        block = dict(block)
        for key in _LIFTED_FROM_TRL:
            if key in block and key not in data:
                data[key] = block.pop(key)
    data[TRAINING_KEY] = block
    return data


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
        raise RecipeError(
            _unknown_recipe(name, list_recipes(folder), folder.name if folder.parent == RECIPES_ROOT else None)
        )
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
    "data": "in", "traces": "in", "difficulty_file": "in", "train_data": "in", "eval_notes": "in",
    "tokens": "in",
    "model": "model", "prm": "model",
}  # fmt: skip
_ALIASES = {"data": {"demo"}, "tokens": {"auto", "llama3", "new"}, "model": {"minilm"}}


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


def alias_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``trl.x`` override keys renamed ``training.x`` (``trl.seed``/``trl.report_to`` → top level), warning once."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if head == OLD_TRAINING_KEY:
            _warn_old_training_key(f"--{key}")
            key = rest if rest in _LIFTED_FROM_TRL else f"{TRAINING_KEY}{dot}{rest}"
        out[key] = value
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


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a recipe of dataclass ``cls`` may set (nested dataclasses expanded; ``training``
    and other mappings as one key)."""
    keys: list[str] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        keys.append(f"{prefix}{f.name}")
        if dataclasses.is_dataclass(hints[f.name]):
            keys += valid_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def did_you_mean(key: str, candidates: Sequence[str], aliases: Mapping[str, str] | None = None) -> str:
    """``"; did you mean a, b?"`` for the closest names to ``key`` (difflib), or ``""``; a close name found in
    ``aliases`` (an old name) is shown as its new name."""
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    if not close and "." in key:  # a misspelt leaf under the right block: compare the leaf names
        head, _, leaf = key.rpartition(".")
        leaves = [c.rpartition(".")[2] for c in candidates if c.startswith(head + ".")]
        close = [f"{head}.{m}" for m in difflib.get_close_matches(leaf, leaves, n=3, cutoff=0.6)]
    close = list(dict.fromkeys((aliases or {}).get(name, name) for name in close))
    return f"; did you mean {', '.join(close)}?" if close else ""


def _unknown_key(
    cls: type, key: str, prefix: str, source: object, root: type | None, training_fields: Mapping[str, Any] | None
) -> RecipeError:
    """The error for a key ``cls`` lacks: its new name when it was renamed (``RENAMED`` of the recipe class),
    ``training.<key>`` when it is a library argument set at the top level, else the closest valid names."""
    full = f"{prefix}{key}"
    recipe_cls = root or cls
    renamed = getattr(recipe_cls, "RENAMED", {})
    if full in renamed:
        return _fail(full, source, f"renamed: set {renamed[full]} instead")
    library = getattr(recipe_cls, "TRAINING_CLASS", "the library")
    if not prefix and training_fields and key in training_fields:
        return _fail(full, source, f"not a recipe key but a {library} argument: set {TRAINING_KEY}.{key}")
    candidates = valid_keys(recipe_cls) + [f"{TRAINING_KEY}.{k}" for k in training_fields or ()]
    hint = did_you_mean(full, candidates + list(renamed), aliases=renamed)  # a misspelt old name: its new name
    if not hint:
        hint = f"; {cls.__name__} knows {', '.join(f.name for f in dataclasses.fields(cls) if f.init)}"
    return _fail(full, source, f"unknown key{hint}")


def _build(
    cls: type[T],
    data: Mapping[str, Any],
    source: object,
    prefix: str = "",
    training_fields: Mapping[str, Any] | None = None,
    root: type | None = None,
) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(cls, key, prefix, source, root, training_fields)
        if key == TRAINING_KEY and not prefix and training_fields is not None:
            kwargs[key] = _check_training(training_fields, value, source, getattr(cls, "TRAINING_CLASS", ""))
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            kwargs[key] = _build(hints[key], value, source, f"{prefix}{key}.", training_fields, root or cls)
        else:
            kwargs[key] = coerce(value, hints[key], f"{prefix}{key}", source)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _fail(f"{prefix}{missing[0]}", source, f"required but not set (missing: {', '.join(missing)})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{source}: {err}") from None


def _check_training(fields: Mapping[str, Any], value: Any, source: object, library: str) -> dict[str, Any]:
    """Type every entry of the ``training:`` mapping by the library config's field of that name
    (``fields``: name → annotation, from the installed class or the shipped list)."""
    library = library or "training"
    if not isinstance(value, Mapping):
        raise _fail(TRAINING_KEY, source, f"expected a mapping of {library} arguments, got {value!r}")
    out = {}
    for key, item in value.items():
        if key not in fields:
            hint = did_you_mean(f"{TRAINING_KEY}.{key}", [f"{TRAINING_KEY}.{name}" for name in fields])
            raise _fail(f"{TRAINING_KEY}.{key}", source, f"not a {library} argument{hint}")
        out[key] = coerce(item, fields[key], f"{TRAINING_KEY}.{key}", source)
    _check_training_values(out, source)
    return out


def library_fields(library_class: type) -> dict[str, Any]:
    """``name → annotation`` of a library config dataclass's init fields (e.g. ``trl.GRPOConfig``)."""
    hints = _hints(library_class)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(library_class) if f.init}


# TRL/transformers accept these values and fail only once the model is loaded (the optimiser is built at
# the first step, trackers when the trainer starts): checked here, at recipe load, instead.
_TRAINING_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "learning_rate": ("> 0", lambda v: v > 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "max_grad_norm": (">= 0", lambda v: v >= 0),
    "warmup_ratio": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "adam_beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_beta2": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_epsilon": (">= 0", lambda v: v >= 0),
}


def _check_training_values(training: Mapping[str, Any], source: object) -> None:
    """Refuse ``training:`` values that would only fail after the model has loaded: out-of-range optimiser
    settings (:data:`_TRAINING_RANGES`)."""
    for key, (rule, ok) in _TRAINING_RANGES.items():
        value = training.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
            raise _fail(f"{TRAINING_KEY}.{key}", source, f"must be {rule}, got {value!r}")


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
            raise _fail("report_to", source, f"unknown tracker {name!r}; known: {', '.join(INTEGRATION_TO_CALLBACK)}")
        if name not in installed:
            raise _fail("report_to", source, f"tracker {name!r} is not installed (pip install {name}), "
                        "or set report_to: none")  # fmt: skip


def resolve_with_sources(
    path: str | Path, overrides: Mapping[str, Any] | Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], object]:
    """Recipe ``path`` with ``overrides`` applied: ``(recipe, sources, overrides, source label)``; sources
    map dotted keys to the file that set them, or ``"override"``."""
    recipe, sources = load_recipe_sources(path)
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    overrides = alias_overrides(overrides)
    recipe = apply_overrides(recipe, overrides)
    for key in overrides:
        sources = {k: v for k, v in sources.items() if not k.startswith(key + ".")}
        sources[key] = "override"
    label: object = Path(path)
    if overrides:
        label = f"{label} (with overrides {', '.join('--' + k for k in overrides)})"
    return recipe, sources, dict(overrides), label


def build_config(
    cls: type[T],
    path: str | Path,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    *,
    training_fields: Mapping[str, Any] | None = None,
    training_class: type | None = None,
) -> T:
    """Load recipe ``path``, apply ``overrides`` (a mapping or ``--key value`` strings), return ``cls``.

    The ``training:`` entries are typed by ``training_class`` (e.g. ``trl.GRPOConfig``, whose trackers in
    ``report_to`` are then checked too) or by ``training_fields`` (name → annotation, e.g. the shipped list
    that needs no heavy import). ``cls.TRAINING_DEFAULTS`` (our defaults where they differ from the
    library's) go under the recipe's own entries; ``push_to_hub`` is false unless the recipe sets it.
    """
    recipe, _, _, source = resolve_with_sources(path, overrides)
    return build_from_dict(cls, recipe, source, training_fields=training_fields, training_class=training_class)


def build_from_dict(
    cls: type[T],
    recipe: Mapping[str, Any],
    source: object,
    *,
    training_fields: Mapping[str, Any] | None = None,
    training_class: type | None = None,
) -> T:
    """:func:`build_config` on an already loaded recipe (``source`` names it in errors)."""
    recipe = dict(recipe)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if TRAINING_KEY in names:
        training = recipe.get(TRAINING_KEY, {})
        if isinstance(training, Mapping):
            recipe[TRAINING_KEY] = {"push_to_hub": False, **getattr(cls, "TRAINING_DEFAULTS", {}), **training}
    if training_class is not None:
        training_fields = library_fields(training_class)
    config = _build(cls, recipe, source, training_fields=training_fields)
    if training_class is not None and getattr(config, "report_to", None) is not None:
        _check_report_to(config.report_to, source)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A recipe dataclass as plain data (for saving beside a run)."""
    return dataclasses.asdict(config)


# Names that moved to clinrl.training / clinrl.llm.loading: importable from here for one more release.
_MOVED = {
    "LoraOptions": "clinrl.training",
    "resume_checkpoint": "clinrl.training",
    "checkpoint_complete": "clinrl.training",
    "train_and_save": "clinrl.training",
    "save_full_model": "clinrl.training",
    "read_split": "clinrl.training",
    "finish_distributed": "clinrl.training",
    "load_tokenizer": "clinrl.llm.loading",
    "ensure_pad_token": "clinrl.llm.loading",
}


def __getattr__(name: str) -> Any:
    """``from clinrl.config import resume_checkpoint`` (the old place) still works, with a warning."""
    if name in _MOVED:
        import importlib

        warnings.warn(f"clinrl.config.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'clinrl.config' has no attribute {name!r}")
