"""Drift: backend minus reference, with the worst case on the metric's bad side."""
from __future__ import annotations

import math

import pytest

from vpdsr.errors import InputError
from vpdsr.metrics.drift import compute_drift


def test_higher_is_better_worst_is_largest_drop() -> None:
    drift = compute_drift([0.50, 0.70, 0.64], [0.55, 0.60, 0.65])
    assert drift.per_image == pytest.approx([-0.05, 0.10, -0.01])
    assert drift.mean == pytest.approx(0.04 / 3)
    assert drift.worst == pytest.approx(-0.05)


def test_lower_is_better_worst_is_largest_rise() -> None:
    drift = compute_drift([0.20, 0.10], [0.15, 0.12], higher_is_better=False)
    assert drift.per_image == pytest.approx([0.05, -0.02])
    assert drift.worst == pytest.approx(0.05)


def test_all_improved_worst_is_smallest_gain() -> None:
    drift = compute_drift([31.0, 30.5], [30.0, 30.0])
    assert drift.worst == pytest.approx(0.5)
    assert drift.to_dict() == {"per_image": [1.0, 0.5], "mean": 0.75, "worst": 0.5}


@pytest.mark.parametrize(
    "backend, reference, needle",
    [
        ([1.0, 2.0], [1.0], "2 and 1"),
        ([], [], "at least one"),
        ([math.inf], [30.0], "backend image 0"),
        ([1.0, 2.0], [1.0, math.nan], "reference image 1"),
    ],
)
def test_bad_input(backend, reference, needle) -> None:
    with pytest.raises(InputError, match=needle):
        compute_drift(backend, reference)
