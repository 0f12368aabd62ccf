"""Quality of each backend's outputs: perceptual scores, fidelity to the reference and to HR, drift.

Per image a backend gets: PIQE (no-reference, no weights) and CLIPIQA of its output; PSNR/SSIM
(RGB and Y), GMSD, MS-SSIM and LPIPS against the reference backend's output of the same image
(same noise); PSNR/SSIM against the HR image when one is given (``crop_border`` = the scale, as SR
papers do). Per backend: the means, the worst image of each comparison with the reference
(``<metric>_vs_ref_min`` / ``_max`` by the metric's direction), and the drift (backend minus
reference, :mod:`vpdsr.metrics.drift`) of PIQE, CLIPIQA and PSNR-vs-HR, mean and worst.

PIQE, GMSD and MS-SSIM are pyiqa's own numbers through :class:`vpdsr.metrics.score.MetricSet`
(the code of `vpdsr score`). A metric that cannot run is ``None`` with the reason, never a made-up
number: missing weights or pyiqa (for every image), or an image too small (MS-SSIM needs 161
pixels a side; that image's row says so).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vpdsr.errors import VpdsrError
from vpdsr.metrics.catalog import METRICS
from vpdsr.metrics.drift import compute_drift
from vpdsr.metrics.fidelity import fidelity_scores

FIDELITY_KEYS = ("psnr", "psnr_y", "ssim", "ssim_y")
NO_REFERENCE = ("piqe",)  # of every output (its drift is against the reference's output)
FULL_REFERENCE = ("gmsd", "ms_ssim")  # against the reference's output
# The metrics a report shows, in the order its notes explain them.
REPORTED = ("piqe", "clipiqa", "psnr", "ssim", "gmsd", "ms_ssim", "lpips")


@dataclass
class MetricSuite:
    """The learned metrics available on this machine, with the reason for each missing one."""

    clip: object | None = None
    clip_reason: str | None = None
    lpips: object | None = None
    lpips_reason: str | None = None
    no_ref: object | None = None  # MetricSet of NO_REFERENCE
    full_ref: object | None = None  # MetricSet of FULL_REFERENCE

    @classmethod
    def build(cls, clip_weights: str | None = None, lpips_weights: str | None = None, device: str = "cpu",
              want_lpips: bool = True) -> MetricSuite:
        """Load CLIPIQA and LPIPS where their weights are found; otherwise keep the one-line reason."""
        suite = cls()
        try:
            from vpdsr.metrics.clipiqa import ClipIqa

            suite.clip = ClipIqa(clip_weights, device=device)
        except VpdsrError as e:
            suite.clip_reason = "unavailable: " + " ".join(str(e).split())
        if want_lpips:
            try:
                from vpdsr.metrics.lpips import Lpips

                suite.lpips = Lpips(lpips_weights, device=device)
            except VpdsrError as e:
                suite.lpips_reason = "unavailable: " + " ".join(str(e).split())
        else:
            suite.lpips_reason = "unavailable: not asked for"
        from vpdsr.metrics.score import MetricSet, ScoreOptions

        # metrics=None: one that cannot run here (no pyiqa) is recorded as unavailable, not raised
        suite.no_ref = MetricSet(NO_REFERENCE, ScoreOptions(device=device))
        suite.full_ref = MetricSet(FULL_REFERENCE, ScoreOptions(device=device))
        return suite

    def reason(self, name: str) -> str | None:
        """Why metric `name` is computed for no image (None when it runs)."""
        if name == "clipiqa":
            return self.clip_reason
        if name == "lpips":
            return self.lpips_reason
        for metric_set in (self.no_ref, self.full_ref):
            if metric_set is not None and name in metric_set.names:
                return metric_set.unavailable.get(name)
        return None

    def availability(self) -> dict:
        """Each reported metric: available or why not, which direction is better, what it means."""
        out = {}
        for name in REPORTED:
            info = METRICS[name]
            out[name] = {"available": self.reason(name) is None, "reason": self.reason(name),
                         "direction": info.direction, "range": info.range, "meaning": info.meaning}
        return out

    def perceptual(self, image: np.ndarray, reference: np.ndarray | None) -> dict:
        """PIQE of `image`; GMSD and MS-SSIM against `reference` (when given), keys as in the report."""
        row: dict = {}
        sets = [(self.no_ref, None, "")] + ([(self.full_ref, reference, "_vs_ref")] if reference is not None else [])
        for metric_set, ref, suffix in sets:
            if metric_set is None:
                continue
            values, reasons = metric_set.score(image, ref)
            for name, value in values.items():
                row[name + suffix] = value
                if name in reasons:
                    row[f"{name}{suffix}_reason"] = reasons[name]
        return row

    def clipiqa(self, image: np.ndarray) -> float | None:
        return None if self.clip is None else float(self.clip.score_numpy(image))

    def lpips_score(self, image: np.ndarray, reference: np.ndarray) -> float | None:
        return None if self.lpips is None else float(self.lpips.score_numpy(image, reference))


def image_scores(sr: np.ndarray, ref_sr: np.ndarray | None, hr: np.ndarray | None, suite: MetricSuite,
                 scale: int = 4) -> dict:
    """Metrics of one output image (HxWx3 float in [0, 1]).

    Args:
        sr: the backend's output.
        ref_sr: the reference backend's output for the same image (None for the reference itself).
        hr: the ground truth, or None.
        suite: learned metrics.
        scale: border cropped before comparing with HR.
    """
    row: dict = {"clipiqa": suite.clipiqa(sr)}
    row.update(suite.perceptual(sr, ref_sr))
    if ref_sr is not None:
        fid = fidelity_scores(sr, ref_sr).to_dict()
        row.update({f"{k}_vs_ref": v for k, v in fid.items()})
        row[COLOUR_KEY] = colour_shift(sr, ref_sr)
        row["lpips_vs_ref"] = suite.lpips_score(sr, ref_sr)
    if hr is not None:
        fid = fidelity_scores(sr, hr, crop_border=scale).to_dict()
        row.update({f"{k}_vs_hr": v for k, v in fid.items()})
    return row


COLOUR_KEY = "colour_shift_vs_ref"
CHANNELS = ("R", "G", "B")


def colour_shift(image: np.ndarray, reference: np.ndarray) -> list[float]:
    """Mean of image - reference per channel (R, G, B), in 1/255: a cast INT8 puts over a whole photo (a
    darker or bluer output) that PSNR, an average of squared errors, barely shows."""
    d = image.astype(np.float64) - reference.astype(np.float64)
    return [round(float(d[..., c].mean()) * 255.0, 4) for c in range(d.shape[-1])]


def _colour(q: dict, per_image: list[dict]) -> None:
    """The quality object's colour check: the mean shift per channel over the images and the worst one."""
    rows = [(r.get("name"), r[COLOUR_KEY]) for r in per_image if r.get(COLOUR_KEY) is not None]
    q.pop(COLOUR_KEY, None)
    if not rows:
        return
    q[COLOUR_KEY] = [round(math.fsum(v[c] for _, v in rows) / len(rows), 4) for c in range(len(rows[0][1]))]
    name, values = max(rows, key=lambda r: max(abs(v) for v in r[1]))
    c = max(range(len(values)), key=lambda i: abs(values[i]))
    q[f"{COLOUR_KEY}_worst"] = values[c]
    q[f"{COLOUR_KEY}_worst_at"] = f"{CHANNELS[c] if c < len(CHANNELS) else c} on {name}"


def _mean(values: list) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return math.fsum(values) / len(values)


def aggregate(per_image: list[dict], ref_per_image: list[dict] | None, suite: MetricSuite) -> dict:
    """A backend's ``quality`` object: means of the per-image figures, drift against the reference.

    Args:
        per_image: this backend's per-image rows (each with a "name"), in input order.
        ref_per_image: the reference's rows in the same order; None when this is the reference.
        suite: tells why a learned metric is missing.
    """
    keys = [k for k in per_image[0] if k not in ("name", COLOUR_KEY) and not k.endswith("_reason")] if per_image else []
    q: dict = {k: _mean([row.get(k) for row in per_image]) for k in keys}
    _colour(q, per_image)
    for metric in (*FIDELITY_KEYS, *FULL_REFERENCE):  # the worst image against the reference
        k = f"{metric}_vs_ref"
        values = [row.get(k) for row in per_image]
        if k in q and None not in values:
            higher = METRICS[metric].higher_is_better
            q[f"{k}_{'min' if higher else 'max'}"] = min(values) if higher else max(values)
    for key in ("clipiqa", "piqe", "psnr_vs_ref", "ssim_vs_ref", "lpips_vs_ref"):  # always present
        q.setdefault(key, None)
    # the reference's drift against itself is 0 by definition, where the metric exists at all
    for key in ("clipiqa", "piqe"):
        q[f"{key}_drift"] = q[f"{key}_drift_worst"] = None if q[key] is None else 0.0
    if ref_per_image is not None:
        _add_drift(q, per_image, ref_per_image, "clipiqa", "clipiqa_drift")
        _add_drift(q, per_image, ref_per_image, "piqe", "piqe_drift", higher_is_better=False)
        if "psnr_vs_hr" in q:
            _add_drift(q, per_image, ref_per_image, "psnr_vs_hr", "psnr_vs_hr_drift")
    if q["clipiqa"] is None:
        q["clipiqa_reason"] = suite.clip_reason
    if ref_per_image is not None and q.get("lpips_vs_ref") is None:
        q["lpips_reason"] = suite.lpips_reason
    for key, name in (("piqe", "piqe"), ("gmsd_vs_ref", "gmsd"), ("ms_ssim_vs_ref", "ms_ssim")):
        if key in q and q[key] is None:  # for every image (the suite's reason) or for some (the first image's)
            why = suite.reason(name) or next((r[f"{key}_reason"] for r in per_image if f"{key}_reason" in r), None)
            q[f"{key}_reason"] = why
    q["per_image"] = per_image
    return q


def _add_drift(q: dict, rows: list[dict], ref_rows: list[dict], key: str, out: str,
               higher_is_better: bool = True) -> None:
    values, ref_values = [r.get(key) for r in rows], [r.get(key) for r in ref_rows]
    if None in values or None in ref_values or not values:
        q[out] = q[f"{out}_worst"] = None
        return
    drift = compute_drift(values, ref_values, higher_is_better=higher_is_better)
    q[out], q[f"{out}_worst"] = drift.mean, drift.worst
    for row, d in zip(rows, drift.per_image):
        row[out] = d


def metric_notes(report: dict) -> list[str]:
    """One line per metric of the table: what it means, which direction is better, or why it is missing."""
    out = []
    for name, m in report["metrics"].items():
        if not m.get("meaning"):  # a report written before the metrics carried their facts
            if not m["available"]:
                out.append(f"{name}: {m['reason']}")
            continue
        line = f"{name} ({m['direction']} is better, {m['range']}): {m['meaning']}"
        out.append(line if m["available"] else f"{line}. Not computed: {m['reason']}")
    return out
