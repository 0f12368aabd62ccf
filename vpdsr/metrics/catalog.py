"""What each quality metric means: one table for `vpdsr score`, its --help and the bench report.

Each entry says which direction is better, the value range, whether the metric compares against
a reference image (full-reference) and whether it needs downloaded weights (CLIP, AlexNet),
which are not on every machine.

Example:
    >>> METRICS["piqe"].direction
    'lower'
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vpdsr.errors import InputError


@dataclass(frozen=True)
class MetricInfo:
    """One metric's facts.

    Attributes:
        name: The key used in --metrics, JSON rows and reports.
        direction: "lower" or "higher": which values are better.
        range: The value range as text (pyiqa's ``score_range`` where pyiqa computes it).
        needs_reference: Full-reference (scored against a reference image of the same size).
        needs_weights: Needs pretrained weights that may be absent (then it is reported unavailable).
        meaning: One line for --help and reports.
        source: The code that computes it.
        fmt: How tables print a value.
    """

    name: str
    direction: str
    range: str
    needs_reference: bool
    needs_weights: bool
    meaning: str
    source: str
    fmt: str = "{:.4f}"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def to_dict(self) -> dict:
        """The JSON form (without the table format)."""
        out = asdict(self)
        del out["fmt"], out["name"]
        return out


_FIDELITY = "vpdsr.metrics.fidelity (BasicSR conventions, scikit-image SSIM)"
METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("piqe", "lower", "0..100", False, False,
                   "no-reference blockiness/noise of natural-scene statistics (photos ~20-40, blur 80+)",
                   "pyiqa create_metric('piqe')", "{:.2f}"),
        MetricInfo("gmsd", "lower", "0..~1", True, False,
                   "deviation of gradient-magnitude similarity to the reference, luma (0 = same edges)",
                   "pyiqa create_metric('gmsd')"),
        MetricInfo("ms_ssim", "higher", "0..1", True, False,
                   "multi-scale structural similarity to the reference, luma, 5 scales (needs >=161 px a side)",
                   "pyiqa create_metric('ms_ssim')"),
        MetricInfo("psnr", "higher", "0..inf dB", True, False,
                   "peak signal-to-noise ratio to the reference, RGB, peak 1 (inf = identical)",
                   _FIDELITY, "{:.2f}"),
        MetricInfo("psnr_y", "higher", "0..inf dB", True, False,
                   "PSNR on BT.601 Y as SR papers report it (use --crop-border SCALE)",
                   _FIDELITY, "{:.2f}"),
        MetricInfo("ssim", "higher", "-1..1", True, False,
                   "structural similarity to the reference, mean over RGB (Wang et al. 2004)",
                   _FIDELITY),
        MetricInfo("ssim_y", "higher", "-1..1", True, False,
                   "SSIM on BT.601 Y as SR papers report it (use --crop-border SCALE)",
                   _FIDELITY),
        MetricInfo("clipiqa", "higher", "0..1", False, True,
                   "no-reference CLIP-IQA quality from CLIP RN50 prompts (needs OpenAI's RN50.pt)",
                   "vpdsr.metrics.clipiqa.ClipIqa (pyiqa create_metric('clipiqa'))"),
        MetricInfo("lpips", "lower", "0..~1", True, True,
                   "learned perceptual distance to the reference, AlexNet v0.1 (needs its weights)",
                   "vpdsr.metrics.lpips.Lpips (pyiqa's lpips computation)"),
    )
}


def parse_metric_names(spec: str) -> list[str]:
    """``"piqe,gmsd"`` (or ``"all"``) -> known names in the order given, duplicates dropped.

    Raises:
        InputError: an unknown name or an empty list.
    """
    names = list(METRICS) if spec.strip() == "all" else [n.strip().lower() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        bad = ", ".join(unknown) if unknown else repr(spec)
        raise InputError(f"`--metrics`: unknown metric {bad} (expected a comma list of {', '.join(METRICS)}, or all)")
    return list(dict.fromkeys(names))


def describe(names: list[str] | None = None) -> str:
    """A plain-text table of the metrics (for --help epilogs and report notes)."""
    rows = [(m.name, f"{m.direction} better", m.range, "yes" if m.needs_reference else "no",
             "yes" if m.needs_weights else "no", m.meaning)
            for m in (METRICS[n] for n in (names or METRICS))]
    head = ("metric", "direction", "range", "reference", "weights", "meaning")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in [head, *rows]]
    return "\n".join(line.rstrip() for line in lines)
