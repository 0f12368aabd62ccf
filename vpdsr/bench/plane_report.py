"""The perception-distortion plane of a bench report: one point per backend and baseline.

Distortion is PSNR against HR (the report's `psnr_vs_hr`, RGB); perception is CLIPIQA where every
point has it (its weights are present), else PIQE (no weights needed, lower is better). Points:
every backend that ran, bicubic, the GAN baseline and the teacher when they ran, and HR itself
(drawn at the right edge, never compared). The geometry, the Pareto front and the dominance
sentences come from :mod:`vpdsr.bench.plane`; this module only picks the points from the rows,
writes the report's `plane` section (with the tolerances that decided dominance) and the blocks the
Markdown and HTML pages render of it.

Example:
    >>> section = plane_section(report["backends"], report["baselines"])
    >>> section["sentences"]  # e.g. ["realesrgan-x4plus dominates bicubic: ..."]
"""
from __future__ import annotations

import math

from vpdsr.bench.blocks import Figure, Items, TableBlock, Text, markdown_blocks
from vpdsr.bench.plane import PlanePoint, perception_distortion_plane, plane_svg, tolerances
from vpdsr.bench.tables import Row, Table
from vpdsr.errors import InputError

DISTORTION = "psnr_vs_hr"
SVG_NAME = "plane.svg"  # the figure beside report.md (which embeds it) in a report folder
METRIC_ORDER = ("clipiqa", "piqe")  # the first one every point has is used


def _value(row: dict, key: str):
    v = (row.get("quality") or {}).get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _candidates(backends: list[dict], baselines: list[dict]) -> list[tuple[dict, str]]:
    rows = [(b, "backend") for b in backends if b.get("status") == "ok"]
    rows += [(b, b.get("kind", "bicubic")) for b in baselines if b.get("status") == "ok"]
    return rows


def plane_section(backends: list[dict], baselines: list[dict]) -> dict:
    """The report's `plane`: metric, points, Pareto front, dominance sentences (or why it is missing)."""
    rows = _candidates(backends, baselines)
    with_psnr = [(r, k) for r, k in rows if _value(r, DISTORTION) is not None]
    if not with_psnr:
        return {"available": False, "reason": "PSNR vs HR needs HR images (`--hr`)", "points": []}
    metric = next((m for m in METRIC_ORDER if all(_value(r, m) is not None for r, _ in with_psnr)), None)
    if metric is None:  # some point lacks PIQE (an image too small for it): leave those out, say which
        metric = "piqe"
    points, left_out = [], []
    for row, kind in with_psnr:
        perception = _value(row, metric)
        if perception is None:
            left_out.append(f"{row['name']}: no {metric}")
            continue
        points.append(PlanePoint(row["name"], _value(row, DISTORTION), perception, kind))
    if not [p for p in points if p.kind != "hr"]:
        return {"available": False, "reason": f"no point has both PSNR vs HR and {metric}", "points": [],
                "left_out": left_out}
    plane = perception_distortion_plane(points, metric)
    psnr_tol, perception_tol = tolerances(metric)
    return {
        "available": True, "reason": None, "metric": metric, "distortion": DISTORTION,
        "points": [{"name": p.name, "kind": p.kind, "psnr": p.psnr, "perception": p.perception} for p in points],
        "front": plane.front, "dominated": plane.dominated, "sentences": plane.sentences, "left_out": left_out,
        "tolerance": {"psnr_db": psnr_tol, metric: perception_tol},
    }


def points_of(section: dict) -> list[PlanePoint]:
    """The PlanePoints of a report's `plane` section (as read back from report.json: "inf" strings too)."""
    return [PlanePoint(p["name"], float(p["psnr"]), float(p["perception"]), p["kind"]) for p in section["points"]]


def section_svg(section: dict) -> str | None:
    """The figure of a `plane` section (None when the section has none)."""
    if not section or not section.get("available"):
        return None
    return plane_svg(points_of(section), section["metric"], section["front"])


def save_png(section: dict, path, dpi: int = 120) -> None:
    """The section's figure as a PNG (the SVG's raster twin, for docs and issue notes)."""
    from vpdsr.bench.plane import plane_figure

    if not section or not section.get("available"):
        raise InputError(f"the report's plane was not drawn: {(section or {}).get('reason', 'no plane section')}")
    plane_figure(points_of(section), section["metric"], section["front"]).savefig(str(path), dpi=dpi)


def tolerance_line(section: dict) -> str | None:
    """What "dominates" means in this section: the tolerances within which an axis is a tie."""
    tol = section.get("tolerance")
    if not tol:  # a report written before the section carried them
        return None
    metric = section["metric"]
    digits = 1 if metric == "piqe" else 3
    return (f"Dominates = PSNR at most {tol['psnr_db']:g} dB lower (within it a tie, whichever side), {metric.upper()} "
            f"no worse, and better by more than the tolerance on one axis; tolerances: {tol['psnr_db']:g} dB PSNR, "
            f"{tol[metric]:.{digits}f} {metric.upper()}.")


def plane_blocks(section: dict, svg: str | None = None, missing: str = "the figure needs matplotlib") -> tuple:
    """The report's blocks of a `plane` section: what is plotted, the figure, the front, who dominates whom (and
    by which tolerances), the points."""
    if not section.get("available"):
        return (Text(f"Not drawn: {section.get('reason')}."),)
    metric = section["metric"]
    better = "lower" if metric == "piqe" else "higher"
    blocks: list = [Text(f"PSNR vs HR (higher is better) against {metric.upper()} ({better} is better)."),
                    Figure("Perception-distortion plane", svg=svg, file=SVG_NAME, missing=missing),
                    Text(f"Not dominated (Pareto front): **{', '.join(section['front'])}**.")]
    blocks.append(Items(tuple(section["sentences"])) if section["sentences"]
                  else Text("No point dominates another (beyond the tolerances)."))
    line = tolerance_line(section)
    if line:
        blocks.append(Text(line))
    digits = 1 if metric == "piqe" else 4
    rows = tuple(Row((p["name"], p["kind"], "inf" if math.isinf(float(p["psnr"])) else f"{float(p['psnr']):.2f}",
                      f"{float(p['perception']):.{digits}f}"), "point") for p in section["points"])
    blocks.append(TableBlock(Table(("point", "kind", "PSNR vs HR dB", metric.upper()), rows, text=2)))
    if section.get("left_out"):
        blocks.append(Text(f"Left out: {'; '.join(section['left_out'])}."))
    return tuple(blocks)


def markdown_lines(section: dict | None) -> list[str]:
    """The Markdown of the plane: front, dominance sentences and their tolerances, the points."""
    if not section:
        return []
    return ["", "## Perception-distortion plane", *markdown_blocks(plane_blocks(section))]
