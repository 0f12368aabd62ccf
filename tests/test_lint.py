"""`ruff check` over the whole repository, with the rules in pyproject.toml, as part of the test suite.

The dev extra installs ruff, so a missing ruff is a broken install: the test fails rather than skips.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    try:
        import ruff  # noqa: F401  (the package only locates its binary)
    except ImportError:
        raise AssertionError("ruff is not installed: pip install -e '.[dev]'") from None
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"ruff check found problems:\n{run.stdout}{run.stderr}"
