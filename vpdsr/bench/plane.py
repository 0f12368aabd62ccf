"""The perception-distortion plane (Blau & Michaeli, 2018): PSNR vs HR against a perceptual score.

One point per backend (plus bicubic, the teacher, a GAN baseline when present). Distortion is
PSNR against HR (higher is better); perception is PIQE (no-reference, lower is better) or CLIPIQA
(higher is better). A point dominates another when its PSNR is lower by no more than the PSNR
tolerance (within it the two are a tie), its perceptual score is no worse, and it is better by more
than the tolerance on one axis. Backends of the same model differ by hundredths of a dB: a 0.01 dB
difference, on either side, decides nothing.

Pure functions: no report, no files. The figure is SVG text drawn on matplotlib's Agg canvas.

Example:
    >>> points = [PlanePoint("bicubic", 28.7, 84.0, "bicubic"), PlanePoint("tiny", 29.8, 76.0, "backend")]
    >>> plane = perception_distortion_plane(points, "piqe")
    >>> plane.sentences
    ['tiny dominates bicubic: PSNR 29.80 vs 28.70 dB, PIQE 76.0 vs 84.0 (lower is better)']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from vpdsr.errors import InputError

KINDS = ("backend", "bicubic", "teacher", "gan", "hr")
# metric -> (label, lower is better, default tolerance)
METRICS = {"piqe": ("PIQE", True, 0.5), "clipiqa": ("CLIPIQA", False, 0.005)}
PSNR_TOLERANCE_DB = 0.05
_STYLE = {  # kind -> (marker, colour)
    "backend": ("o", "#3b7dd8"),
    "bicubic": ("s", "#777777"),
    "teacher": ("^", "#2e9e5b"),
    "gan": ("D", "#d8573b"),
    "hr": ("*", "#222222"),
}


@dataclass(frozen=True)
class PlanePoint:
    """One method on the plane.

    Attributes:
        name: what the report calls it (a backend name, "bicubic", ...).
        psnr: PSNR (Y or RGB, as the report measures it) against HR, dB.
        perception: the perceptual score (PIQE or CLIPIQA) of the same outputs.
        kind: backend | bicubic | teacher | gan | hr (marker and colour; `hr` is drawn but never compared).
    """

    name: str
    psnr: float
    perception: float
    kind: str = "backend"


@dataclass
class Plane:
    """What `perception_distortion_plane` returns.

    Attributes:
        svg: the figure (inline SVG text).
        front: names of the points that no other point dominates, best PSNR first.
        dominated: {dominated point: [the points that dominate it]}.
        sentences: one line per dominated point, e.g. "X dominates Y: ...".
    """

    svg: str
    front: list[str]
    dominated: dict[str, list[str]] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)


def dominates(a: PlanePoint, b: PlanePoint, metric: str = "piqe", psnr_tol: float = PSNR_TOLERANCE_DB,
              perception_tol: float | None = None) -> bool:
    """True when `a`'s PSNR is at most `psnr_tol` below `b`'s (a tie), its perceptual score no worse, and it is
    better by more than the tolerance on one axis."""
    tol = tolerances(metric, psnr_tol, perception_tol)[1]
    lower = _metric(metric)[1]
    gain = (b.perception - a.perception) if lower else (a.perception - b.perception)
    d_psnr = a.psnr - b.psnr
    return d_psnr >= -psnr_tol and gain >= 0 and (d_psnr > psnr_tol or gain > tol)


def tolerances(metric: str = "piqe", psnr_tol: float = PSNR_TOLERANCE_DB,
               perception_tol: float | None = None) -> tuple[float, float]:
    """(PSNR dB, perceptual score): the PSNR difference within which two points tie, and the gains a point must
    exceed on one axis to dominate (the metric's default for None)."""
    default = _metric(metric)[2]
    return psnr_tol, default if perception_tol is None else perception_tol


def pareto(points: list[PlanePoint], metric: str = "piqe", psnr_tol: float = PSNR_TOLERANCE_DB,
           perception_tol: float | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """(front, dominated): the non-dominated names (best PSNR first) and who dominates each other point.

    Points of kind `hr` (the ground truth, infinite PSNR) are left out of the comparison.
    """
    pts = _checked(points, metric)
    compared = [p for p in pts if p.kind != "hr"]
    dominated: dict[str, list[str]] = {}
    for b in compared:
        winners = [a.name for a in compared if a is not b and dominates(a, b, metric, psnr_tol, perception_tol)]
        if winners:
            dominated[b.name] = winners
    front = [p.name for p in sorted(compared, key=lambda p: -p.psnr) if p.name not in dominated]
    return front, dominated


def dominance_sentences(points: list[PlanePoint], metric: str = "piqe", psnr_tol: float = PSNR_TOLERANCE_DB,
                        perception_tol: float | None = None) -> list[str]:
    """One sentence per dominated point, naming the dominating point closest to it in PSNR first."""
    label, lower, _ = _metric(metric)
    by_name = {p.name: p for p in _checked(points, metric)}
    _, dominated = pareto(points, metric, psnr_tol, perception_tol)
    out = []
    for loser, winners in dominated.items():
        b = by_name[loser]
        ordered = sorted((by_name[w] for w in winners), key=lambda a: a.psnr - b.psnr)
        a = ordered[0]
        others = f" (also: {', '.join(w.name for w in ordered[1:])})" if len(ordered) > 1 else ""
        better = "lower" if lower else "higher"
        digits = 1 if lower else 3
        out.append(f"{a.name} dominates {b.name}: PSNR {a.psnr:.2f} vs {b.psnr:.2f} dB, {label} "
                   f"{a.perception:.{digits}f} vs {b.perception:.{digits}f} ({better} is better){others}")
    return out


def plane_svg(points: list[PlanePoint], metric: str = "piqe", front: list[str] | None = None,
              title: str | None = None) -> str:
    """The plane as SVG text: PSNR on x (right = better), the perceptual score on y (up = better)."""
    from vpdsr.bench.plots import _svg

    return _svg(plane_figure(points, metric, front, title))


def plane_figure(points: list[PlanePoint], metric: str = "piqe", front: list[str] | None = None,
                 title: str | None = None):
    """The matplotlib Figure behind `plane_svg` (one scatter collection per point, in order)."""
    from vpdsr.bench.plots import _figure

    label, lower, _ = _metric(metric)
    pts = _checked(points, metric)
    if front is None:
        front, _ = pareto(pts, metric)
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    finite = [p.psnr for p in pts if math.isfinite(p.psnr)]
    right = max(finite) + 0.5 if finite else 40.0
    seen: set[str] = set()
    for k, p in enumerate(pts):
        marker, colour = _STYLE[p.kind]
        x = p.psnr if math.isfinite(p.psnr) else right  # HR (inf dB) sits at the right edge
        ax.scatter([x], [p.perception], s=90 if p.kind == "hr" else 55, marker=marker, color=colour, zorder=3,
                   edgecolors="black" if p.name in front else "none", linewidths=1.0,
                   label=p.kind if p.kind not in seen else None)
        seen.add(p.kind)
        ax.annotate(p.name, (x, p.perception), textcoords="offset points", xytext=(6, 6 if k % 2 == 0 else -12),
                    fontsize=8)
    line = sorted((p for p in pts if p.name in front), key=lambda p: p.psnr)
    if len(line) > 1:
        ax.plot([p.psnr for p in line], [p.perception for p in line], ls="--", color="#999999", lw=1, zorder=2,
                label="Pareto front")
    if lower:
        ax.invert_yaxis()  # up = better on both kinds of score
    ax.set_xlabel("PSNR vs HR, dB (right = less distortion)")
    ax.set_ylabel(f"{label} ({'lower' if lower else 'higher'} is better; up = better perception)")
    ax.set_title(title or f"Perception-distortion plane ({label})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def perception_distortion_plane(points: list[PlanePoint], metric: str = "piqe", psnr_tol: float = PSNR_TOLERANCE_DB,
                                perception_tol: float | None = None, title: str | None = None) -> Plane:
    """The figure, the Pareto front and one sentence per dominated point.

    Args:
        points: at least one PlanePoint; names must be unique.
        metric: piqe (lower is better) or clipiqa (higher is better).
        psnr_tol: PSNR differences (dB) up to this are a tie: neither a gain nor a loss.
        perception_tol: a perceptual gain at or below this alone does not make a point dominate (default:
            0.5 PIQE, 0.005 CLIPIQA).
        title: the figure's title.

    Raises:
        InputError: no points, a duplicate name, an unknown kind or metric, a NaN score.
    """
    front, dominated = pareto(points, metric, psnr_tol, perception_tol)
    return Plane(svg=plane_svg(points, metric, front, title), front=front, dominated=dominated,
                 sentences=dominance_sentences(points, metric, psnr_tol, perception_tol))


def _metric(metric: str) -> tuple[str, bool, float]:
    if metric not in METRICS:
        raise InputError(f"perception metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric]


def _checked(points: list[PlanePoint], metric: str) -> list[PlanePoint]:
    _metric(metric)
    pts = list(points)
    if not pts:
        raise InputError("the perception-distortion plane needs at least one point")
    names = [p.name for p in pts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"perception-distortion points must have unique names, repeated: {dup}")
    for p in pts:
        if p.kind not in KINDS:
            raise InputError(f"point {p.name!r}: `kind` must be one of {', '.join(KINDS)}, got {p.kind!r}")
        if math.isnan(p.psnr) or not math.isfinite(p.perception):
            raise InputError(f"point {p.name!r}: PSNR and {metric} must be numbers, got {p.psnr} and {p.perception}")
        if p.psnr == math.inf and p.kind != "hr":
            raise InputError(f"point {p.name!r}: infinite PSNR (identical to HR) is only allowed for kind `hr`")
    return pts
