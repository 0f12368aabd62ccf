"""The MLPerf scenarios in the report: a summary table, one table per backend, the server runs, a p99 plot.

Everything here reads the report dict (`report["scenarios"]` for the run's settings, each backend
row's `scenarios` for its figures, see :mod:`.run`); :func:`scenario_sections` gives the report's
sections (:mod:`vpdsr.bench.sections`: report.md and report.html render the same ones), and the plot
of p99 latency against the offered QPS of every server run (:func:`p99_plot_svg`) is written beside
report.md as ``scenarios.svg``.
"""
from __future__ import annotations

from vpdsr.bench.columns import num
from vpdsr.bench.scenarios.config import MULTI_STREAM, OFFLINE, SCENARIOS, SERVER, SINGLE_STREAM

SVG_NAME = "scenarios.svg"
SUMMARY_HEADERS = ("backend", "single-stream p90 ms", "latency column p90 ms", "vs column", "offline images/s",
                   "offline MP/s out", "offline / single-stream", "server max QPS", "at p99 ms", "bound ms",
                   "multi-stream p99 ms", "pool")
SCENARIO_HEADERS = ("scenario", "status", "LoadGen", "figure", "p50 ms", "p90 ms", "p99 ms", "queries", "why / notes",
                    "log")
RUN_HEADERS = ("configuration", "run", "target QPS", "completed QPS", "p50 ms", "p99 ms", "bound ms",
               "p99 within bound", "LoadGen", "why")


def rows_with_scenarios(report: dict) -> list[dict]:
    return [b for b in report.get("backends") or [] if b.get("scenarios")]


def _s(b: dict, name: str) -> dict:
    return ((b.get("scenarios") or {}).get("scenarios") or {}).get(name) or {}


def _ok(row: dict) -> bool:
    return row.get("status") == "ok"


def summary_rows(report: dict) -> list[tuple]:
    out = []
    for b in rows_with_scenarios(report):
        ss, off, srv, ms = (_s(b, n) for n in (SINGLE_STREAM, OFFLINE, SERVER, MULTI_STREAM))
        lanes = (b["scenarios"].get("lanes") or {}).get("how") or "-"
        vs = ss.get("vs_today_pct")
        out.append((b["name"], num(ss.get("p90_ms"), "{:.1f}") if _ok(ss) else _state(ss),
                    num(ss.get("today_p90_ms") or (b.get("latency_ms") or {}).get("p90"), "{:.1f}"),
                    "-" if vs is None else f"{vs:+.1f} %",
                    num(off.get("ips"), "{:.2f}") if _ok(off) else _state(off), num(off.get("mpix_s"), "{:.2f}"),
                    num(off.get("vs_single_stream"), "{:.2f}x"),
                    (num(srv.get("max_qps"), "{:.3g}") if srv.get("max_qps") is not None else "none held")
                    if _ok(srv) else _state(srv), num(srv.get("p99_ms"), "{:.1f}"), num(srv.get("bound_ms"), "{:.1f}"),
                    num(ms.get("p99_ms"), "{:.1f}") if _ok(ms) else _state(ms), lanes))
    return out


def _state(row: dict) -> str:
    return row.get("status") or "-"


def _verdict(row: dict) -> str:
    return row.get("verdict") or "-"


def scenario_rows(b: dict) -> list[tuple]:
    out = []
    for name in SCENARIOS:
        r = _s(b, name)
        if not r:
            continue
        if not _ok(r):
            out.append((name, r.get("status"), "-", "-", "-", "-", "-", "-", r.get("reason") or "", "-"))
            continue
        if name == SINGLE_STREAM:
            vs = r.get("vs_today_pct")
            figure = f"p90 {num(r.get('p90_ms'), '{:.1f}')} ms" + ("" if vs is None else
                                                                    f" ({vs:+.1f} % vs the latency column)")
            notes = r.get("why") or ("agrees with the latency column within 10 %" if r.get("agrees") else "")
            queries = r.get("queries")
        elif name == OFFLINE:
            figure = (f"{num(r.get('ips'))} images/s, {num(r.get('mpix_s'))} MP/s out"
                      + (f", {r['vs_single_stream']:.2f}x single-stream" if r.get("vs_single_stream") else ""))
            notes, queries = "", r.get("samples")
        elif name == SERVER:
            figure = (f"max {r['max_qps']:.3g} QPS with p99 <= {r['bound_ms']:.1f} ms ({r['configuration']})"
                      if r.get("max_qps") is not None else f"no QPS held p99 <= {num(r.get('bound_ms'), '{:.1f}')} ms")
            per = "; ".join(f"{c}: {num(v.get('max_qps'), '{:.3g}') if v.get('max_qps') is not None else 'none'}"
                            for c, v in (r.get("per_configuration") or {}).items())
            notes, queries = f"{r.get('runs')} run(s); highest held QPS per configuration: {per}", "-"
        else:
            figure = f"p99 {num(r.get('p99_ms'), '{:.1f}')} ms per query of {r.get('samples_per_query')} images"
            notes, queries = "", r.get("queries")
        why = r.get("verdict_reason")
        notes = "; ".join(x for x in (notes, f"INVALID: {why}" if why and r.get("verdict") == "INVALID" else why)
                          if x)
        lg = r.get("loadgen") or {}
        lat = [num(r.get(k, lg.get(k)), "{:.1f}") for k in ("p50_ms", "p90_ms", "p99_ms")]
        count = num(queries, "{:d}") if isinstance(queries, int) else str(queries or "-")
        out.append((name, "ok", _verdict(r), figure, *lat, count, notes, r.get("log") or "-"))
    return out


def searches(b: dict) -> dict:
    """{configuration: search} of a row's server scenario (latency: one image at a time; throughput: the pool)."""
    return (b.get("scenarios") or {}).get("server_search") or {}


def server_run_rows(b: dict) -> list[tuple]:
    out = []
    for config, search in searches(b).items():
        for k, r in enumerate(search.get("runs") or [], 1):
            extra = r.get("extra") or {}
            held = "failed: " + r["failed"] if r.get("failed") else ("yes" if r.get("held") else "no")
            out.append((config, str(k), f"{r['target_qps']:.3g}", num(r.get("completed_qps"), "{:.3g}"),
                        num(extra.get("p50_ms"), "{:.1f}"), num(r.get("p99_ms"), "{:.1f}"),
                        num(search.get("bound_ms"), "{:.1f}"), held, r.get("verdict") or "-", r.get("reason") or ""))
    return out


def settings_line(report: dict) -> str | None:
    sc = report.get("scenarios")
    if not sc:
        return None
    cfg = sc.get("config") or {}
    bound = f"{cfg['latency_bound_ms']:g} ms" if cfg.get("latency_bound_ms") else "2x each backend's single-stream p90"
    return (f"Scenarios {', '.join(cfg.get('scenarios') or [])} through MLPerf LoadGen {sc.get('loadgen') or '?'} "
            f"(performance mode): at least {cfg.get('min_duration_s'):g} s and {cfg.get('min_queries')} queries per "
            "run, "
            f"server p99 bound {bound}, up to {cfg.get('server_runs')} server runs per backend, multi-stream "
            f"{cfg.get('multi_stream_samples')} images per query. {sc.get('note') or ''}").strip()


def tables(report: dict) -> list[dict]:
    """The section's tables, in order: {"title", "headers", "rows", "note"} (rendered by report.md and report.html)."""
    backends = rows_with_scenarios(report)
    if not backends:
        return []
    out = [{"title": "Summary", "headers": SUMMARY_HEADERS, "rows": summary_rows(report), "note": None}]
    for b in backends:
        lanes = b["scenarios"].get("lanes") or {}
        psnr = lanes.get("output_psnr_vs_single_stream_db")
        note = None
        if lanes:
            same = ("outputs identical to single-stream" if psnr == float("inf") or psnr == "inf" else
                    f"outputs within {psnr:.1f} dB PSNR of single-stream" if isinstance(psnr, (int, float)) else "")
            batch = f", mean batch {lanes['mean_batch']}" if lanes.get("mean_batch") else ""
            note = f"Pool: {lanes.get('how')}{batch}" + (f"; {same}" if same else "") + "."
        out.append({"title": f"`{b['name']}`", "headers": SCENARIO_HEADERS, "rows": scenario_rows(b), "note": note})
        runs = server_run_rows(b)
        if runs:
            out.append({"title": f"`{b['name']}` server runs", "headers": RUN_HEADERS, "rows": runs, "note": None})
    return out


def scenario_sections(report: dict, ctx) -> list:
    """The report's scenario sections (:mod:`vpdsr.bench.sections`): the settings, the summary table and the p99
    plot in one open section, then one collapsed section per backend (its scenarios and its server runs)."""
    from vpdsr.bench.blocks import Figure, Section, TableBlock, Text

    sc = report.get("scenarios")
    if not sc:
        return []
    blocks: list = [Text(settings_line(report) or "")]
    if sc.get("skipped"):
        blocks.append(Text(f"Every scenario skipped: {sc['skipped']}"))
    found = tables(report)
    if found:
        blocks.append(TableBlock(_table(found[0])))
    if any(server_run_rows(b) for b in rows_with_scenarios(report)):
        svg = (ctx.figures or {}).get("scenarios") if ctx.html else None
        blocks.append(Figure("p99 latency against the offered QPS of every server run", svg=svg, file=SVG_NAME,
                             missing=ctx.missing or "the figure needs matplotlib"))
    out = [Section("scenarios", "MLPerf scenarios (LoadGen)", tuple(blocks))]
    per_backend: dict[str, list] = {}
    for t in found[1:]:
        name = t["title"].split("`")[1]
        per_backend.setdefault(name, []).append(t)
    for name, ts in per_backend.items():
        parts: list = []
        for t in ts:
            if t["title"].endswith("server runs"):
                parts.append(Text("Server runs (the search, in order, per configuration):"))
            parts.append(TableBlock(_table(t)))
            if t["note"]:
                parts.append(Text(t["note"]))
        out.append(Section(f"scenarios-{name}", f"Scenarios: `{name}`", tuple(parts), collapsed=True))
    return out


def _table(t: dict):
    from vpdsr.bench.tables import Row, Table

    return Table(tuple(t["headers"]), tuple(Row(tuple(str(c).replace("|", "/") for c in row)) for row in t["rows"]),
                 text=len(t["headers"]))


def p99_plot_svg(report: dict) -> str | None:
    """p99 latency against offered QPS, one line per backend (every server run), its bound dashed; SVG."""
    from vpdsr.bench.plots import _figure, _svg

    series = []
    for k, b in enumerate(rows_with_scenarios(report)):
        for config, search in searches(b).items():
            runs = sorted((r for r in search.get("runs") or [] if r.get("p99_ms") is not None),
                          key=lambda r: r["target_qps"])
            if runs:
                series.append((k, f"{b['name']} ({config})", config, runs, search.get("bound_ms")))
    if not series:
        return None
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    colors = [f"C{k}" for k in range(10)]
    for k, name, config, runs, bound in series:
        c = colors[k % len(colors)]
        x = [r["target_qps"] for r in runs]
        y = [r["p99_ms"] for r in runs]
        ax.plot(x, y, "-" if config == "throughput" else ":", color=c, lw=1, label=name)
        ax.scatter([r["target_qps"] for r in runs if r["held"]], [r["p99_ms"] for r in runs if r["held"]],
                   color=c, s=30, zorder=3)
        ax.scatter([r["target_qps"] for r in runs if not r["held"]], [r["p99_ms"] for r in runs if not r["held"]],
                   facecolors="none", edgecolors=c, s=30, zorder=3)
        if bound:
            ax.axhline(bound, color=c, ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("offered load, queries per second (Poisson arrivals)")
    ax.set_ylabel("p99 latency, ms (log)")
    ax.set_title("server runs (solid: the throughput pool, dotted: one image at a time): filled = p99 within "
                 "the bound (dashed), hollow = over it", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _svg(fig)
