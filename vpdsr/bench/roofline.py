"""Roofline figures of a benchmark row: how far a backend is from what this machine can do.

Per backend (timed on the first image):
- `gflop_per_image`: model FLOPs of every engine call the image needs (tiles, overlaps, padding and
  padded batch slots included), counted once per call shape from the torch graph (:mod:`.flops`);
- `gflops` / `gflops_best`: those FLOPs over the p50 / fastest latency of a whole image;
- `peak_gflops`, `peak_precision`, `peak_pct` / `peak_pct_best`: the machine's measured matmul peak for
  the backend's precision (:mod:`.peak`; fp16 on a CPU that only emulates it is measured against fp32,
  and `peak_precision` says so) and the share of it reached;
- `ms_per_mpix`: p50 ms per output megapixel;
- `tiling_overhead`: computed LR pixels / output LR pixels;
- `engine_ms` and `outside_engine_pct`: time inside engine calls per image, and the share of the
  latency spent between them (tiling, blending, noise, copies);
- `single_call_ms`, `expected_ms` and `vs_single_call`: one call of the plan's tile shape at batch 1, the
  computed pixels x that call's rate, and the p50 latency over it: 1.0 means nothing is lost beyond the
  pixels computed (below 1: tile batches on parallel streams beat one call at a time).

The peak is a best-of figure (the machine's capability), so `peak_pct_best`, from the fastest run, is
the like-for-like ratio on a shared machine; `peak_pct` from the p50 shows what a typical run got.

Attainable time (the roofline with its memory side, :func:`attainable`): per matrix layer of every
engine call of the image (:mod:`.layers`: FLOPs and the bytes of the tensors it reads and writes, at
the row's element size), the layer cannot take less than max(FLOPs / matmul peak, bytes / memory
bandwidth); `attainable_ms` is their sum, `attainable_pct` / `attainable_pct_best` the share of the
p50 / fastest latency it is (100 % = at the machine's limit for this graph), and `memory_bound_pct`
the share of the attainable time spent in layers whose bytes, not FLOPs, set their floor.
"""
from __future__ import annotations

from vpdsr.bench.columns import measured
from vpdsr.bench.peak import peak_for


def roofline(row: dict, plan, flops_fn, peaks: dict | None, scale: int, engine_ms: float | None,
             single_call_ms: float | None, layers_fn=None) -> dict:
    """The figures above for one backend row (None where a figure cannot be had).

    Args:
        row: the backend's report row (its `latency_ms` and `precision` are read).
        plan: the :class:`vpdsr.runtimes.tiling.TilePlan` of the timed image.
        flops_fn: `flops(h, w)` of one batch-1 call, or None.
        peaks: :func:`vpdsr.bench.peak.machine_peaks` output, or None.
        scale: the model's upscaling factor.
        engine_ms: mean ms inside engine calls per timed image, or None.
        single_call_ms: ms of one batch-1 call of the plan's tile shape, or None.
        layers_fn: `layers(h, w, batch)` of one call (:class:`vpdsr.bench.layers.LayerCounter`), or None.
    """
    lat = row.get("latency_ms") or {}
    p50, best = lat.get("p50"), lat.get("min")
    one = flops_fn(plan.tile_h, plan.tile_w) if flops_fn is not None else None
    flop = None if one is None else float(one) * sum(plan.call_batches())
    peak, peak_precision = peak_for(peaks, row.get("precision") or "fp32")
    out_mpix = plan.h * plan.w * scale * scale / 1e6

    def rate(ms):
        return None if flop is None or not ms else flop / (ms / 1000.0) / 1e9

    def pct(gflops):
        return None if gflops is None or not peak else 100.0 * gflops / peak

    expected = None
    if single_call_ms is not None:
        expected = single_call_ms * plan.computed_pixels / (plan.tile_h * plan.tile_w)
    return {
        "gflop_per_image": None if flop is None else flop / 1e9,
        "gflops": rate(p50), "gflops_best": rate(best),
        "peak_gflops": peak, "peak_precision": peak_precision, "peak_threads": (peaks or {}).get("threads"),
        "peak_pct": pct(rate(p50)), "peak_pct_best": pct(rate(best)),
        "ms_per_mpix": None if not p50 else p50 / out_mpix,
        "tiling_overhead": plan.overhead, "plan": plan.to_dict(),
        "engine_ms": engine_ms,
        "outside_engine_pct": None if engine_ms is None or not p50 else 100.0 * max(0.0, 1.0 - engine_ms / p50),
        "single_call_ms": single_call_ms,
        "expected_ms": expected,
        "vs_single_call": None if not expected or not p50 else p50 / expected,
        **attainable(plan, layers_fn, row.get("precision") or "fp32", peak, (peaks or {}).get("bandwidth"), p50, best),
    }


def attainable(plan, layers_fn, precision: str, peak_gflops: float | None, bandwidth: dict | None,
               p50_ms: float | None, best_ms: float | None) -> dict:
    """The attainable-time figures of one image (see the module docstring); None values where they cannot be had."""
    keys = ("attainable_ms", "attainable_pct", "attainable_pct_best", "compute_ms", "memory_ms", "memory_bound_pct",
            "mbytes_per_image", "bandwidth_gbps")
    none = dict.fromkeys(keys)
    gbps = (bandwidth or {}).get("gbps")
    if layers_fn is None or not peak_gflops or not gbps:
        return none
    total = compute = memory = bound_by_memory = 0.0
    moved = 0
    for batch in plan.call_batches():
        layers = layers_fn(plan.tile_h, plan.tile_w, batch)
        if layers is None:
            return none
        for layer in layers:
            t_compute = layer.flops / (peak_gflops * 1e9)
            nbytes = layer.bytes(precision)
            t_memory = nbytes / (gbps * 1e9)
            total += max(t_compute, t_memory)
            compute += t_compute
            memory += t_memory
            moved += nbytes
            if t_memory > t_compute:
                bound_by_memory += t_memory
    if total <= 0:
        return none
    ms = 1000.0 * total
    return {"attainable_ms": ms, "attainable_pct": 100.0 * ms / p50_ms if p50_ms else None,
            "attainable_pct_best": 100.0 * ms / best_ms if best_ms else None, "compute_ms": 1000.0 * compute,
            "memory_ms": 1000.0 * memory, "memory_bound_pct": 100.0 * bound_by_memory / total,
            "mbytes_per_image": moved / 1e6, "bandwidth_gbps": gbps}


NEAR_LIMIT_PCT = 70.0  # % attainable at which a row is near what this machine can do for its graph
FAR_PCT = 40.0
STALE_FACTOR = 1.05  # above 105 % of the attainable time's rate, the roofs themselves are wrong


def limit_verdict(r: dict) -> str | None:
    """One clause: how far a row is from its attainable time, and which roof sets it."""
    pct = r.get("attainable_pct_best")
    if pct is None:
        return None
    roof = (f"memory-bound ({r['memory_bound_pct']:.0f} % of it in layers whose bytes set the floor)"
            if r["memory_bound_pct"] >= 50 else f"compute-bound ({100 - r['memory_bound_pct']:.0f} % of it in layers "
            "whose FLOPs set the floor)")
    if pct > 100.0 * STALE_FACTOR:  # faster than the machine's limit: the cached roofs are too low
        return (f"attainable {r['attainable_ms']:.1f} ms per image, but the fastest run took {100 / pct:.2f}x that: "
                "the cached peak or bandwidth is below what this machine reaches now (measured under more load)")
    where = "near its limit" if pct >= NEAR_LIMIT_PCT else "far from its limit" if pct < FAR_PCT else \
        "part of the way to its limit"
    return (f"attainable {r['attainable_ms']:.1f} ms per image, {roof}; the fastest run is at {pct:.0f} % of it: "
            f"{where}")


COLUMN_NOTE = (
    "`% peak`: effective GFLOP/s at p50 over the peak of the row's precision; `% peak best`: from the fastest run "
    "(the peak is a best-of figure: the like-for-like ratio on a shared machine). `tiling x`: computed LR pixels / "
    "output LR pixels. `est ms`: computed LR pixels x the rate of one batch-1 engine call of the plan's tile shape; "
    "`e2e/est`: p50 (end to end per image) over it, 1.00 when nothing is lost between engine calls; `outside %`: "
    "share of p50 spent outside engine calls (tiling, blending, noise, copies). `@untuned` rows: the same artifact "
    "with the engine defaults, fixed 64-pixel tiles and no noise cache (the settings before the CPU tuning); their "
    "% peak is against the peak at the engines' own thread count (every core). `attain ms`: the least time this "
    "machine could take for the image's engine calls, per matrix layer max(FLOPs / peak, bytes / memory bandwidth) "
    "with bytes counted from the graph's tensor sizes at the row's element size (elementwise ops taken as fused: a "
    "lower bound); `% attain best`: it over the fastest run (100 % = at the limit).")


def peak_line(summary: dict | None) -> str | None:
    """One sentence: the machine's peaks, how and when they were measured."""
    if not summary or not summary.get("peak"):
        return None
    parts = []
    for precision, fig in summary["peak"].items():
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        parts.append(f"{precision} {fig['gflops']:.0f} {unit} ({fig['engine']} {fig['op']})" if fig
                     else f"{precision} none usable")
    notes = sorted({f["note"].split(" (")[0] for f in summary.get("figures") or [] if f.get("note")})
    load = summary.get("loadavg")
    bw = summary.get("bandwidth")
    memory = f"; memory bandwidth {bw['gbps']:.1f} GB/s ({bw['op']}, {bw['array_mb']} MiB arrays)" if bw else ""
    return (f"Machine peak (best {summary.get('size', 1024)}^2 matmul, {summary.get('threads')} thread(s), "
            f"{summary.get('measured')}, load average {load[0] if load else '?'}): " + ", ".join(parts) + memory
            + (f"; other figures: {', '.join(notes)}" if notes else "") + ".")


def backend_notes(report: dict) -> list[str]:
    """Per backend: its tiling choice, time outside engine calls, loss against one call's rate; INT8 flags."""
    lines = []
    for b in report["backends"]:
        r, t = b.get("roofline") or {}, b.get("tiling") or {}
        if not measured(b) or not r:
            continue
        plan = t.get("plan") or r.get("plan") or {}
        first = next(iter((t.get("auto") or {}).values()), None)
        how = first["why"] if first else f"fixed tiling, {plan.get('tiles')} tile(s) of {plan.get('tile')}"
        parts = [how]
        if r.get("outside_engine_pct") is not None:
            parts.append(f"{r['outside_engine_pct']:.0f}% of the time outside engine calls")
        if r.get("vs_single_call") is not None:
            parts.append(f"p50 = {r['vs_single_call']:.2f} x (computed pixels x one call's rate)")
        if limit_verdict(r):
            parts.append(limit_verdict(r))
        if r.get("peak_precision") and r["peak_precision"] != b.get("precision"):
            parts.append(f"measured against the {r['peak_precision']} peak ({b.get('precision')} has no usable "
                         "peak here)")
        lines.append(f"- `{b['name']}`: " + "; ".join(parts))
    lines += tuning_notes(report) + stale_peak_notes(report)
    for b in report["backends"]:
        for f in b.get("flags") or []:
            lines.append(f"- **FLAG** `{b['name']}` is {f['ratio']:.2f}x slower than `{f['vs']}`: {f['reason']}")
    return lines


def stale_peak_notes(report: dict) -> list[str]:
    """A row above 100 % of the peak means the cached peak was measured under more load than this run had."""
    over = [b for b in report["backends"] if ((b.get("roofline") or {}).get("peak_pct_best") or 0) > 100]
    if not over:
        return []
    summary = report.get("roofline") or {}
    load = summary.get("loadavg")
    names = ", ".join(f"`{b['name']}` {b['roofline']['peak_pct_best']:.0f} %" for b in over)
    return [f"- **peak too low**: {names} of the cached peak (measured {summary.get('measured')}, load average "
            f"{load[0] if load else '?'}): the machine was busier then than now; `vpdsr info --peak --refresh "
            f"--threads {summary.get('threads')}` measures it again"]


def tuning_notes(report: dict) -> list[str]:
    """One line per `<entry>` / `<entry>@untuned` pair that both ran: what the CPU tuning is worth here."""
    rows = {b["name"]: b for b in report["backends"] if measured(b) and (b.get("latency_ms") or {}).get("p50")}
    lines = []
    for name, tuned in rows.items():
        before = rows.get(f"{name}@untuned")
        if before is None:
            continue
        a, b = tuned["latency_ms"]["p50"], before["latency_ms"]["p50"]
        pa, pb = (tuned.get("roofline") or {}).get("peak_pct_best"), (before.get("roofline") or {}).get("peak_pct_best")
        peak = f"; % peak best {pb:.1f} -> {pa:.1f}" if pa is not None and pb is not None else ""
        lines.append(f"- tuning `{name}`: p50 {b:.1f} ms untuned -> {a:.1f} ms tuned ({b / a:.2f}x){peak}")
    return lines


def markdown_section(report: dict) -> list[str]:
    """The report.md lines of the roofline (nothing when the report has none)."""
    line = peak_line(report.get("roofline"))
    notes = backend_notes(report)
    if not line and not notes:
        return []
    return ["", "## Roofline", "", *([line, ""] if line else []),
            COLUMN_NOTE, "", *notes]
