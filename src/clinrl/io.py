"""Small file helpers: atomic writes (a partial output never looks complete), append-only JSONL repair, JSON."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clinrl.errors import DataError


@contextmanager
def atomic_path(path: str | Path, *, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds. With ``sweep``,
    a success also removes killed writers' temporaries of ``path`` (a scan of its folder: turn it off for
    many small files in one folder, e.g. a response cache)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, target)
        if sweep:
            remove_stale_temporaries(target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Delete the hidden temporaries that killed writers of ``target`` left beside it (``.NAME.PID.*.tmp``
    whose process no longer runs); a live writer's are kept. Returns what was removed."""
    target = Path(target)
    removed = []
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        pid = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but not ours, or cannot tell: keep its file
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str, *, sweep: bool = True) -> None:
    with atomic_path(path, sweep=sweep) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2, sweep: bool = True) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", sweep=sweep)


def cut_torn_line(path: str | Path) -> bool:
    """Cut a torn last line (an append-only JSONL file whose writer was killed mid-line) so that appends start
    on a fresh line; True when something was cut. A missing or complete file is left alone."""
    path = Path(path)
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with path.open("r+b") as fh:
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def read_jsonl(path: str | Path, *, torn_tail: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line numbers (from 1; blank lines skipped), for errors that
    name the row. A line that is not a JSON object is a :class:`DataError` naming it, except, with
    ``torn_tail``, a cut-short last line (no newline at the end: its writer was interrupted), which is left out."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if torn_tail and number == len(lines):  # the file's end is not a newline: the last write was cut
                break
            raise DataError(f"not JSON ({err.msg})", path=path, row=number) from None
        if not isinstance(record, dict):
            raise DataError("not a JSON object", path=path, row=number)
        records.append((number, record))
    return records


def read_parquet_checked(path: str | Path, columns: Sequence[str], *, made_by: str):
    """Read a parquet file as a DataFrame; a clear DataError (naming the file) if it is missing, unreadable
    or lacks ``columns``. ``made_by`` names the command that writes such files, for the hint."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a non-parquet file
        raise DataError(f"cannot read as parquet ({type(err).__name__}: {err})", path=path) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; is this a `{made_by}` output?", path=path)
    return frame


def read_text_file(path: str | Path, *, field: str | None = None) -> str:
    """A UTF-8 text file's content; a missing file, a folder, undecodable bytes or an unreadable file is a
    one-line :class:`~clinrl.errors.DataError` naming the file (and ``field``, e.g. the CLI option) and
    never echoing the content (it is often patient text)."""

    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not a text file", path=path, field=field)
    if not path.exists():
        raise DataError("file not found", path=path, field=field)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (bad byte at offset {err.start})", path=path, field=field) from None
    except OSError as err:
        raise DataError(
            f"not readable ({type(err).__name__}: {err.strerror or 'error'})", path=path, field=field
        ) from None
