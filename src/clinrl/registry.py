"""One registry style for every name → thing table in clinrl (rewards, backends, aggregations, curricula …).

    REWARDS = Registry("reward")
    REWARDS.register("format", FormatReward)                     # an object
    REWARDS.register("prm", "clinrl.notes.prm_reward:PRMReward")  # lazy: imported on first use

A :class:`Registry` is a read-only ``Mapping`` (``name in R``, ``list(R)``, ``R[name]``, ``", ".join(R)``
keep working where a plain dict was used). A lazy ``"module:attr"`` target is imported the first time it
is looked up, so a registry can name modules that import the registry's own module (no import cycle, no
``if name == …`` special case) or that need heavy optional packages (vLLM). An unknown name raises
:class:`UnknownName` (or the registry's subclass of it) with one line: the kind, the name, a did-you-mean
guess when one is close, and the choices.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from clinrl.errors import ClinrlError

__all__ = ["Registry", "UnknownName", "unknown_name_message"]

T = TypeVar("T")


class UnknownName(ClinrlError, KeyError, ValueError):
    """A name that is not in a registry. A ``KeyError`` (for code that looked names up in a dict) and a
    ``ValueError`` (for code that validated them), with its message shown as is, not quoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def unknown_name_message(kind: str, name: object, choices: list[str]) -> str:
    """``unknown reward 'acuracy' (did you mean 'accuracy'?); choose from: accuracy, format`` (one line)."""
    guess = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return f"unknown {kind} {str(name)[:80]!r}{hint}; choose from: {', '.join(choices) or '(none registered)'}"


class Registry(Mapping[str, T], Generic[T]):
    """Names → objects (or lazy ``"module:attr"`` targets), in registration order."""

    def __init__(self, kind: str, entries: Mapping[str, Any] | None = None, *, error: type[UnknownName] = UnknownName):
        self.kind = kind
        self.error = error
        self._targets: dict[str, Any] = {}
        self._resolved: dict[str, T] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: Any, *, lazy: bool | None = None) -> Any:
        """Register ``target`` under ``name`` (a later registration replaces an earlier one); returns it.

        A string ``"package.module:attr"`` is lazy (imported on first lookup) unless ``lazy=False``: a
        registry of plain strings (prompt texts) registers them with ``lazy=False``."""
        is_lazy = isinstance(target, str) and ":" in target if lazy is None else lazy
        self._targets[name] = _Lazy(target) if is_lazy else target
        self._resolved.pop(name, None)
        return target

    def __getitem__(self, name: str) -> T:
        if name not in self:  # also an unhashable name (a list from a bad recipe)
            raise self.error(unknown_name_message(self.kind, name, list(self._targets)))
        if name in self._resolved:
            return self._resolved[name]
        target = self._targets[name]
        value = target.resolve() if isinstance(target, _Lazy) else target
        self._resolved[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._targets
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._targets)})"


def _split_target(spec: str) -> tuple[str, str]:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a lazy registry target is 'module:attr', got {spec!r}")
    return module, attr


def import_target(spec: str) -> Any:
    """The object a ``"module:attr"`` spec names (``attr`` may be dotted), imported now."""
    module, attr = _split_target(spec)
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


class _Lazy:
    """A ``"module:attr"`` target, imported when first looked up."""

    def __init__(self, spec: str):
        self.module, self.attr = _split_target(spec)

    def resolve(self) -> Any:
        return import_target(f"{self.module}:{self.attr}")

    def __repr__(self) -> str:
        return f"{self.module}:{self.attr}"
