import json
import os
import stat

import pytest

from clinrl.io import atomic_path, write_json_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_atomic_write_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "x.json", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_cut_torn_line(tmp_path):
    from clinrl.io import cut_torn_line

    path = tmp_path / "rows.jsonl"
    assert cut_torn_line(path) is False  # missing file
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert cut_torn_line(path) is False and path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    path.write_bytes(b'{"a": 1}\n{"b": ')
    assert cut_torn_line(path) is True and path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b'{"only": ')
    assert cut_torn_line(path) is True and path.read_bytes() == b""


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "flow.json"
    dead = tmp_path / ".flow.json.4194399.abcd.tmp"  # above Linux's largest pid: no such process
    live = tmp_path / f".flow.json.{os.getpid()}.efgh.tmp"  # a writer that is still running
    other = tmp_path / ".other.json.4194399.abcd.tmp"  # another file's
    for f in (dead, live, other):
        f.write_text("partial")
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not dead.exists() and live.exists() and other.exists()


def test_sweep_off_leaves_other_temporaries_alone(tmp_path):
    target = tmp_path / "cache.json"
    dead = tmp_path / ".cache.json.4194399.abcd.tmp"
    dead.write_text("partial")
    write_json_atomic(target, {"a": 1}, sweep=False)
    assert json.loads(target.read_text()) == {"a": 1} and dead.exists()
    write_json_atomic(target, {"a": 2})
    assert not dead.exists()
