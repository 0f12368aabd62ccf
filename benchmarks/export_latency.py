"""Side-by-side CPU latency of torch fp32 and every exported artifact, in one process.

    python benchmarks/export_latency.py --model base --artifacts ART --size 64 --runs 5

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


def latency_table(model_spec: str, artifacts: Path, size: int = 64, runs: int = 5, threads: int | None = None) -> list[dict]:
    """Rows {name, precision, median_ms, min_ms, speedup, psnr_db} for torch fp32 and every ok artifact."""
    from vpdsr.runtimes import load

    if threads:
        torch.set_num_threads(threads)
    model = from_pretrained(model_spec)
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
    for entry in Manifest.read(artifacts).artifacts:
        if entry.status != "ok":
            rows.append({"name": entry.name, "precision": entry.precision, "skipped": entry.reason})
            continue
        with load(artifacts / entry.name) as runner:
            out = runner.infer(feed)["sr"]
            times = timed(lambda: runner.infer(feed), runs)
        rows.append({"name": entry.name, "precision": entry.precision, "median_ms": statistics.median(times),
                     "min_ms": min(times), "psnr_db": round(safe_psnr(out[0].transpose(1, 2, 0), ref[0].transpose(1, 2, 0)), 2)})
    base = rows[0]["median_ms"]
    for r in rows:
        if "median_ms" in r:
            r["speedup"] = base / r["median_ms"]
    return rows


def markdown(rows: list[dict], size: int) -> str:
    lines = [f"| backend (LR {size}x{size}, batch 1) | precision | median ms | min ms | speed-up vs torch fp32 | PSNR vs torch fp32 |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['precision']} | skipped: {r['skipped']} | | | |")
        else:
            p = "ref" if r["psnr_db"] is None else f"{r['psnr_db']} dB"
            lines.append(f"| {r['name']} | {r['precision']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                         f"{r['speedup']:.2f}x | {p} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--artifacts", required=True, type=Path)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    print(markdown(latency_table(args.model, args.artifacts, args.size, args.runs, args.threads), args.size))


if __name__ == "__main__":
    main()
