"""Write a benchmark report: report.json, report.md and report.html (plots, crops).

report.md and report.html are the same sections (:mod:`vpdsr.bench.sections`): a summary table first,
then one table per column group, the gates, the plane, what each metric means.

All three files are written into a temporary sibling folder that replaces ``out`` only when
complete (:func:`vpdsr.utils.atomic_directory`), so a crash never leaves a half report.

JSON has no infinity: a PSNR of identical images is written as the string ``"inf"`` (and NaN
as null), so a reader can tell "identical" from "not measured".
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vpdsr.bench.plane_report import SVG_NAME as PLANE_SVG
from vpdsr.bench.scenarios import report as scenario_report
from vpdsr.bench.scenarios.hook import LOG_DIR
from vpdsr.bench.sections import markdown
from vpdsr.utils import atomic_directory

__all__ = ["json_safe", "markdown", "to_json", "write_report"]
REPORT_FILES = ("report.json", "report.md", "report.html")
# `vpdsr bench` writes its log beside the report; LoadGen's logs of the scenarios go in a folder of their own
OWN_FILES = (*REPORT_FILES, PLANE_SVG, scenario_report.SVG_NAME, "bench.log", LOG_DIR)


def json_safe(obj):
    """A copy of ``obj`` that ``json.dumps(allow_nan=False)`` accepts (numpy scalars, inf, tuples)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(report: dict) -> str:
    return json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n"


def write_report(out: str | Path, result) -> Path:
    """Write report.json, report.md, report.html (and plane.svg, scenarios.svg, LoadGen's logs in loadgen/) into
    ``out`` atomically; returns ``out``.

    Args:
        out: report folder (replaced as a whole).
        result: a :class:`vpdsr.bench.harness.BenchResult`.
    """
    from vpdsr.bench.html import figures, render_html

    text_json = to_json(result.report)
    text_md = markdown(result.report, out)
    drawn = figures(result)  # once, before touching the folder: a plotting error writes nothing
    text_html = render_html(result, out, drawn)
    texts = {"report.json": text_json, "report.md": text_md, "report.html": text_html}
    plane = drawn[0].get("plane")
    if plane is not None:  # report.md embeds it (none without matplotlib)
        texts[PLANE_SVG] = str(plane)
    p99 = drawn[0].get("scenarios")
    if p99 is not None:  # report.md embeds it too
        texts[scenario_report.SVG_NAME] = str(p99)
    logs = getattr(result, "loadgen_dir", None)
    out = Path(out)
    if not out.exists() or {p.name for p in out.iterdir()} <= set(OWN_FILES):
        with atomic_directory(out) as tmp:  # a fresh folder, or only an older report in it
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report folder is not
            for name, text in texts.items():
                (tmp / name).write_text(text)
            _move_logs(logs, tmp / LOG_DIR)
        return out
    # The folder holds other files: never replace it. Write every file first, then rename each.
    tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=out))
    try:
        for name, text in texts.items():
            (tmp / name).write_text(text)
        _move_logs(logs, tmp / LOG_DIR)
        if (tmp / LOG_DIR).exists():
            shutil.rmtree(out / LOG_DIR, ignore_errors=True)  # an older run's LoadGen logs
        for name in [*texts, *([LOG_DIR] if (tmp / LOG_DIR).exists() else [])]:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_logs(src: Path | None, dst: Path) -> None:
    """LoadGen's logs of this run (kept in a temporary folder while it ran) into the report folder."""
    if src is not None and Path(src).is_dir():
        shutil.move(str(src), str(dst))
