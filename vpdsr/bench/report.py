"""Write a benchmark report: report.json, report.md (the table) and report.html (plots, crops).

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

from vpdsr.bench.baselines import text_cells
from vpdsr.bench.columns import NUMERIC_COLUMNS, TEXT_HEADERS, measured, num, sensitivity_links, status_cell
from vpdsr.bench.gates import verdict_text
from vpdsr.bench.model_stats import stats_line
from vpdsr.bench.plane_report import SVG_NAME as PLANE_SVG
from vpdsr.bench.plane_report import markdown_lines as plane_lines
from vpdsr.bench.plane_report import section_svg
from vpdsr.bench.quality import metric_notes
from vpdsr.bench.roofline import markdown_section
from vpdsr.bench.scenarios import report as scenario_report
from vpdsr.bench.scenarios.hook import LOG_DIR
from vpdsr.utils import atomic_directory

REPORT_FILES = ("report.json", "report.md", "report.html")
# `vpdsr bench` writes its log beside the report; LoadGen's logs go in a folder of their own
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


def markdown(report: dict, out: str | Path | None = None) -> str:
    """The report as Markdown: the verdict, the backend table, gates, skipped/failed backends, metric notes."""
    lines = [
        f"# vpdsr benchmark: {report['model'].get('source')}",
        "",
        f"**{verdict_text(report)}**",
        "",
        f"{report['images']} image(s), reference `{report['reference']}`, noise seed {report['seed']}, "
        f"tile {report['tiling']['tile']} / overlap {report['tiling']['overlap']}; "
        f"latency = one whole image upscaled (tiled), {report['latency_config']['warmup']} warm-up + up to "
        f"{report['latency_config']['iters']} timed runs.",
        *([stats_line(report["model"])] if stats_line(report["model"]) else []),
        "",
        "| " + " | ".join((*TEXT_HEADERS, *(c.header for c in NUMERIC_COLUMNS))) + " |",
        "|" + "---|" * len(TEXT_HEADERS) + "---:|" * len(NUMERIC_COLUMNS),
    ]
    for b in report["backends"]:
        text = (b["name"], b["precision"], b["device"], status_cell(b))
        lines.append("| " + " | ".join((*text, *(c.cell(b) for c in NUMERIC_COLUMNS))) + " |")
    baselines = report.get("baselines") or []
    for b in baselines:
        lines.append("| " + " | ".join((*text_cells(b), *(c.cell(b) for c in NUMERIC_COLUMNS))) + " |")
    if baselines:
        lines += ["", "Rows marked `baseline` are what a user would ship instead (and HR itself), scored on the "
                      "same images: quality only, no latency."]
        lines += [f"The `{b['name']}` row samples `{b['source']}`." for b in baselines if b.get("source")]
    stages = [b for b in report["backends"] if b.get("stage_latency_ms")]
    for b in stages:
        parts = ", ".join(f"{k} {v['p50']:.1f} ms" for k, v in b["stage_latency_ms"].items())
        lines.append(f"- `{b['name']}` per stage (p50 per call): {parts}")
    links = sensitivity_links(report, out)
    if links:
        lines += ["", "Per-layer INT8 sensitivity (export `--sensitivity`): "
                  + ", ".join(f"[{name}]({path})" for name, path in links) + "."]
    lines += markdown_section(report)
    lines += scenario_report.markdown_lines(report)
    lines += ["", "## Gates", ""]
    if report["gates"]:
        lines += ["| gate | backend | threshold | value | result |", "|---|---|---:|---:|---|"]
        for g in report["gates"]:
            lines.append(f"| {g['name']} | {g['backend']} | {num(g['threshold'], '{:g}')} "
                         f"| {num(g['value'], '{:.4g}')} | {'pass' if g['passed'] else '**FAIL**'} |")
    else:
        lines.append("No gates were set.")
    kept = [b for b in report["backends"] if b["status"] != "ok" and measured(b)]
    if kept:
        lines += ["", "## Failed, measured anyway", "",
                  "Export artifacts that failed validation, kept by `vpdsr export --keep-failed` and timed: their "
                  "figures are in the table, and each still fails the run unless `--allow-failed` names it.", ""]
        lines += [f"- `{b['name']}` failed: {b['reason']}" for b in kept]
    not_run = [b for b in report["backends"] if not measured(b)]
    not_run_baselines = [b for b in baselines if b["status"] != "ok"]
    if not_run or not_run_baselines:
        lines += ["", "## Not run", "", "skipped = cannot run on this machine; failed = should run here and did not.",
                  ""] + [f"- `{b['name']}` {b['status']}: {b['reason']}" for b in not_run]
        lines += [f"- `{b['name']}` (baseline) {b['status']}: {b['reason']}" for b in not_run_baselines]
    lines += plane_lines(report.get("plane"))
    notes = metric_notes(report)
    if notes:
        about = "'vs ref' compares with the reference backend's output of the same image and noise; drift = " \
                "backend minus reference; 'worst' / 'min' = the least favourable image."
        lines += ["", "## Metrics", "", about, ""] + [f"- {n}" for n in notes]
    env = report["environment"]
    lines += ["", f"Measured on {env['cpu']['name']} ({env['cpu']['cores']} cores, torch threads "
                  f"{env['torch_threads']}), {', '.join(g['name'] for g in env['gpus']) or 'no GPU'}; "
                  f"{report['created']}.", ""]
    return "\n".join(lines)


def write_report(out: str | Path, result) -> Path:
    """Write report.json, report.md, report.html (and plane.svg) into ``out`` atomically; returns ``out``.

    Args:
        out: report folder (replaced as a whole).
        result: a :class:`vpdsr.bench.harness.BenchResult`.
    """
    from vpdsr.bench.html import render_html

    text_json = to_json(result.report)
    text_md = markdown(result.report, out)
    text_html = render_html(result, out)  # before touching the folder: a plotting error writes nothing
    texts = {"report.json": text_json, "report.md": text_md, "report.html": text_html}
    plane = section_svg(result.report.get("plane"))
    if plane is not None:  # report.md embeds it
        texts[PLANE_SVG] = plane
    p99 = scenario_report.p99_plot_svg(result.report)
    if p99 is not None:
        texts[scenario_report.SVG_NAME] = p99
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
        shutil.rmtree(out / LOG_DIR, ignore_errors=True)  # the older run's LoadGen logs
        for name in [*texts, *([LOG_DIR] if (tmp / LOG_DIR).exists() else [])]:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_logs(src: Path | None, dst: Path) -> None:
    """LoadGen's logs of this run (kept in a temporary folder while it ran) into the report folder."""
    if src is not None and Path(src).is_dir():
        shutil.copytree(src, dst)
        shutil.rmtree(src, ignore_errors=True)
