"""What every ``clinrl`` command shares: the choice types, the global ``--quiet``/``--log-level`` state,
old option spellings kept as hidden aliases, and plain boolean flags in ``--help``.

The vocabulary itself (which flag means what) is written down in docs/cli.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Optional, TypeVar

import typer

__all__ = [
    "LOG_LEVELS",
    "Aggregate",
    "Dtype",
    "LogLevel",
    "PRMBackend",
    "alias",
    "configure_logging",
    "hidden_alias",
    "option_block",
    "progress_on",
    "set_global_quiet",
]

# Choices: typing.Literal makes typer list them in --help (`<a|b>`) and refuse anything else with its own
# "Invalid value for '--x': 'c' is not one of 'a', 'b'" line (exit 2), before any model loads.
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS = ("debug", "info", "warning", "error")
Aggregate = Literal["sum_log", "min", "mean", "last"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
PRMBackend = Literal["transformers", "vllm"]

T = TypeVar("T")

_STATE = {"quiet": False}


def set_global_quiet(quiet: bool) -> None:
    """``clinrl --quiet …``: no progress bar in whatever command follows (set on every invocation)."""
    _STATE["quiet"] = bool(quiet)


def progress_on(quiet: bool) -> bool:
    """Whether a command shows its progress bar: neither its own ``--quiet`` nor the global one was given."""
    return not (quiet or _STATE["quiet"])


def configure_logging(level: Optional[str]) -> None:
    """``clinrl --log-level LEVEL``: the level of the ``clinrl`` loggers, printed on stderr.

    Only clinrl's own loggers change: third-party libraries stay at Python's default (warnings), so
    ``--log-level debug`` does not flood the terminal with httpx or transformers internals. Without the
    option nothing is configured (a command such as ``serve`` sets up its own logging then)."""
    if level is None:
        return
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")  # no-op if already set up
    logging.getLogger("clinrl").setLevel(level.upper())


def alias(value: T, old_value: Optional[T], old: str, new: str) -> T:
    """The value of an option that may also come by its old spelling (a hidden alias kept for one release).

    The old spelling wins only when given; it prints a one-line deprecation notice on stderr."""
    if old_value is None:
        return value
    typer.secho(f"warning: {old} is deprecated, use {new}", err=True, fg="yellow")
    return old_value


def hidden_alias(old: str, new: str, **kwargs: Any) -> Any:
    """A hidden option for an old spelling (``--max-tokens`` → ``--max-new-tokens``), default None."""
    return typer.Option(None, old, hidden=True, help=f"Deprecated spelling of {new}.", **kwargs)


def option_block(
    func: Callable[..., Any], param: str, options: Mapping[str, tuple[Any, Any]], build: Callable[..., Any]
) -> Any:
    """``func`` with its parameter ``param`` replaced by ``options`` (name -> (annotation, typer option)); the
    command receives ``param=build(**values)``, one object instead of a dozen arguments.

    This is how a block of options is defined once for several commands (:mod:`clinrl.cli._openai`,
    :mod:`clinrl.cli._prm_scoring`): typer reads the rewritten signature, so it parses and documents the block
    like any option; the command's own parameters come first in ``--help``. A name both in the block and in
    the command is a programming error (TypeError at import, so every test catches it)."""
    hints = typing.get_type_hints(func)
    signature = inspect.signature(func)
    if param not in signature.parameters:
        raise TypeError(f"{func.__name__} needs a parameter `{param}` for its option block")
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
           if p.name != param]  # fmt: skip
    clash = {p.name for p in own} & set(options)
    if clash:
        raise TypeError(f"{func.__name__}: {sorted(clash)} are defined by the `{param}` option block")
    block = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=annotation)
             for name, (annotation, option) in options.items()]  # fmt: skip

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in options}
        return func(**{param: build(**values)}, **kwargs)

    parameters = own + block
    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": hints.get("return")}
    return command


def _plain_flags_in_help() -> None:
    """Show boolean flags without a ``<bool>`` type in ``--help``.

    typer ≥ 0.26 prints every flag as ``--small <bool>``, which reads as if ``--small true`` were accepted
    (it is not: a flag takes no value). A flag's type column is left empty instead. Guarded: if typer's
    internals change, help keeps typer's own rendering (tests/test_cli.py notices)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_clinrl_plain_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Any:
        if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
            return None
        return original(self, ctx)

    display_type_rich._clinrl_plain_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_plain_flags_in_help()
