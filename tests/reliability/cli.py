"""Run the ``clinrl`` command line in-process and check that a failure is one clean line with exit status 2."""

from __future__ import annotations

from collections.abc import Sequence

from clinrl.cli import main


def run_cli(argv: Sequence[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``clinrl argv`` (status 0 when it returns normally)."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(argv: Sequence[str], capsys, *expected: str) -> str:
    """``clinrl argv`` exits 2 with one ``error: …`` line on stderr holding every ``expected`` text."""
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]
