"""Figures of the report, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Plots come back as inline SVG text; the image crops as a base64 PNG (photos are smaller as PNG).
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np

from vpdsr.bench.columns import measured

CROPS_PER_ROW = 6


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: it is inlined in HTML


def _png_b64(fig, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _ok(backends: list[dict]) -> list[dict]:
    return [b for b in backends if measured(b) and b.get("latency_ms")]  # kept failed rows too: they have figures


def latency_bars(backends: list[dict], reference: str) -> str | None:
    """Horizontal bars of p50 latency per image, whiskers to p90 and p99; SVG text."""
    rows = _ok(backends)
    if not rows:
        return None
    fig = _figure(8, 0.45 * len(rows) + 1.2)
    ax = fig.add_subplot()
    names = [b["name"] for b in rows]
    p50 = np.array([b["latency_ms"]["p50"] for b in rows])
    p90 = np.array([b["latency_ms"]["p90"] for b in rows])
    p99 = np.array([b["latency_ms"]["p99"] for b in rows])
    y = np.arange(len(rows))[::-1]
    colors = ["#444444" if n == reference else "#3b7dd8" for n in names]
    ax.barh(y, p50, color=colors, height=0.6)
    ax.errorbar(p90, y, fmt="|", color="#d8573b", markersize=10, label="p90")
    ax.errorbar(p99, y, fmt="x", color="#8b1a1a", markersize=6, label="p99")
    for yi, v in zip(y, p50):
        ax.text(v, yi, f" {v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=9)
    ax.set_xlabel("latency per image, ms (bar: p50)")
    ax.set_xlim(0, max(p99.max(), p50.max()) * 1.2)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _drift_axis(rows: list[dict]) -> tuple[str, str]:
    """The quality axis of the scatter: CLIPIQA drift, else PSNR-vs-HR drift, else PSNR vs the reference."""
    for key, label in (("clipiqa_drift", "CLIPIQA drift vs reference (mean)"),
                       ("psnr_vs_hr_drift", "PSNR-vs-HR drift vs reference, dB (mean)")):
        if all((b.get("quality") or {}).get(key) is not None for b in rows if (b.get("quality") or {}).get(
                "psnr_vs_ref") is not None):
            return key, label
    return "psnr_vs_ref", "PSNR vs reference output, dB (higher = closer)"


def drift_scatter(backends: list[dict], reference: str) -> str | None:
    """p50 latency against quality drift; SVG.

    The quality axis is CLIPIQA drift when CLIPIQA ran, else the drift of PSNR against HR, else
    PSNR against the reference output (a backend identical to the reference is drawn at the top).
    """
    rows = _ok(backends)
    if not rows:
        return None
    key, label = _drift_axis(rows)
    points = []
    for b in rows:
        q = b.get("quality") or {}
        if b["name"] == reference:
            if key != "psnr_vs_ref":
                points.append((b, 0.0, ""))
            continue
        y = q.get(key)
        if y is not None:
            points.append((b, y, ""))
    finite = [y for _, y, _ in points if math.isfinite(y)]
    top = (max(finite) + 5.0) if finite else 60.0
    points = [(b, y, n) if math.isfinite(y) else (b, top, " (identical)") for b, y, n in points]
    fig = _figure(8, 4.2)
    ax = fig.add_subplot()
    for k, (b, y, note) in enumerate(points):
        x = b["latency_ms"]["p50"]
        ax.scatter([x], [y], s=50, color="#444444" if b["name"] == reference else "#3b7dd8", zorder=3)
        # alternate label sides so that backends with close figures stay readable
        ax.annotate(b["name"] + note, (x, y), textcoords="offset points", xytext=(5, 5 if k % 2 == 0 else -12),
                    fontsize=8)
    if key != "psnr_vs_ref":
        ax.axhline(0.0, color="#999999", lw=0.8)
    if key != "clipiqa_drift":
        ax.set_title("CLIPIQA unavailable: a fidelity figure is shown instead", fontsize=9)
    ax.set_ylabel(label)
    ax.set_xlabel("p50 latency per image, ms (lower is faster)")
    xs = [b["latency_ms"]["p50"] for b, _, _ in points]
    if xs:
        ax.set_xlim(0, max(xs) * 1.25)
    ax.grid(alpha=0.3)
    return _svg(fig)


def crops_figure(crops: dict[str, np.ndarray], box: tuple[int, int, int], reference: str,
                 order: list[str]) -> str | None:
    """Side-by-side crops (bicubic, HR, reference, each backend) over |backend - reference| maps; PNG."""
    if reference not in crops or box is None:
        return None
    from matplotlib.colors import PowerNorm

    y, x, size = box

    def cut(img: np.ndarray) -> np.ndarray:
        return np.clip(img[y : y + size, x : x + size], 0, 1)

    ref = cut(crops[reference])
    top = [(k, label) for k, label in (("bicubic", "bicubic"), ("hr", "HR"), (reference, f"{reference} (reference)"))
           if k in crops]
    top += [(name, name) for name in order if name in crops and name != reference]
    diffs = {name: np.abs(cut(crops[name]) - ref).mean(axis=2) for name, _ in top if name not in ("bicubic", "hr")
             and name != reference}
    vmax = max([float(d.max()) for d in diffs.values()] + [1e-6])
    cols = min(len(top), CROPS_PER_ROW)
    bands = -(-len(top) // cols)  # each band: a row of crops over a row of difference maps
    fig = _figure(2.1 * cols + 0.9, 4.4 * bands)
    grid = fig.add_gridspec(2 * bands, cols)
    im = None
    for k, (name, label) in enumerate(top):
        band, c = divmod(k, cols)
        ax = fig.add_subplot(grid[2 * band, c])
        ax.imshow(cut(crops[name]), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
        if name in diffs:
            ax2 = fig.add_subplot(grid[2 * band + 1, c])
            # one scale for all maps (comparable), square-root norm so small errors still show
            im = ax2.imshow(diffs[name], cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=vmax), interpolation="nearest")
            ax2.set_title(f"|{name} - ref|, max {diffs[name].max():.3g}", fontsize=8)
            ax2.set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6 / bands, location="right", label="mean abs difference")
    return _png_b64(fig, dpi=90)
