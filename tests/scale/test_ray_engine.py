"""`vpdsr upscale --engine ray`: the same bytes as one process, failures, lost workers, a cluster of two nodes.

The quick test starts a local Ray with two workers (about 15-20 s, most of it Ray's start); the tests that
kill a worker or start a two-node cluster are `slow`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vpdsr.cli import main
from vpdsr.data.io import write_image

pytest.importorskip("ray", reason="the Ray engine needs Ray (pip install 'vpdsr[ray]')")


def photos(folder: Path, n: int, side: int = 36) -> Path:
    from vpdsr.data.samples import load_sample

    names = ("chelsea", "coffee", "rocket", "astronaut")
    for k in range(n):
        img = load_sample(names[k % len(names)])
        y, x = 7 * k % 60, 11 * k % 90
        write_image(folder / f"p{k:02d}.png", img[y : y + side + k % 5, x : x + side + 3 * (k % 3)])
    return folder


def manifest(out: Path) -> dict:
    return json.loads((out / "upscale.json").read_text())


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_x4.*"))}


def test_ray_workers_make_the_bytes_of_one_process(tmp_path):
    folder = photos(tmp_path / "in", 5)
    (folder / "zz-corrupt.png").write_bytes((folder / "p00.png").read_bytes()[:300])
    args = ["upscale", str(folder), "--threads", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 1
    assert main([*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 1
    local, ray = outputs(tmp_path / "local"), outputs(tmp_path / "ray")
    assert len(local) == 5 and local == ray
    m = manifest(tmp_path / "ray")
    assert [Path(f["input"]).name for f in m["failures"]] == ["zz-corrupt.png"]
    run = m["runs"][-1]
    assert run["engine"] == "ray" and run["workers"] == 2 and run["done"] == 5 and run["lost_workers"] == []
    assert sum(n["images"] for n in run["nodes"].values()) == 5
    assert {r["worker"] for r in m["images"]} <= {0, 1} and run["ray_init_s"] > 0
    # resumable across engines: the single process finds everything done
    assert main([*args, "--out", str(tmp_path / "ray")]) == 1
    assert manifest(tmp_path / "ray")["runs"][-1]["skipped"] == 5


@pytest.mark.slow
def test_a_killed_worker_costs_only_its_image_in_flight(tmp_path):
    folder = photos(tmp_path / "in", 16, side=64)
    assert main(["upscale", str(folder), "--threads", "1", "--no-progress", "--out", str(tmp_path / "local")]) == 0
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "vpdsr.cli", "upscale", str(folder), "--out", str(out), "--engine", "ray",
           "--workers", "2", "--threads", "1", "--no-progress"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and job.poll() is None:
        time.sleep(0.3)
        try:
            m = manifest(out)
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        places = m["runs"][-1].get("worker_places")
        if places and m["runs"][-1].get("done", 0) >= 3:
            victim = places[1]["pid"]
            os.kill(victim, signal.SIGKILL)
    stdout, stderr = job.communicate(timeout=600)
    assert victim is not None, "the job ended before a worker could be killed"
    assert job.returncode == 0, stderr[-2000:]
    m = manifest(out)
    run = m["runs"][-1]
    assert len(run["lost_workers"]) == 1 and run["done"] == 16
    attempts = sum(r["attempts"] for r in m["images"])
    assert attempts == 16 + len(run["lost_workers"])  # one image made twice at most; nothing else redone
    assert outputs(out) == outputs(tmp_path / "local")


@pytest.mark.slow
def test_a_cluster_of_two_nodes_shares_the_images(tmp_path):
    """`ray start --head` and a second `ray start --address` on this machine, one CPU each."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = 6390 + os.getpid() % 500
    # every node must import this vpdsr, and both must agree on Ray's token authentication
    path = os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "PYTHONPATH": path}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        address = f"127.0.0.1:{port}"
        time.sleep(12)
        second = subprocess.Popen([str(ray_bin), "start", "--block", f"--address={address}", "--num-cpus=1",
                                   "--node-ip-address=127.0.0.1",
                                   "--disable-usage-stats"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(12)
        folder = photos(tmp_path / "in", 8, side=48)
        out = tmp_path / "out"
        job = subprocess.run([sys.executable, "-m", "vpdsr.cli", "upscale", str(folder), "--out", str(out),
                              "--engine", "ray", "--address", address, "--workers", "2", "--threads", "1",
                              "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stderr[-2000:]
        run = manifest(out)["runs"][-1]
        assert run["cluster"]["nodes"] == 2
        counts = [n["images"] for n in run["nodes"].values()]
        assert len(counts) == 2 and all(c > 0 for c in counts) and sum(counts) == 8
    finally:
        for p in (second, head):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
