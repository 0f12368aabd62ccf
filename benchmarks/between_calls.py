"""Where per-image time goes between engine calls: tuned vs untuned settings, side by side in one process.

    python benchmarks/between_calls.py --artifacts RUN/artifacts --targets openvino-int8,onnx,ort-int8

For each CPU artifact, twice (the tuned defaults, then `@untuned`: the engine defaults and no noise
block cache, see `vpdsr.bench.backends`), the held-out photos are upscaled with the same fixed tiling
(default 64/8/4, what the issue measured) under cProfile: per image, the wall time end to end, the
time inside engine calls (the runner's own timing), the Python time outside them, and how much of it
is noise generation. Prints one markdown table.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

ENGINE_CALLS = ("_pyopenvino.infer", "_pyopenvino.wait", "_pyopenvino.start_async", "pybind11_state.run")


def profile(artifact: Path, options: dict, noise_cache_mb: int, tiles, images, rounds: int) -> dict:
    """Per-image ms: end to end, engine calls, Python outside them, noise generation."""
    from vpdsr.runtimes import load
    from vpdsr.runtimes.upscale import Upscaler

    with load(artifact, **options) as runner:
        calls = []
        up = Upscaler(runner, tiles, 0, on_call=lambda r: calls.append(r.last_inference_time()),
                      noise_cache_mb=noise_cache_mb)
        for _, lr, _ in images:  # warm-up: compiles, allocations, the noise cache filled
            up(lr)
        calls.clear()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(rounds):
            for _, lr, _ in images:
                up(lr)
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    engine = sum(tt for (_, _, fn), (_, _, tt, _, _) in stats.items() if any(k in fn for k in ENGINE_CALLS))
    noise = sum(tt for (f, _, _), (_, _, tt, _, _) in stats.items() if f.endswith("noise.py"))
    n = rounds * len(images)
    return {"e2e": 1000 * wall / n, "engine": 1000 * sum(calls) / n, "outside": 1000 * (total - engine) / n,
            "noise": 1000 * noise / n, "outside_pct": 100 * (total - engine) / wall}


def main() -> None:
    from vpdsr.artifacts import Manifest
    from vpdsr.bench.backends import UNTUNED_OPTIONS
    from vpdsr.export.validation import holdout_images
    from vpdsr.runtimes.tiling import TileConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True, type=Path)
    ap.add_argument("--targets", default="openvino-int8,onnx", help="comma list of CPU manifest entries")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="timed passes over the photos (default 2)")
    args = ap.parse_args()
    entries = {e.name: e for e in Manifest.read(args.artifacts).artifacts}
    images = holdout_images()
    tiles = TileConfig(args.tile, args.overlap, args.batch)
    print("| artifact | settings | e2e ms/img | engine ms/img | Python outside ms/img | of it noise | outside % |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for name in args.targets.split(","):
        backend = entries[name].backend
        for label, options, cache in (("tuned", {}, 64), ("untuned", UNTUNED_OPTIONS[backend], 0)):
            r = profile(args.artifacts / name, options, cache, tiles, images, args.rounds)
            print(f"| {name} | {label} | {r['e2e']:.1f} | {r['engine']:.1f} | {r['outside']:.1f} | {r['noise']:.1f} | "
                  f"{r['outside_pct']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
