"""Training on two processes: `accelerate launch --multi_gpu --num_processes 2 -m vpdsr.cli distill ...`
with `accelerate.cpu: true` in the config: two CPU processes, DDP over gloo.

(`accelerate launch --num_processes 2 --cpu ...` starts ONE process: accelerate 1.x's `--cpu` picks its
simple launcher, which ignores `--num_processes`; `--multi_gpu` picks torchrun's, and the script's
Accelerator(cpu=True) makes it a multi-CPU gloo run. The test checks that two ranks really run.)

One short teacher schedule on two CPU processes: the loss falls, both ranks hold the same weights after
every step, and the checkpoint rank 0 saved resumes on one process and on two.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.distill.conftest import tiny_config

ACCELERATE = Path(sys.executable).with_name("accelerate")
STEPS, MORE = 120, 130  # the first run, and the schedule the resumed runs finish
WINDOW = 20  # steps averaged: each step's loss is one batch at random timesteps


def config(images: Path, steps: int, path: Path) -> Path:
    cfg = tiny_config(images)
    cfg["data"]["batch_size"] = 8  # per process
    cfg["teacher"] = {"steps": steps, "checkpoint_every": 0, "log_every": 1,
                      "optim": {"warmup_steps": 2, "lr": 1e-2, "schedule": "constant"}}
    cfg["accelerate"] = {"mixed_precision": "no", "cpu": True, "num_threads": 1, "draw_worker": "off"}
    path.write_text(yaml.safe_dump(cfg))
    return path


def launch(processes: int, *args: str, probe: Path | None = None, timeout: int = 300) -> None:
    path = os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    entry = ["-m", "vpdsr.cli"]
    if probe is not None:
        env["VPDSR_PROBE_DIR"] = str(probe)
        entry = [str(Path(__file__).with_name("ddp_probe.py"))]
    several = ["--multi_gpu"] if processes > 1 else ["--cpu"]
    cmd = [str(ACCELERATE), "launch", *several, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *entry, "distill", "teacher", *args, "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def losses(run: Path) -> dict[int, float]:
    """Step -> loss from log.csv, which must hold one row per step (rank 0's only)."""
    with open(run / "log.csv") as f:
        rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
    assert len(rows) == len(dict(rows)), "log.csv has several rows for one step (more than one rank wrote it)"
    return dict(rows)


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def block_images(tmp_path_factory) -> Path:
    """Two photos of sharp-edged colour blocks: the detail bicubic loses at edges is what a few
    steps learn (random-noise texture, as in the other distill tests, would hide the trend)."""
    import numpy as np

    from vpdsr.data.io import write_image

    folder = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(folder / f"b{i}.png", np.kron(rng.random((8, 8, 3)), np.ones((8, 8, 1))))
    return folder


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, block_images):
    if not ACCELERATE.is_file():
        pytest.skip("the accelerate launcher is not installed beside this Python")
    root = tmp_path_factory.mktemp("ddp")
    probe = root / "probe"
    probe.mkdir()
    launch(2, "--config", str(config(block_images, STEPS, root / "short.yaml")), "--out", str(root / "run"),
           probe=probe)
    return root


def test_two_processes_train_and_agree(two_process_run):
    from safetensors.torch import load_file

    run = two_process_run / "run"
    loss = losses(run)
    assert sorted(loss) == list(range(1, STEPS + 1))
    first = mean(loss[s] for s in range(1, WINDOW + 1))
    last = mean(loss[s] for s in range(STEPS - WINDOW + 1, STEPS + 1))
    assert last < 0.9 * first, f"loss {first:.4f} over the first {WINDOW} steps, {last:.4f} over the last"
    assert (run / "model" / "config.json").is_file() and (run / "checkpoint" / "state.json").is_file()
    probe = two_process_run / "probe"
    for step in (1, 2, 10, 60, STEPS):
        ranks = [load_file(probe / f"rank{r}-step{step}.safetensors") for r in (0, 1)]
        assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 0
        for name in ranks[0]:  # DDP all-reduces the gradients: bit-identical weights on every rank
            assert ranks[0][name].equal(ranks[1][name]), f"step {step}: {name} differs between ranks"
    first = load_file(probe / "rank0-step1.safetensors")
    last = load_file(probe / f"rank0-step{STEPS}.safetensors")
    assert any(not first[k].equal(last[k]) for k in first)


@pytest.mark.parametrize("processes", [1, 2])
def test_rank_zeros_checkpoint_resumes(processes, two_process_run, block_images, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_process_run / "run", run)
    before = losses(run)
    more = config(block_images, MORE, tmp_path / "more.yaml")
    if processes == 1:
        from vpdsr.cli import main

        assert main(["distill", "teacher", "--config", str(more), "--out", str(run), "--resume", "--no-progress"]) == 0
    else:
        launch(2, "--config", str(more), "--out", str(run), "--resume")
    after = losses(run)
    assert sorted(after) == list(range(1, MORE + 1))  # the first run's steps kept, the rest appended once
    assert all(after[s] == before[s] for s in before)
    # it goes on from the trained weights: the resumed steps are as low as the last trained ones
    resumed = mean(after[s] for s in range(STEPS + 1, MORE + 1))
    assert resumed < 0.9 * mean(before[s] for s in range(1, WINDOW + 1))
    assert (run / "model" / "config.json").is_file()
