"""`vpdsr upscale` on many photos: one process vs Ray with 1 and 2 workers, side by side in one run.

    python benchmarks/upscale_scale.py --artifact ARTIFACTS --target openvino-int8 --out runs/scale-bench \
        [--count 200] [--cluster] [--kill]

Makes `--count` photos of mixed sizes (crops and resizes of the photos inside scikit-image and
scikit-learn, seeded), then runs the same `vpdsr upscale` command with `--engine local`, `--engine ray
--workers 1` and `--engine ray --workers 2`, each into its own folder, and reports images/s (the work, and
the whole command), Ray's start-up cost (from upscale.json) and how many outputs are byte-identical across
the three. `--cluster` adds the same job against a Ray cluster of two nodes on this machine (`ray start
--head` and a second `ray start --address`, 1 CPU each) with the per-node image counts; `--kill` adds a
two-worker run in which one worker is SIGKILLed mid-run (outputs compared with the single process, images
made twice counted from upscale.json). Writes OUT/scale.json and OUT/scale.md.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_photos(folder: Path, count: int, seed: int = 0) -> Path:
    from skimage.transform import resize

    from vpdsr.data.io import write_image
    from vpdsr.data.samples import SAMPLE_NAMES, load_sample

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = {n: load_sample(n) for n in SAMPLE_NAMES}
    for k in range(count):
        img = photos[SAMPLE_NAMES[k % len(SAMPLE_NAMES)]]
        ch, cw = (int(rng.integers(48, min(img.shape[0], 400))), int(rng.integers(48, min(img.shape[1], 400))))
        y, x = int(rng.integers(0, img.shape[0] - ch + 1)), int(rng.integers(0, img.shape[1] - cw + 1))
        crop = img[y : y + ch, x : x + cw]
        side = int(rng.integers(48, 193))  # the longer side after the resize: LR 48..192
        f = side / max(ch, cw)
        out = resize(crop, (max(16, round(ch * f)), max(16, round(cw * f))), anti_aliasing=f < 1, order=3)
        write_image(folder / f"photo{k:03d}.png", np.clip(out, 0, 1).astype(np.float32))
    return folder


def env(extra: dict | None = None) -> dict:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "RAY_ADDRESS": "", **(extra or {})}


def upscale(images: Path, out: Path, common: list[str], *extra: str, environ: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "vpdsr.cli", "upscale", str(images), "--out", str(out), "--no-progress",
           *common, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env(environ), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 2), **summary(out)}


def summary(out: Path) -> dict:
    m = json.loads((out / "upscale.json").read_text())
    run = m["runs"][-1]
    keys = ("engine", "workers", "threads", "done", "failed", "work_s", "seconds", "images_per_s", "ray_init_s",
            "start_s", "shutdown_s", "cluster", "lost_workers")
    row = {k: run.get(k) for k in keys}
    row["nodes"] = {k[:12]: v["images"] for k, v in (run.get("nodes") or {}).items()}
    row["attempts"] = sum(r.get("attempts", 1) for r in m["images"])
    return row


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_x*.png")) + sorted(out.glob("*_x*.tif"))}


def identical(a: Path, b: Path) -> int:
    oa, ob = outputs(a), outputs(b)
    return sum(1 for k in oa if ob.get(k) == oa[k])


def cluster_run(images: Path, out: Path, common: list[str]) -> dict:
    ray = str(Path(sys.executable).with_name("ray"))
    port = 6390 + os.getpid() % 500
    address = f"127.0.0.1:{port}"
    nodes_env = env({"RAY_AUTH_MODE": "token"})
    procs = []
    try:
        procs.append(subprocess.Popen([ray, "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                                       "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                                       "--disable-usage-stats"], env=nodes_env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        time.sleep(15)
        procs.append(subprocess.Popen([ray, "start", "--block", f"--address={address}", "--num-cpus=1",
                                       "--node-ip-address=127.0.0.1", "--disable-usage-stats"], env=nodes_env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(15)
        return upscale(images, out, common, "--engine", "ray", "--address", address, "--workers", "2",
                       "--threads", "1", environ={"RAY_AUTH_MODE": "token"})
    finally:
        for p in reversed(procs):  # SIGTERM to `ray start --block` stops the node it started
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def kill_run(images: Path, out: Path, common: list[str], after: int) -> dict:
    cmd = [sys.executable, "-m", "vpdsr.cli", "upscale", str(images), "--out", str(out), "--no-progress", *common,
           "--engine", "ray", "--workers", "2", "--threads", "1"]
    job = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    while killed is None and job.poll() is None:
        time.sleep(0.5)
        try:
            run = json.loads((out / "upscale.json").read_text())["runs"][-1]
        except (FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
            continue
        if run.get("worker_places") and run.get("done", 0) >= after:
            killed = {"pid": run["worker_places"][1]["pid"], "after_done": run["done"]}
            os.kill(killed["pid"], signal.SIGKILL)
    _, err = job.communicate()
    if job.returncode != 0:
        raise SystemExit(f"the killed run failed ({job.returncode}): {err[-1500:]}")
    return {"command": " ".join(cmd[1:]), "killed": killed, **summary(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--target", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--kill", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    images = make_photos(out / "photos", args.count)
    common = ["--artifact", args.artifact] + (["--target", args.target] if args.target else [])
    load = os.getloadavg()
    rows = {"local": upscale(images, out / "local", common),
            "ray-1": upscale(images, out / "ray-1", common, "--engine", "ray", "--workers", "1"),
            "ray-2": upscale(images, out / "ray-2", common, "--engine", "ray", "--workers", "2")}
    for name in ("ray-1", "ray-2"):
        rows[name]["identical_to_local"] = identical(out / "local", out / name)
    if args.cluster:
        rows["cluster-2-nodes"] = cluster_run(images, out / "cluster", common)
        rows["cluster-2-nodes"]["identical_to_local"] = identical(out / "local", out / "cluster")
    if args.kill:
        rows["ray-2-killed"] = kill_run(images, out / "killed", common, after=args.count // 4)
        rows["ray-2-killed"]["identical_to_local"] = identical(out / "local", out / "killed")
    result = {"count": args.count, "outputs": len(outputs(out / "local")), "loadavg_before": load,
              "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}
    (out / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| run | images/s (work) | images/s (command) | command s | Ray init s | workers ready s | "
             "identical to local | per node | lost workers | images made twice |", "|" + "---|" * 10]
    for name, r in rows.items():
        made_twice = r["attempts"] - r["done"]
        lines.append(f"| {name} | {r['images_per_s']:.2f} | {r['done'] / r.get('wall_s', r['seconds']):.2f} | "
                     f"{r.get('wall_s', r['seconds'])} | {r.get('ray_init_s') or '-'} | {r.get('start_s')} | "
                     f"{r.get('identical_to_local', r['done'])}/{result['outputs']} | {r['nodes']} | "
                     f"{len(r.get('lost_workers') or [])} | {made_twice} |")
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
