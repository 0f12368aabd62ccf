"""Regression gates over a finished report, and the run's verdict.

Threshold gates, evaluated per backend that ran (the reference is not gated against itself):

- ``max-clipiqa-drift X``: the worst per-image CLIPIQA drift (backend minus reference, the
  largest drop) must be >= -X, i.e. CLIPIQA may drop by at most X on any image.
- ``max-piqe-drift X``: PIQE (lower is better) may rise by at most X on any image over the
  reference backend's output of the same image.
- ``min-psnr-vs-ref DB``: the lowest per-image PSNR (RGB) against the reference's output must be
  >= DB.
- ``min-ms-ssim-vs-ref X``: the lowest per-image MS-SSIM against the reference's output >= X.
- ``max-latency-regression PCT`` (needs ``--baseline``): the p50 latency may grow by at most PCT
  percent over the same backend's p50 in the baseline report.
- ``min-offline-ips X`` / ``max-server-p99-ms X`` (need ``--scenario offline`` / ``server``): the MLPerf
  scenarios' offline images/s at least X, the server's p99 at its highest held QPS at most X
  (:func:`vpdsr.bench.scenarios.hook.scenario_gates`).

Backend status decides the run whatever the gates: a ``failed`` backend (should run here and did
not: an export that failed, a file changed after export, a load or runtime error) adds a failed
``backend-ran`` gate, so the run fails naming it, unless it is listed in ``--allow-failed``. A
``skipped`` backend (cannot run on this machine) is no failure unless listed in ``--require``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vpdsr.errors import InputError

BACKEND_RAN = "backend-ran"


@dataclass(frozen=True)
class Threshold:
    """One threshold gate: its flag, the quality key it reads, and which side passes."""

    name: str  # the flag without `--`
    attr: str  # the GateConfig field holding the threshold
    key: str  # the backend row's `quality` key (the worst per-image value)
    upper: bool  # True: value <= threshold passes (a maximum); False: value >= threshold
    what: str  # how the detail names the value
    unit: str = ""
    signed: bool = False  # the threshold bounds a drift in the metric's bad direction


THRESHOLDS = (
    Threshold("max-clipiqa-drift", "max_clipiqa_drift", "clipiqa_drift_worst", False, "worst CLIPIQA drift",
              signed=True),
    Threshold("max-piqe-drift", "max_piqe_drift", "piqe_drift_worst", True, "worst PIQE rise"),
    Threshold("min-psnr-vs-ref", "min_psnr_vs_ref", "psnr_vs_ref_min", False, "lowest PSNR vs reference", " dB"),
    Threshold("min-ms-ssim-vs-ref", "min_ms_ssim_vs_ref", "ms_ssim_vs_ref_min", False, "lowest MS-SSIM vs reference"),
)


@dataclass(frozen=True)
class GateConfig:
    """The gates of one run (None: not set) and the backend-status policy.

    Attributes:
        require: backends whose skip is a failure (names as the report lists them).
        allow_failed: backends whose failure does not fail the run (still reported as failed).
    """

    max_clipiqa_drift: float | None = None
    max_piqe_drift: float | None = None
    min_psnr_vs_ref: float | None = None
    min_ms_ssim_vs_ref: float | None = None
    max_latency_regression: float | None = None  # percent
    min_offline_ips: float | None = None  # the MLPerf offline scenario's images/s (vpdsr.bench.scenarios)
    max_server_p99_ms: float | None = None  # the server scenario's p99 at its highest held QPS
    baseline: dict | None = None  # a previous report.json, parsed
    require: frozenset[str] = field(default_factory=frozenset)
    allow_failed: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.max_latency_regression is not None and self.baseline is None:
            raise InputError("`--max-latency-regression` needs `--baseline report.json` to compare with")
        for name in ("max_clipiqa_drift", "max_piqe_drift"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise InputError(f"`--{name.replace('_', '-')}` must be >= 0, got {value}")
        if self.min_ms_ssim_vs_ref is not None and not 0 <= self.min_ms_ssim_vs_ref <= 1:
            raise InputError(f"`--min-ms-ssim-vs-ref` must be in 0..1 (MS-SSIM's range), got {self.min_ms_ssim_vs_ref}")

    def thresholds_set(self) -> list[dict]:
        """The gates the user set, as {"name", "threshold"} (the report's banner lists them)."""
        out = [{"name": t.name, "threshold": getattr(self, t.attr)} for t in THRESHOLDS
               if getattr(self, t.attr) is not None]
        if self.max_latency_regression is not None:
            out.append({"name": "max-latency-regression", "threshold": self.max_latency_regression})
        out += [{"name": name, "threshold": v} for name, v in (("min-offline-ips", self.min_offline_ips),
                                                                ("max-server-p99-ms", self.max_server_p99_ms))
                if v is not None]
        return out


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
    """Parse a previous report.json, checking what the gates read; InputError when it is not one."""
    from vpdsr.utils import read_json

    path = Path(path)
    label = f"--baseline {path}"
    data = read_json(path, InputError, "file not found (expected a report.json from `vpdsr bench`)", label=label)
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("backends"), list):
        raise InputError(f"{label}: not a vpdsr report.json (schema 1 with a `backends` list)")
    for i, row in enumerate(data["backends"]):
        where = f"{label}: `backends[{i}]`"
        if not isinstance(row, dict):
            raise InputError(f"{where} must be an object (a backend row), got {type(row).__name__} {str(row)[:40]!r}")
        if not isinstance(row.get("name"), str):
            raise InputError(f"{where}.name must be a string, got {row.get('name')!r:.40}")
        latency = row.get("latency_ms")
        if latency is not None and not isinstance(latency, dict):
            raise InputError(f"{where}.latency_ms must be an object or null, got {latency!r:.40}")
        p50 = (latency or {}).get("p50")
        if p50 is not None and (isinstance(p50, bool) or not isinstance(p50, (int, float))):
            raise InputError(f"{where}.latency_ms.p50 must be a number or null, got {p50!r:.40}")
    return data


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def apply_required(rows: list[dict], required: frozenset[str]) -> None:
    """A skipped backend the user requires becomes failed (it should have run here), reason kept."""
    for row in rows:
        if row["status"] == "skipped" and row["name"] in required:
            row["status"] = "failed"
            row["reason"] = f"required (--require) but skipped: {row['reason']}"


def evaluate(backends: list[dict], reference: str, cfg: GateConfig) -> list[Gate]:
    """All gates for the report's backend rows (see the module docstring)."""
    gates: list[Gate] = []
    base_rows = {b.get("name"): b for b in (cfg.baseline or {}).get("backends", [])}
    for b in backends:
        name = b["name"]
        if b["status"] == "failed":
            allowed = name in cfg.allow_failed
            detail = f"failed{' (allowed by --allow-failed)' if allowed else ''}: {b.get('reason')}"
            gates.append(Gate(BACKEND_RAN, name, 0, b.get("reason"), allowed, detail))
            continue
        if b["status"] != "ok":
            continue
        q = b.get("quality") or {}
        for t in THRESHOLDS if name != reference else ():
            threshold = getattr(cfg, t.attr)
            if threshold is None:
                continue
            value = q.get(t.key)
            bound = -threshold if t.signed else threshold
            passed = value is not None and (value <= bound if t.upper else value >= bound)
            side = "at most" if t.upper else "at least"
            gates.append(Gate(t.name, name, threshold, value, passed,
                              f"{t.what} {_fmt(value)}{t.unit} ({side} {_fmt(bound)}{t.unit})"))
        if cfg.max_latency_regression is not None and name in base_rows:
            gates.append(_latency_gate(b, base_rows[name], cfg.max_latency_regression))
    return gates


def verdict(backends: list[dict], gates: list[Gate], cfg: GateConfig) -> dict:
    """What the run concluded: passed or not, and one line that says why (the banner of every report)."""
    failed_backends = [g.backend for g in gates if g.name == BACKEND_RAN and not g.passed]
    allowed = [g.backend for g in gates if g.name == BACKEND_RAN and g.passed]
    failed_gates = [f"{g.name}[{g.backend}]" for g in gates if g.name != BACKEND_RAN and not g.passed]
    skipped = [b["name"] for b in backends if b["status"] == "skipped"]
    set_ = cfg.thresholds_set()
    passed = not failed_backends and not failed_gates
    if not passed:
        text = "FAILED: " + ", ".join([f"backend {n} failed" for n in failed_backends] + failed_gates)
    elif set_:
        text = f"every gate held ({', '.join(g['name'] for g in set_)})"
    else:
        text = "no gates set"
    notes = [f"{len(skipped)} skipped (cannot run here)" if skipped else "",
             f"failed but allowed: {', '.join(allowed)}" if allowed else ""]
    text += "".join(f"; {n}" for n in notes if n)
    return {"passed": passed, "text": text, "gates_set": set_, "failed_backends": failed_backends,
            "allowed_failed": allowed, "failed_gates": failed_gates, "skipped": skipped}


def verdict_text(report: dict) -> str:
    """The banner: why the run passed or failed ("no gates set" when the user set none)."""
    if report.get("verdict"):
        return report["verdict"]["text"]
    failed = [f"{g['name']}[{g['backend']}]" for g in report["gates"] if not g["passed"]]
    if failed:
        return "FAILED: " + ", ".join(failed)
    return "every gate held" if report["gates"] else "no gates set"


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
