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
