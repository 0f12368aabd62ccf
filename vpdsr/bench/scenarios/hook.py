"""Where the benchmark harness meets the scenarios: one call per backend row, the gates, the failed rows.

The harness calls :func:`run_for_row` with the row's active runner and its latency-column upscaler
right after the row's latency and roofline figures; :func:`fail_rows` then turns a row whose scenario
failed (it crashed or answered wrongly under concurrent requests) into a failed row, and
:func:`scenario_gates` adds the two scenario gates to the run's gates.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vpdsr.bench.scenarios.config import OFFLINE, SERVER
from vpdsr.bench.scenarios.plan import ScenarioPlan
from vpdsr.bench.scenarios.run import BackendScenarios, not_run, run_backend

log = logging.getLogger(__name__)
LOG_DIR = "loadgen"  # the report folder's sub-folder with LoadGen's logs


def log_folder(sp: ScenarioPlan | None) -> Path | None:
    """A temporary folder for LoadGen's logs when some row runs the scenarios (the report moves it), else None."""
    if sp is None or not sp.backends or sp.skipped:
        return None
    import tempfile

    return Path(tempfile.mkdtemp(prefix="vpdsr-loadgen-"))


def run_for_row(sp: ScenarioPlan | None, spec, runner, upscaler, images, row: dict, log_root: Path | None,
                seed: int) -> None:
    """Run the row's scenarios (when the plan has them for it) into `row["scenarios"]`."""
    if sp is None or not sp.runs(spec.name):
        return
    if sp.skipped or log_root is None:
        row["scenarios"] = not_run(sp.config, "skipped", sp.skipped or "no folder for LoadGen's logs")
        return
    log.info(f"bench: {spec.name}: scenarios {', '.join(sp.config.scenarios)} through LoadGen")
    ctx = BackendScenarios(spec=spec, runner=runner, upscaler=upscaler, images=[im.lr for im in images],
                           names=[im.name for im in images], latency_ms=row.get("latency_ms") or {},
                           log_root=Path(log_root), rel_root=LOG_DIR, seed=seed)
    row["scenarios"] = result = run_backend(ctx, sp.config)
    for name, r in result["scenarios"].items():
        figure = {"single-stream": ("p90_ms", "p90 {:.1f} ms"), OFFLINE: ("ips", "{:.2f} images/s"),
                  SERVER: ("max_qps", "max {:.3g} QPS"), "multi-stream": ("p99_ms", "p99 {:.1f} ms")}[name]
        value = r.get(figure[0])
        text = figure[1].format(value) if value is not None else r.get("reason") or "no figure"
        log.info(f"bench: {spec.name}: {name}: {r['status']}, {text} ({r.get('verdict') or '-'})")


def failed_scenarios(row: dict) -> list[str]:
    return [f"{name}: {r.get('reason')}" for name, r in ((row.get("scenarios") or {}).get("scenarios") or {}).items()
            if r.get("status") == "failed"]


def fail_rows(rows: list[dict]) -> None:
    """A backend whose scenario failed is a failed backend (its figures stay in report.json)."""
    for row in rows:
        failed = failed_scenarios(row)
        if failed and row.get("status") == "ok":
            row["status"] = "failed"
            row["reason"] = "scenario failed: " + "; ".join(failed)


def scenario_gates(rows: list[dict], sp: ScenarioPlan | None, min_offline_ips: float | None,
                   max_server_p99_ms: float | None) -> list:
    """`--min-offline-ips X` and `--max-server-p99-ms X` for every row that ran its scenarios."""
    from vpdsr.bench.gates import Gate

    gates = []
    for b in rows:
        if sp is None or not sp.runs(b["name"]) or b.get("status") == "skipped":
            continue
        sc = (b.get("scenarios") or {}).get("scenarios") or {}
        if min_offline_ips is not None:
            ips = (sc.get(OFFLINE) or {}).get("ips")
            detail = (f"offline {ips:.3g} images/s (at least {min_offline_ips:g})" if ips is not None
                      else f"no offline figure ({(sc.get(OFFLINE) or {}).get('reason') or 'not run'})")
            gates.append(Gate("min-offline-ips", b["name"], min_offline_ips, ips,
                              ips is not None and ips >= min_offline_ips, detail))
        if max_server_p99_ms is not None:
            srv = sc.get(SERVER) or {}
            p99 = srv.get("p99_ms")
            detail = (f"server p99 {p99:.1f} ms at {srv['max_qps']:.3g} QPS (at most {max_server_p99_ms:g} ms)"
                      if p99 is not None else f"no server QPS held its bound "
                      f"({srv.get('verdict_reason') or srv.get('reason') or 'not run'})")
            gates.append(Gate("max-server-p99-ms", b["name"], max_server_p99_ms, p99,
                              p99 is not None and p99 <= max_server_p99_ms, detail))
    return gates
