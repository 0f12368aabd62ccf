"""Benchmark history: the roofline figures of every run, per preset and backend, in one JSON file.

A run folder's ``history.json`` holds one entry per benchmark run (``vpdsr pipeline`` appends one
after its bench, ``benchmarks/suite.py`` one per suite run over several presets)::

    {"schema": 1, "runs": [{"created": ..., "label": ..., "commit": ..., "machine": {...},
                            "presets": {"tiny": {"onnx": {"status": "ok", "p50_ms": ..., ...}}}}]}

:func:`compare` matches two entries' rows by (preset, backend) and names the rows that changed: a
backend added or removed, a status that changed, or a figure that moved by more than a threshold
(percent of the older value). Timings on a shared machine move by tens of percent from run to run,
so the default threshold is 10 % and the machine's load average is kept with every entry.

Example:
    >>> append_run("RUN/history.json", {"tiny": report})
    >>> changes = compare(read_history("A/history.json")["runs"][-1], read_history("B/history.json")["runs"][-1])
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from vpdsr.errors import InputError

SCHEMA = 1
HISTORY_NAME = "history.json"
# figure -> its path in a report row; lower is better for all but the rates, the peak and attainable shares,
# PSNR, the offline throughput and the server's QPS
FIGURES = {
    "p50_ms": ("latency_ms", "p50"),
    "min_ms": ("latency_ms", "min"),
    "gflops": ("roofline", "gflops"),
    "peak_pct": ("roofline", "peak_pct"),
    "peak_pct_best": ("roofline", "peak_pct_best"),
    "ms_per_mpix": ("roofline", "ms_per_mpix"),
    "tiling_overhead": ("roofline", "tiling_overhead"),
    "vs_single_call": ("roofline", "vs_single_call"),
    "outside_engine_pct": ("roofline", "outside_engine_pct"),
    "psnr_vs_ref": ("quality", "psnr_vs_ref"),
    "attainable_ms": ("roofline", "attainable_ms"),
    "attainable_pct_best": ("roofline", "attainable_pct_best"),
    # the MLPerf scenarios (vpdsr.bench.scenarios): LoadGen's figures of the row
    "single_stream_p90_ms": ("scenarios", "scenarios", "single-stream", "p90_ms"),
    "offline_ips": ("scenarios", "scenarios", "offline", "ips"),
    "offline_mpix_s": ("scenarios", "scenarios", "offline", "mpix_s"),
    "server_max_qps": ("scenarios", "scenarios", "server", "max_qps"),
    "server_p99_ms": ("scenarios", "scenarios", "server", "p99_ms"),
    "multi_stream_p99_ms": ("scenarios", "scenarios", "multi-stream", "p99_ms"),
}
HIGHER_IS_BETTER = frozenset({"gflops", "peak_pct", "peak_pct_best", "psnr_vs_ref", "attainable_pct_best",
                              "offline_ips", "offline_mpix_s", "server_max_qps"})
# shares of a whole that are often near 0: compared by their difference in percentage points, not relative
POINTS = frozenset({"outside_engine_pct"})


def row_figures(row: dict) -> dict:
    """The figures of one report row (None where the row has none), with its status and precision."""
    out = {"status": row.get("status"), "precision": row.get("precision")}
    for name, path in FIGURES.items():
        value = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out[name] = float(value) if isinstance(value, (int, float)) and value == value and abs(value) != float("inf") \
            else None
    out["flags"] = [f.get("flag") for f in row.get("flags") or []]
    return out


def run_entry(reports: dict[str, dict], label: str | None = None) -> dict:
    """One history entry from {preset: report.json content}."""
    first = next(iter(reports.values()), {})
    env = first.get("environment") or {}
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "label": label,
        "commit": _git_commit(),
        "machine": {"cpu": (env.get("cpu") or {}).get("name") if isinstance(env.get("cpu"), dict) else env.get("cpu"),
                    "threads": env.get("threads"),
                    # the load when the benchmark ended (the report's), else now
                    "loadavg": env.get("loadavg_end")
                    or (list(os.getloadavg()) if hasattr(os, "getloadavg") else None)},
        "presets": {preset: {row["name"]: row_figures(row) for row in report.get("backends", [])}
                    for preset, report in reports.items()},
    }


def read_history(path: str | Path) -> dict:
    """A history file; a missing file is an empty history, anything unreadable a one-line InputError."""
    path = Path(path)
    if not path.exists():
        return {"schema": SCHEMA, "runs": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable benchmark history ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or data.get("schema") != SCHEMA:
        raise InputError(f"{path}: not a benchmark history (expected schema {SCHEMA} with a `runs` list)")
    return data


def append_run(path: str | Path, reports: dict[str, dict], label: str | None = None) -> dict:
    """Add one entry for `reports` ({preset: report}) to the history at `path` (written atomically)."""
    from vpdsr.utils import atomic_write_text

    history = read_history(path)
    entry = run_entry(reports, label)
    history["runs"].append(entry)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(history, indent=1) + "\n")
    return entry


def pick_run(history: dict, index: int, where: str) -> dict:
    """Entry `index` of a history (negative from the end), or a one-line InputError."""
    runs = history["runs"]
    if not -len(runs) <= index < len(runs):
        raise InputError(f"{where}: has {len(runs)} run(s), no run {index}")
    return runs[index]


def compare(old: dict, new: dict, threshold_pct: float = 10.0) -> list[dict]:
    """The rows that changed from entry `old` to entry `new`, matched by (preset, backend).

    Returns:
        [{"preset", "backend", "change": "added"|"removed"|"status"|"figures", "status": [old, new],
          "figures": {figure: {"old", "new", "pct", "better"}}}], in preset then backend order; a row is
        named when it appeared, disappeared, changed status or has a figure that moved by more than
        `threshold_pct` percent of its old value (percentage points for the figures in :data:`POINTS`).
    """
    if threshold_pct < 0:
        raise InputError(f"the comparison threshold must be >= 0 percent, got {threshold_pct}")
    changes = []
    presets = list(dict.fromkeys([*old.get("presets", {}), *new.get("presets", {})]))
    for preset in presets:
        a, b = old.get("presets", {}).get(preset, {}), new.get("presets", {}).get(preset, {})
        for backend in dict.fromkeys([*a, *b]):
            ra, rb = a.get(backend), b.get(backend)
            if ra is None or rb is None:
                changes.append({"preset": preset, "backend": backend, "change": "added" if ra is None else "removed",
                                "status": [None if ra is None else ra["status"], None if rb is None else rb["status"]],
                                "figures": {}})
                continue
            moved = {}
            for name in FIGURES:
                va, vb = ra.get(name), rb.get(name)
                if va is None or vb is None or va == vb:
                    continue
                pct = vb - va if name in POINTS else 100.0 * (vb - va) / abs(va) if va else float("inf")
                if abs(pct) > threshold_pct:
                    moved[name] = {"old": va, "new": vb, "pct": pct,
                                   "better": (vb > va) == (name in HIGHER_IS_BETTER)}
            if ra["status"] != rb["status"] or moved:
                changes.append({"preset": preset, "backend": backend,
                                "change": "status" if ra["status"] != rb["status"] else "figures",
                                "status": [ra["status"], rb["status"]], "figures": moved})
    return changes


def markdown(changes: list[dict], old: dict, new: dict, threshold_pct: float) -> str:
    """The comparison as a short markdown report (one line per changed row)."""
    def who(e: dict) -> str:
        load = (e.get("machine") or {}).get("loadavg")
        return (f"{e.get('label') or e.get('created')} (commit {str(e.get('commit') or '?')[:10]}, load average "
                f"{load[0] if load else '?'})")

    lines = [f"# Benchmark comparison: {who(old)} -> {who(new)}", "",
             f"Rows whose status changed or with a figure that moved by more than {threshold_pct:g} %:", ""]
    if not changes:
        lines.append("- no row changed")
    for c in changes:
        head = f"- `{c['preset']}` / `{c['backend']}`: "
        if c["change"] in ("added", "removed"):
            status = c["status"][1] if c["change"] == "added" else c["status"][0]
            lines.append(head + f"{c['change']} (status {status})")
            continue
        parts = [f"status {c['status'][0]} -> {c['status'][1]}"] if c["change"] == "status" else []
        parts += [f"{k} {f['old']:.4g} -> {f['new']:.4g} ({f['pct']:+.0f} %, {'better' if f['better'] else 'worse'})"
                  for k, f in c["figures"].items()]
        lines.append(head + "; ".join(parts))
    return "\n".join(lines) + "\n"


def _git_commit() -> str | None:
    """The commit of the vpdsr checkout that ran (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def record_reports(history_path: str | Path, report_paths: dict[str, str | Path], label: str | None = None) -> dict:
    """Append one entry for the report.json files `report_paths` ({preset: path}) to `history_path`."""
    reports = {}
    for preset, p in report_paths.items():
        try:
            reports[preset] = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a readable report.json ({str(e).splitlines()[0][:200]})") from None
    return append_run(history_path, reports, label)
