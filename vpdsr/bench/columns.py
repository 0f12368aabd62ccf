"""The report's columns, written once: what report.md and report.html both show.

A column is a header, where its value is in a row of report.json, and how it is printed. The report
opens with :data:`SUMMARY` (one line per row, read at a glance); below it every column sits in one of
:data:`GROUPS` (latency, roofline, perceptual, fidelity), each its own table, collapsed in the HTML page.
Adding a metric to the report is one line in its group; a new topic is one more :class:`ColumnGroup`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def num(v, fmt: str = "{:.2f}") -> str:
    """A table cell: '-' for a missing value, 'inf' for an infinite one (identical images)."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return fmt.format(v)


def measured(row: dict) -> bool:
    """A backend row with figures: ok, or failed but measured (an export artifact kept by --keep-failed)."""
    return row.get("status") == "ok" or (row.get("status") == "failed" and bool(row.get("kept")))


def status_cell(row: dict) -> str:
    """The status column: a kept failed row that was measured says so (report.json keeps `failed`)."""
    return "failed (kept)" if row.get("status") == "failed" and row.get("kept") else row["status"]


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict], object]
    fmt: str = "{:.2f}"

    def cell(self, row: dict) -> str:
        return num(self.value(row), self.fmt)


def _latency(key: str) -> Callable[[dict], object]:
    return lambda b: (b.get("latency_ms") or {}).get(key)


def _quality(key: str) -> Callable[[dict], object]:
    return lambda b: (b.get("quality") or {}).get(key)


def _roofline(key: str) -> Callable[[dict], object]:
    return lambda b: (b.get("roofline") or {}).get(key)


def _colour_worst(b: dict) -> str | None:
    q = b.get("quality") or {}
    v = q.get("colour_shift_vs_ref_worst")
    return None if v is None else f"{v:+.2f} ({q.get('colour_shift_vs_ref_worst_at', '')})"


P50 = Column("p50 ms", _latency("p50"), "{:.1f}")
IMAGES_PER_S = Column("images/s", lambda b: b.get("throughput_ips"))
PEAK_PCT = Column("% peak", _roofline("peak_pct"), "{:.1f}")
# the limit with memory in it (roofline.attainable): per layer max(FLOPs / peak, bytes / memory bandwidth)
ATTAINABLE_PCT = Column("% attainable", _roofline("attainable_pct"), "{:.1f}")
PIQE_DRIFT = Column("PIQE drift worst", _quality("piqe_drift_worst"), "{:+.2f}")
PSNR_VS_REF = Column("PSNR vs ref dB", _quality("psnr_vs_ref"))
PSNR_VS_HR = Column("PSNR vs HR dB", _quality("psnr_vs_hr"))

# After the summary's text columns (backend, status): speed, how near the machine's limit, fidelity to the
# reference, the perceptual drift the gates watch, and fidelity to the ground truth.
SUMMARY: tuple[Column, ...] = (P50, IMAGES_PER_S, PEAK_PCT, ATTAINABLE_PCT, PSNR_VS_REF, PIQE_DRIFT, PSNR_VS_HR)
SUMMARY_TEXT = ("backend", "status")
TEXT_HEADERS = ("backend", "precision", "device", "status")  # of every group's table


@dataclass(frozen=True)
class ColumnGroup:
    """One topic's table below the summary.

    Attributes:
        key: a short name (the HTML anchor).
        title: its heading.
        columns: after the text columns (TEXT_HEADERS).
        kinds: the row kinds it shows (baselines have no latency: only quality groups show them).
    """

    key: str
    title: str
    columns: tuple[Column, ...]
    kinds: tuple[str, ...] = ("backend", "baseline")


GROUPS: tuple[ColumnGroup, ...] = (
    ColumnGroup("latency", "Latency", (
        P50,
        Column("p90 ms", _latency("p90"), "{:.1f}"),
        Column("p99 ms", _latency("p99"), "{:.1f}"),
        Column("mean ms", _latency("mean"), "{:.1f}"),
        IMAGES_PER_S,
        Column("peak MiB", lambda b: b.get("peak_mem_mb"), "{:.0f}"),
    ), kinds=("backend",)),
    # vpdsr/bench/roofline.py: FLOPs of the timed image's engine calls, rate, share of the peak; end to end vs
    # the single-call rate: what is lost between engine calls
    ColumnGroup("roofline", "Roofline", (
        Column("GFLOP/img", _roofline("gflop_per_image"), "{:.1f}"),
        Column("GFLOP/s", _roofline("gflops"), "{:.1f}"),
        PEAK_PCT,
        Column("% peak best", _roofline("peak_pct_best"), "{:.1f}"),
        Column("attain ms", _roofline("attainable_ms"), "{:.1f}"),
        ATTAINABLE_PCT,
        Column("% attain best", _roofline("attainable_pct_best"), "{:.1f}"),
        Column("ms/MP out", _roofline("ms_per_mpix"), "{:.0f}"),
        Column("tiling x", _roofline("tiling_overhead"), "{:.2f}"),
        Column("est ms", _roofline("expected_ms"), "{:.1f}"),
        Column("e2e/est", _roofline("vs_single_call"), "{:.2f}"),
        Column("outside %", _roofline("outside_engine_pct"), "{:.0f}"),
    ), kinds=("backend",)),
    ColumnGroup("perceptual", "Perceptual", (
        Column("PIQE", _quality("piqe")),
        PIQE_DRIFT,
        Column("CLIPIQA", _quality("clipiqa"), "{:.4f}"),
        Column("CLIPIQA drift mean", _quality("clipiqa_drift"), "{:+.4f}"),
        Column("CLIPIQA drift worst", _quality("clipiqa_drift_worst"), "{:+.4f}"),
        Column("LPIPS vs ref", _quality("lpips_vs_ref"), "{:.4f}"),
    )),
    ColumnGroup("fidelity", "Fidelity", (
        PSNR_VS_REF,
        Column("SSIM vs ref", _quality("ssim_vs_ref"), "{:.4f}"),
        Column("MS-SSIM vs ref min", _quality("ms_ssim_vs_ref_min"), "{:.4f}"),
        Column("GMSD vs ref", _quality("gmsd_vs_ref"), "{:.4f}"),
        # vpdsr/bench/quality.py colour_shift: mean SR - reference per channel, the worst image's worst channel
        Column("colour shift /255 worst", _colour_worst),
        PSNR_VS_HR,
    )),
)
# every column once, in group order
NUMERIC_COLUMNS: tuple[Column, ...] = tuple(c for g in GROUPS for c in g.columns)


def sensitivity_links(report: dict, out: str | Path | None = None) -> list[tuple[str, str]]:
    """(backend name, path of its per-layer INT8 sensitivity plot, relative to `out` if given) per backend."""
    links = []
    for b in report["backends"]:
        plot = (b.get("sensitivity") or {}).get("plot")
        if plot:
            links.append((b["name"], os.path.relpath(plot, out) if out else plot))
    return links
