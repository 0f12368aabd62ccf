"""Side-by-side CPU latency of torch fp32 and every exported artifact, in one process.

    python benchmarks/export_latency.py --model base --artifacts ART --size 64 --runs 5
    python benchmarks/export_latency.py --model tiny --artifacts before=A after=B --size 128 --threads 1

Every backend sees the same LR tile and noise; each is warmed up once, then timed `--runs` times
(median and min in ms, time.perf_counter around one call). The table also gives the speed-up over
torch eager fp32 and the PSNR of each output against it. Artifacts are loaded with
`vpdsr.runtimes.load` (which pins OpenVINO's recorded execution precision).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vpdsr.artifacts import Manifest
from vpdsr.export.validation import safe_psnr
from vpdsr.models import from_pretrained


def timed(fn, runs: int) -> list[float]:
    fn()  # warm-up (graph compilation, allocations)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def latency_table(model_spec: str, artifacts: Path | list, size: int = 64, runs: int = 5,
                  threads: int | None = None) -> list[dict]:
    """Rows {name, precision, median_ms, min_ms, speedup, psnr_db, gops, peak_pct} for torch fp32 and every ok
    artifact.

    `artifacts`: one export folder, or several ("label=path" or paths): the entries of one name from every
    folder are timed call by call in turn (A, B, A, B, ...), so a before/after ratio sees the same machine load.
    """
    from vpdsr.bench.flops import FlopCounter
    from vpdsr.bench.peak import machine_peaks, peak_for
    from vpdsr.runtimes import load

    if threads:
        torch.set_num_threads(threads)
    folders = _labelled(artifacts if isinstance(artifacts, list) else [artifacts])
    model = from_pretrained(model_spec)
    flops = FlopCounter(model).flops(size, size)
    peaks = machine_peaks(threads or torch.get_num_threads())
    rng = np.random.default_rng(0)
    feed = {"lr": rng.random((1, 3, size, size), dtype=np.float32),
            "noise": rng.standard_normal((1, model.latent_channels, size, size), dtype=np.float32)}
    lr, noise = torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])
    with torch.inference_mode():
        ref = model(lr, noise).numpy()

    def torch_fn():
        with torch.inference_mode():
            return model(lr, noise)

    times = timed(torch_fn, runs)
    rows = [{"name": "torch (eager)", "precision": "fp32", "median_ms": statistics.median(times), "min_ms": min(times),
             "psnr_db": None}]
    names = list(dict.fromkeys(e.name for _, folder in folders for e in Manifest.read(folder).artifacts))
    for name in names:
        group = []
        for label, folder in folders:
            entry = next((e for e in Manifest.read(folder).artifacts if e.name == name), None)
            row_name = f"{label}:{name}" if len(folders) > 1 else name
            if entry is None:
                continue
            if entry.status != "ok":
                rows.append({"name": row_name, "precision": entry.precision, "skipped": entry.reason})
                continue
            group.append((row_name, entry, load(folder / entry.name, **({"threads": threads} if threads else {}))))
        for _, _, runner in group:
            runner.activate()
        try:
            outs = [runner.infer(feed)["sr"] for _, _, runner in group]  # warm-up
            times = [[] for _ in group]
            for _ in range(runs):  # call by call in turn
                for i, (_, _, runner) in enumerate(group):
                    t0 = time.perf_counter()
                    runner.infer(feed)
                    times[i].append((time.perf_counter() - t0) * 1000)
        finally:
            for _, _, runner in group:
                runner.deactivate()
        for (row_name, entry, _), out, ts in zip(group, outs, times):
            rows.append({"name": row_name, "precision": entry.precision, "median_ms": statistics.median(ts),
                         "min_ms": min(ts),
                         "psnr_db": round(safe_psnr(out[0].transpose(1, 2, 0), ref[0].transpose(1, 2, 0)), 2)})
    base = rows[0]["median_ms"]
    for r in rows:
        if "median_ms" in r:
            r["speedup"] = base / r["median_ms"]
            peak, _ = peak_for(peaks, r["precision"])
            if flops:
                r["gops"] = flops / r["median_ms"] / 1e6
                r["peak_pct"] = 100.0 * r["gops"] / peak if peak else None
    return rows


def _labelled(specs: list) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        label, sep, path = str(spec).partition("=")
        out.append((label, Path(path)) if sep else (Path(spec).name, Path(spec)))
    return out


def markdown(rows: list[dict], size: int) -> str:
    lines = [f"| backend (LR {size}x{size}, batch 1) | precision | median ms | min ms | speed-up vs torch fp32 | "
             "PSNR vs torch fp32 | GFLOP/s (GOP/s) | % peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['precision']} | skipped: {r['skipped']} | | | | | |")
        else:
            p = "ref" if r["psnr_db"] is None else f"{r['psnr_db']} dB"
            g = f"{r['gops']:.1f}" if r.get("gops") else ""
            pct = f"{r['peak_pct']:.0f}%" if r.get("peak_pct") else ""
            lines.append(f"| {r['name']} | {r['precision']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                         f"{r['speedup']:.2f}x | {p} | {g} | {pct} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--artifacts", required=True, nargs="+",
                    help="export folder(s); several (`before=DIR after=DIR`) are timed call by call in turn")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    print(markdown(latency_table(args.model, args.artifacts, args.size, args.runs, args.threads), args.size))


if __name__ == "__main__":
    main()
