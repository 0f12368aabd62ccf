"""Quality of each backend's outputs: CLIPIQA, fidelity to the reference and to HR, and drift.

Per image a backend gets: CLIPIQA of its output; PSNR/SSIM (RGB and Y) and LPIPS against the
reference backend's output of the same image (same noise); PSNR/SSIM against the HR image when
one is given (``crop_border`` = the scale, as SR papers do). Per backend: the means, and the drift
(backend minus reference, :mod:`vpdsr.metrics.drift`) of CLIPIQA and of PSNR-vs-HR, mean and worst.

A metric whose weights are missing is ``None`` with the reason, never a made-up number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vpdsr.errors import VpdsrError
from vpdsr.metrics.drift import compute_drift
from vpdsr.metrics.fidelity import fidelity_scores

FIDELITY_KEYS = ("psnr", "psnr_y", "ssim", "ssim_y")


@dataclass
class MetricSuite:
    """The learned metrics available on this machine, with the reason for each missing one."""

    clip: object | None = None
    clip_reason: str | None = None
    lpips: object | None = None
    lpips_reason: str | None = None

    @classmethod
    def build(cls, clip_weights: str | None = None, lpips_weights: str | None = None, device: str = "cpu",
              want_lpips: bool = True) -> "MetricSuite":
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
        return suite

    def availability(self) -> dict:
        return {
            "clipiqa": {"available": self.clip is not None, "reason": self.clip_reason},
            "lpips": {"available": self.lpips is not None, "reason": self.lpips_reason},
        }

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
    if ref_sr is not None:
        fid = fidelity_scores(sr, ref_sr).to_dict()
        row.update({f"{k}_vs_ref": v for k, v in fid.items()})
        row["lpips_vs_ref"] = suite.lpips_score(sr, ref_sr)
    if hr is not None:
        fid = fidelity_scores(sr, hr, crop_border=scale).to_dict()
        row.update({f"{k}_vs_hr": v for k, v in fid.items()})
    return row


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
    keys = [k for k in per_image[0] if k != "name"] if per_image else []
    q: dict = {k: _mean([row[k] for row in per_image]) for k in keys}
    for k in (f"{f}_vs_ref" for f in FIDELITY_KEYS):
        if k in q:
            q[f"{k}_min"] = min(row[k] for row in per_image)
    for key in ("clipiqa", "psnr_vs_ref", "ssim_vs_ref", "lpips_vs_ref"):  # the schema's fields, always present
        q.setdefault(key, None)
    # the reference's drift against itself is 0 by definition, where the metric exists at all
    q["clipiqa_drift"] = q["clipiqa_drift_worst"] = None if q["clipiqa"] is None else 0.0
    if ref_per_image is not None:
        _add_drift(q, per_image, ref_per_image, "clipiqa", "clipiqa_drift")
        if "psnr_vs_hr" in q:
            _add_drift(q, per_image, ref_per_image, "psnr_vs_hr", "psnr_vs_hr_drift")
    if q["clipiqa"] is None:
        q["clipiqa_reason"] = suite.clip_reason
    if ref_per_image is not None and q.get("lpips_vs_ref") is None:
        q["lpips_reason"] = suite.lpips_reason
    q["per_image"] = per_image
    return q


def _add_drift(q: dict, rows: list[dict], ref_rows: list[dict], key: str, out: str) -> None:
    values, ref_values = [r.get(key) for r in rows], [r.get(key) for r in ref_rows]
    if None in values or None in ref_values or not values:
        q[out] = q[f"{out}_worst"] = None
        return
    drift = compute_drift(values, ref_values, higher_is_better=True)
    q[out], q[f"{out}_worst"] = drift.mean, drift.worst
    for row, d in zip(rows, drift.per_image):
        row[out] = d
