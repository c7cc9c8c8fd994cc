"""Check that a report renders in headless Chromium with every plot visible, and take a screenshot.

    python -m clinrl.demo.check_report runs/demo/report.html [--screenshot runs/demo/report.png]

The page marks itself ``<body data-plots="loaded/total">`` once loaded (see :mod:`clinrl.demo.report`); this
reads the rendered DOM back from Chromium (``--dump-dom``) and fails unless every plot image decoded and has
a non-zero size on the page. Exit 0: all plots visible; 1: some missing; 2: no Chromium / no file.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["check_report", "find_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="clinrl-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--window-size=1200,2400",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_report(path: str | Path, screenshot: str | Path | None = None, timeout: float = 120) -> dict[str, int | str]:
    """Render ``path``; return ``{"plots_loaded": n, "plots_total": m, "screenshot": …}``.

    Raises ``FileNotFoundError`` if the page or a browser is missing, ``RuntimeError`` if it did not render."""
    page = Path(path).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such report")
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    dom = _run(browser, ["--dump-dom", page.as_uri()], timeout)
    match = re.search(r'<body[^>]*data-plots="(\d+)/(\d+)"', dom.stdout)
    if match is None:
        raise RuntimeError(f"the page did not finish loading in Chromium (exit {dom.returncode}): {dom.stderr[-300:]}")
    result: dict[str, int | str] = {"plots_loaded": int(match.group(1)), "plots_total": int(match.group(2))}
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        _run(browser, [f"--screenshot={shot}", page.as_uri()], timeout)
        if not shot.is_file() or shot.stat().st_size == 0:
            raise RuntimeError(f"Chromium wrote no screenshot to {shot}")
        result["screenshot"] = str(shot)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        result = check_report(args.report, args.screenshot)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    ok = result["plots_total"] > 0 and result["plots_loaded"] == result["plots_total"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
