"""Regression gates over a finished report: each is a name, a threshold, the value, passed or not.

Gates are evaluated per backend that ran (the reference is not gated against itself):

- ``max-clipiqa-drift X``: the worst per-image CLIPIQA drift (backend minus reference, the
  largest drop) must be >= -X, i.e. CLIPIQA may drop by at most X on any image.
- ``min-psnr-vs-ref DB``: the lowest per-image PSNR (RGB) against the reference's output must be
  >= DB.
- ``max-latency-regression PCT`` (needs ``--baseline``): the p50 latency may grow by at most PCT
  percent over the same backend's p50 in the baseline report.

A backend that was expected to run but failed adds a failed ``backend-ran`` gate.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from vpdsr.errors import InputError


@dataclass
class GateConfig:
    max_clipiqa_drift: float | None = None
    min_psnr_vs_ref: float | None = None
    max_latency_regression: float | None = None  # percent
    baseline: dict | None = None  # a previous report.json, parsed

    def __post_init__(self) -> None:
        if self.max_latency_regression is not None and self.baseline is None:
            raise InputError("`--max-latency-regression` needs `--baseline report.json` to compare with")
        if self.max_clipiqa_drift is not None and self.max_clipiqa_drift < 0:
            raise InputError(f"`--max-clipiqa-drift` must be >= 0, got {self.max_clipiqa_drift}")


@dataclass
class Gate:
    name: str
    backend: str
    threshold: float
    value: float | str | None
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name}[{self.backend}]: {self.detail}"


def read_baseline(path: str | Path) -> dict:
    """Parse a previous report.json; InputError when it is not one."""
    from vpdsr.utils import read_json

    path = Path(path)
    data = read_json(path, InputError, "file not found (expected a report.json from `vpdsr bench`)",
                     label=f"--baseline {path}")
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("backends"), list):
        raise InputError(f"--baseline {path}: not a vpdsr report.json (schema 1 with a `backends` list)")
    return data


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def evaluate(backends: list[dict], reference: str, cfg: GateConfig) -> list[Gate]:
    """All gates for the report's backend rows (see the module docstring)."""
    gates: list[Gate] = []
    base_rows = {b.get("name"): b for b in (cfg.baseline or {}).get("backends", [])}
    for b in backends:
        name = b["name"]
        if b["status"] == "failed":
            gates.append(Gate("backend-ran", name, 0, b.get("reason"), False, f"failed to run: {b.get('reason')}"))
            continue
        if b["status"] != "ok":
            continue
        q = b.get("quality") or {}
        if name != reference and cfg.max_clipiqa_drift is not None:
            worst = q.get("clipiqa_drift_worst")
            passed = worst is not None and worst >= -cfg.max_clipiqa_drift
            gates.append(Gate("max-clipiqa-drift", name, cfg.max_clipiqa_drift, worst, passed,
                              f"worst CLIPIQA drift {_fmt(worst)} (allowed drop {_fmt(cfg.max_clipiqa_drift)})"))
        if name != reference and cfg.min_psnr_vs_ref is not None:
            low = q.get("psnr_vs_ref_min")
            passed = low is not None and low >= cfg.min_psnr_vs_ref
            gates.append(Gate("min-psnr-vs-ref", name, cfg.min_psnr_vs_ref, low, passed,
                              f"lowest PSNR vs reference {_fmt(low)} dB (minimum {_fmt(cfg.min_psnr_vs_ref)} dB)"))
        if cfg.max_latency_regression is not None and name in base_rows:
            gates.append(_latency_gate(b, base_rows[name], cfg.max_latency_regression))
    return gates


def latency_change_pct(row: dict, base_row: dict) -> float | None:
    """Percent change of p50 latency from the baseline row to this one; None if either lacks it."""
    now = (row.get("latency_ms") or {}).get("p50")
    before = (base_row.get("latency_ms") or {}).get("p50")
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)) or before <= 0:
        return None
    return (now - before) / before * 100.0


def _latency_gate(row: dict, base_row: dict, max_pct: float) -> Gate:
    change = latency_change_pct(row, base_row)
    if change is None:
        return Gate("max-latency-regression", row["name"], max_pct, None, True,
                    "no p50 latency in the baseline for this backend: not compared")
    return Gate("max-latency-regression", row["name"], max_pct, change, change <= max_pct,
                f"p50 latency changed {change:+.1f}% vs baseline (allowed +{_fmt(max_pct)}%)")
