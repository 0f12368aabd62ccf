"""Drift of a metric between a deployed backend and the reference backend (torch fp32).

Sign convention: ``drift = backend - reference``, per image, whatever the metric. So for a
higher-is-better metric (CLIPIQA, PSNR, SSIM) a negative drift is a loss of quality; for a
lower-is-better one (LPIPS) a positive drift is.

``worst`` is the least favourable per-image drift: the minimum for higher-is-better metrics,
the maximum for lower-is-better ones. It is therefore the largest loss when any image lost
quality, and the smallest gain (of the favourable sign) when every image improved. A gate
such as "CLIPIQA may drop by at most 0.01" reads ``drift.worst >= -0.01``.

Example:
    >>> round(compute_drift([0.50, 0.61], [0.52, 0.60]).worst, 6)  # higher is better
    -0.02
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from vpdsr.errors import InputError


@dataclass(frozen=True)
class Drift:
    """Backend-minus-reference differences of one metric over a set of images.

    Attributes:
        per_image: ``backend[i] - reference[i]`` for every image, in input order.
        mean: Mean of ``per_image``.
        worst: Least favourable entry of ``per_image`` (see the module docstring).
    """

    per_image: list[float]
    mean: float
    worst: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compute_drift(
    backend: Sequence[float], reference: Sequence[float], *, higher_is_better: bool = True
) -> Drift:
    """Per-image and aggregate drift of ``backend`` scores against ``reference`` scores.

    Args:
        backend: Metric values of the backend under test, one per image.
        reference: Metric values of the reference backend on the same images, same order.
        higher_is_better: Direction of the metric (decides which side ``worst`` takes).

    Raises:
        InputError: Different lengths, no images, or a non-finite value (e.g. PSNR of
            identical images, ``inf``: such a metric has no meaningful difference).
    """
    backend, reference = [float(v) for v in backend], [float(v) for v in reference]
    if len(backend) != len(reference):
        raise InputError(f"drift needs one backend score per reference score, got {len(backend)} and {len(reference)}")
    if not backend:
        raise InputError("drift needs at least one image, got none")
    for name, values in (("backend", backend), ("reference", reference)):
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise InputError(f"drift needs finite scores, {name} image {bad} has {values[bad]}")
    per_image = [b - r for b, r in zip(backend, reference)]
    worst = min(per_image) if higher_is_better else max(per_image)
    return Drift(per_image=per_image, mean=math.fsum(per_image) / len(per_image), worst=worst)
