"""A target pool's missing teacher outputs computed by several processes at once, with the same bits.

A pool's targets are computed at a pinned thread count (`student.target_threads`, 1 for the shipped
x4plus recipe: the cache key and the outputs' last bits depend on it), which leaves the other cores of
the machine idle for the longest part of a cold run: Real-ESRGAN x4plus takes about 1 s per LR 32x32 crop
on one core, against minutes for the whole training. `student.target_workers: N` starts N - 1 worker
processes, each at that same thread count, so each output has the bits, and each cache entry the name,
it would have had in one process.

Each process takes every N-th missing crop and writes its outputs into the disk cache (atomic writes,
vpdsr.distill.target_cache); this process, its own share done, walks the workers' shares from their
ends and computes what is still missing, so a slow worker does not hold the run back (the crop a worker
is computing right then may be computed twice, to the same bits). A worker is `python -m
vpdsr.distill.target_workers SPEC.json`, not a multiprocessing child (see vpdsr.distill.draw_worker for
why); its inputs travel as safetensors, nothing is unpickled. A worker that fails costs one warning line
with its last words; what it left is computed here.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def missing(teacher, crops: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[int]:
    """Indices of the (lr, noise) crops that have no entry in the teacher's cache yet (at the current thread count)."""
    cache = teacher.cache
    return [i for i, (lr, noise) in enumerate(crops) if not cache.path(cache.key(lr, noise)).is_file()]


def compute_in_workers(teacher, crops: list[tuple[torch.Tensor, torch.Tensor | None]], todo: list[int],
                       workers: int, tick: Callable[[], None] | None = None) -> int:
    """Compute the teacher's outputs on `crops[i]` for i in `todo` into its cache, with `workers` processes
    in all (this one included), each at this process's thread count. Returns how many this process computed.

    `tick` is called after each crop this process is done with (a progress bar).
    """
    shares = [todo[k::workers] for k in range(workers)]
    folder = Path(tempfile.mkdtemp(prefix="vpdsr-targets-"))
    procs = []
    try:
        for k in range(1, workers):
            if shares[k]:
                procs.append(_start(teacher, crops, shares[k], folder / f"worker{k}"))
        computed = 0
        for i in shares[0]:
            computed += _compute(teacher, *crops[i])
            if tick:
                tick()
        # the workers' shares from their ends: whatever is still missing is computed here
        for i in [i for share in shares[1:] for i in reversed(share)]:
            computed += _compute(teacher, *crops[i])
        for proc, log_path in procs:
            if proc.wait() != 0:
                lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
                log.warning(f"warning: teacher targets: worker pid {proc.pid} stopped (exit code {proc.returncode}: "
                            f"{lines[-1].strip() if lines else 'no output'}); its crops were computed in this process")
        return computed
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


@torch.no_grad()
def _compute(teacher, lr: torch.Tensor, noise: torch.Tensor | None) -> int:
    """1 after computing and storing the output of a crop that was missing, 0 when its entry is there."""
    cache = teacher.cache
    key = cache.key(lr, noise)
    if cache.path(key).is_file():
        return 0
    cache.put(key, teacher._run(lr, noise))
    return 1


def _start(teacher, crops, share: list[int], folder: Path):
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    tensors = {}
    for i in share:
        lr, noise = crops[i]
        tensors[f"lr.{i}"] = lr.contiguous()
        if noise is not None:
            tensors[f"noise.{i}"] = noise.contiguous()
    save_file(tensors, str(folder / "inputs.safetensors"))
    cache = teacher.cache
    spec = {"teacher_dir": str(teacher.directory), "call": teacher.call.to_dict(),
            "cache_root": str(cache.folder.parent), "teacher_hash": cache.teacher_hash,
            "threads": torch.get_num_threads(), "order": share}
    (folder / "spec.json").write_text(json.dumps(spec))
    package_root = str(Path(__file__).resolve().parents[2])  # so the worker imports this vpdsr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(spec["threads"])}
    log_path = folder / "worker.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vpdsr.distill.target_workers", str(folder / "spec.json")],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
    return proc, log_path


def main(argv: list[str] | None = None) -> int:
    """The worker: load the teacher, check its hash, compute its share's missing outputs into the cache."""
    from safetensors.torch import load_file

    from vpdsr.distill.target_cache import TargetCache, model_hash
    from vpdsr.distill.teachers import OutputCall, OutputTeacher
    from vpdsr.models.checkpoint import load_directory

    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])  # the pool's count: the same kernels, the same bits, the same keys
    model = load_directory(Path(spec["teacher_dir"])).eval().requires_grad_(False)
    if model_hash(model) != spec["teacher_hash"]:
        sys.stderr.write(f"{spec['teacher_dir']}: its weights changed since the run loaded them (hash differs)\n")
        return 2
    call = OutputCall(**spec["call"])
    cache = TargetCache(Path(spec["cache_root"]), spec["teacher_hash"], call.to_dict())
    teacher = OutputTeacher(model, Path(spec["teacher_dir"]), call, cache)
    inputs = load_file(str(spec_path.parent / "inputs.safetensors"))
    with torch.no_grad():
        for i in spec["order"]:
            _compute(teacher, inputs[f"lr.{i}"], inputs.get(f"noise.{i}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
