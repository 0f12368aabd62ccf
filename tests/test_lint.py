"""The repository's own checks as tests: `ruff check` with the rules in pyproject.toml, and text that
speaks to a reader of this repository (no tracker issue numbers, no notes kept outside it).

The dev extra installs ruff, so a missing ruff is a broken install: the test fails rather than skips.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".html", ".j2"}
SKIPPED_DIRS = {".git", ".venv", "runs", "build", "__pycache__", ".pytest_cache", ".ruff_cache", ".benchmarks"}
# written so that this file does not match itself
OUTSIDE = re.compile(r"\bissue\s#?\d+|\bFACTS\.md\b|\bthis\ssession\b|/work" + "/", re.IGNORECASE)


def test_ruff_check_is_clean():
    try:
        import ruff  # noqa: F401  (the package only locates its binary)
    except ImportError:
        raise AssertionError("ruff is not installed: pip install -e '.[dev]'") from None
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"ruff check found problems:\n{run.stdout}{run.stderr}"


def _text_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))  # pruned
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or path.parent.name == ".ci":
                yield path


def test_no_tracker_numbers_or_outside_notes():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
             for path in _text_files()
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "text that cites what a reader of this repository does not have:\n" + "\n".join(found)
