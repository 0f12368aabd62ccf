"""INT8 accuracy budgets (`--int8-budget METRIC:VALUE`) and the validation tiles they are measured on.

A budget is a metric of the INT8 artifact's output against the torch fp32 output on a held-out
validation set, and the value it must reach:

- `psnr-vs-ref:40`: the WORST validation tile's PSNR (dB, RGB) against torch fp32 is at least 40;
- `ms-ssim-vs-ref:0.99`: the worst tile's MS-SSIM (pyiqa's, luma) against torch fp32 is at least 0.99
  (MS-SSIM needs 161 px a side: an x4 tile of at least 41 LR px);
- `piqe-drift:2`: the largest |PIQE(int8) - PIQE(fp32)| over the tiles is at most 2 (PIQE: 0..100).

The worst tile, not the mean: a budget should hold on every image a user sends, and one washed-out
photo is what a mean hides (measured on one INT8 export: 1.7 dB lost on average, 2.8 dB on the worst
photo).

The validation set (:class:`ValidationTiles`) is a seeded set of tile-sized crops of photos degraded
exactly as the export's held-out photos are (bicubic x4 at 8-bit levels), by default of the `val`
sample subset: disjoint from the calibration photos (the export refuses an overlap) and from the
held-out photos the export validates and `vpdsr bench` reports on, so the final figures are not the
ones the search tuned on.

Example:
    >>> budget = Budget.parse("psnr-vs-ref:40")
    >>> budget.holds(budget.aggregate([41.0, 40.5]))
    True
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vpdsr.errors import InputError
from vpdsr.export.calibration import CalibrationSet

DEFAULT_VAL = "samples:val"
VAL_COUNT = 8
VAL_SEED = 1234
SCALE = 4


@dataclass(frozen=True)
class _Metric:
    higher_is_better: bool
    unit: str
    meaning: str
    min_output_side: int = 1


METRICS = {
    "psnr-vs-ref": _Metric(True, "dB", "worst validation tile's PSNR against torch fp32"),
    "ms-ssim-vs-ref": _Metric(True, "", "worst validation tile's MS-SSIM against torch fp32", 161),
    "piqe-drift": _Metric(False, "", "largest |PIQE(artifact) - PIQE(torch fp32)| over the validation tiles", 8),
}


@dataclass(frozen=True)
class Budget:
    """A metric and the value the INT8 artifact must reach on the validation tiles."""

    metric: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        """'psnr-vs-ref:40' -> Budget; anything else is a one-line InputError."""
        name, sep, raw = str(text).partition(":")
        expected = f"expected METRIC:VALUE with METRIC one of {', '.join(METRICS)} (e.g. psnr-vs-ref:40)"
        if not sep or name not in METRICS:
            raise InputError(f"`--int8-budget` {text!r}: {expected}")
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"`--int8-budget` {text!r}: {raw!r} is not a number; {expected}") from None
        if not math.isfinite(value) or (name == "ms-ssim-vs-ref" and not 0 < value <= 1) or value < 0:
            raise InputError(f"`--int8-budget` {text!r}: the value is out of range for {name} "
                             f"({'0..1' if name == 'ms-ssim-vs-ref' else '>= 0'})")
        return cls(name, value)

    def __str__(self) -> str:
        return f"{self.metric}:{self.value:g}"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    def check_tile(self, tile: int) -> None:
        """InputError if the x4 output of a `tile` LR tile is too small for the metric."""
        need = METRICS[self.metric].min_output_side
        if SCALE * tile < need:
            raise InputError(f"`--int8-budget` {self}: {self.metric} needs outputs of at least {need} px a side; "
                             f"`--tile` {tile} gives {SCALE * tile} (use --tile {-(-need // SCALE)} or more)")

    def scorer(self, refs: list[np.ndarray]) -> Callable[[list[np.ndarray]], list[float]]:
        """A function of the artifact's outputs (HxWx3, in the order of `refs`) -> per-tile values."""
        from vpdsr.export.validation import safe_psnr

        if self.metric == "psnr-vs-ref":
            return lambda outs: [safe_psnr(o, r) for o, r in zip(outs, refs)]
        if self.metric == "ms-ssim-vs-ref":
            from vpdsr.metrics.perceptual import ms_ssim

            return lambda outs: [_finite_or(ms_ssim, 0.0, o, r) for o, r in zip(outs, refs)]
        from vpdsr.metrics.perceptual import piqe

        ref_piqe = [piqe(r) for r in refs]
        return lambda outs: [abs(_finite_or(piqe, 100.0, o) - p) for o, p in zip(outs, ref_piqe)]

    def aggregate(self, values: list[float]) -> float:
        """The worst per-tile value: the minimum (higher is better) or the maximum (lower is better)."""
        return float(min(values) if self.higher_is_better else max(values))

    def holds(self, score: float) -> bool:
        return score >= self.value if self.higher_is_better else score <= self.value

    def better(self, a: float, b: float) -> float:
        """How much better `a` is than `b` (positive: better), in the metric's own units."""
        return (a - b) if self.higher_is_better else (b - a)


def _finite_or(fn, worst: float, *images) -> float:
    if not all(np.isfinite(im).all() for im in images):
        return worst
    v = fn(*images)
    return v if math.isfinite(v) else worst


@dataclass
class ValidationTiles(CalibrationSet):
    """Seeded tile crops of photos degraded as the export's held-out photos are (bicubic x4, 8-bit levels).

    Same fields as :class:`CalibrationSet` (`source` default: the `val` samples); `count` crops.
    """

    source: str = DEFAULT_VAL

    def to_lr(self, src, photo: np.ndarray) -> np.ndarray:
        from vpdsr.export.validation import holdout_images

        return holdout_images(str(src.path), scale=SCALE)[0][1]

    def describe(self) -> dict:
        return {**super().describe(), "lr": f"bicubic x{SCALE} of the photo, 8-bit levels"}


def source_hashes(source: str, limit: int | None = None) -> dict[str, str]:
    """{name: pixel sha256} of the first `limit` images of an `--images`-style source."""
    from vpdsr.data.samples import resolve_images
    from vpdsr.export.calibration import image_sha256

    return {src.name: image_sha256(src.load()) for src in resolve_images(source)[:limit]}


def torch_outputs(model, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The torch fp32 model's `sr` on each feed, as HxWx3 arrays (the budget's reference)."""
    from vpdsr.runtimes.torch_runner import TorchRunner

    with TorchRunner(model, noise_channels=model.latent_channels or 0) as runner:
        return [runner.infer(f)["sr"][0].transpose(1, 2, 0) for f in feeds]


# The targets `vpdsr distill quantize` trains for (the quantization-aware forms of these two).
QAT_TARGETS = ("ort-int8", "openvino-int8")


def qat_command(model_source: str, target: str, out_dir: str) -> str:
    """The `vpdsr distill quantize` command that trains `target` with every layer INT8."""
    import shlex

    return (f"vpdsr distill quantize --model {shlex.quote(model_source)} --out {shlex.quote(out_dir)} "
            f"--targets {target}")


def speed_given_back(latency_ms: dict) -> float | None:
    """The share of the time INT8 saved over fp32 that the budget's float layers give back
    (0: as fast as all-INT8, 1: as slow as fp32); None without the three figures or without a saving."""
    try:
        fp32, int8, final = (float(latency_ms[k]) for k in ("fp32", "all_int8", "final"))
    except (KeyError, TypeError, ValueError):
        return None
    saved = fp32 - int8
    return None if not saved > 0 else (final - int8) / saved


def qat_advice(target: str, control: dict | None, model_source: str, out_dir: str,
               unreachable: bool = False) -> str | None:
    """One line when post-training INT8 cannot meet the budget without giving back more than half of
    INT8's speed (or cannot meet it at all), naming the quantization-aware command that keeps it INT8.

    Returns None when the budget held at a cost of at most half the saving, or for a target that has no
    quantization-aware form.
    """
    if target not in QAT_TARGETS:
        return None
    command = qat_command(model_source, target, out_dir)
    if unreachable:
        return (f"{target}: post-training INT8 cannot meet the budget with any layers kept in float; "
                f"quantization-aware training keeps every layer INT8: {command}")
    control = control or {}
    added = len(control.get("kept_float_added", []))
    share = speed_given_back(control.get("latency_ms") or {})
    if not added or share is None or share <= 0.5:
        return None  # all-INT8 met the budget (any time lost is noise), or the float layers cost little
    ms = control["latency_ms"]
    return (f"{target}: the budget {control.get('budget', '')} holds only with {added} layer(s) in float, "
            f"which give back {share:.0%} of INT8's speed ({ms['all_int8']:g} ms all-INT8, "
            f"{ms['final']:g} ms now, fp32 {ms['fp32']:g}); quantization-aware training keeps every layer INT8: "
            f"{command}")
