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
