"""Errors meant for the user: the CLI prints them as one clear line instead of a traceback."""

from __future__ import annotations


class ClinrlError(Exception):
    """Base class for errors caused by input or configuration (not by a bug)."""


class DataError(ClinrlError):
    """Bad input data. Names the file, the row (1-based, or a record id) and the field where known."""

    def __init__(self, message: str, *, path: object = None, row: object = None, field: str | None = None):
        self.path, self.row, self.field = path, row, field
        where = ", ".join(
            part
            for part in (
                f"file {path}" if path is not None else "",
                f"row {row}" if row is not None else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


def limit_problem(limit: object, name: str = "limit") -> str | None:
    """What is wrong with a row ``limit`` (None: nothing). A limit is "the first N rows", N ≥ 1, or unset
    for all rows. 0 and negative values are refused: slicing would read them as "all" and "all but N"."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        return f"{name} must be at least 1 (the first N rows), got {limit!r}; leave it out to use every row"
    return None


def check_limit(limit: int | None, name: str = "limit") -> int | None:
    """``limit`` unchanged, or :class:`ClinrlError` when :func:`limit_problem` finds it invalid."""
    problem = limit_problem(limit, name)
    if problem:
        raise ClinrlError(problem)
    return limit


MAX_ERROR_CHARS = 1000  # an error line longer than this is cut (CLI and server): it must stay readable


def one_line(message: object, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` on one line (whitespace runs become one space), cut to ``limit`` characters with ``…``."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_value(value: object) -> str:
    """A value's type and size, never its content: what an error may say about a field of a note or a
    dialogue (a label, an id, a level), since any field may hold patient text. ``"a str of 12 characters"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    if isinstance(value, (int, float)):
        return f"a number ({type(value).__name__})"
    if isinstance(value, (list, tuple, dict)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return f"{kind} of {len(value)} {'entries' if isinstance(value, dict) else 'items'}"
    return f"a {type(value).__name__}"


def shown_id(value: object, limit: int = 40) -> str:
    """An identifier (case id, sample number, hadm_id) for an error message: its repr when it is a short
    one-line string or an integer, else only its type and size (:func:`describe_value`)."""
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) <= limit:
        return repr(value)
    if isinstance(value, str) and len(value) <= limit and value.isprintable():
        return repr(value)
    return f"<{describe_value(value)}>"
