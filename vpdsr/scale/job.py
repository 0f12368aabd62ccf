"""The upscale job both engines share: the plan (hashes, sizes, seeds, outputs, what is already done) and
the loop that turns results into manifest records, a progress bar and one summary line.

An engine is anything with `start()`, `results(tasks) -> iterator of (task, record)` in completion order,
`close()` and a dict `info` (engine name, workers, start-up seconds, lost workers): the single process
(:class:`LocalEngine`, here) or Ray actors (:mod:`vpdsr.scale.ray_engine`).

Noise seeds: each image's seed is derived from `--seed` and the sha256 of the input file's bytes, so an
image gets the same noise whichever worker runs it, in whatever order, in any run; two images get
independent noise (one seed for all would lay the same noise pattern under every image of a set).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vpdsr.errors import InputError
from vpdsr.scale.manifest import RunManifest, relative_output
from vpdsr.scale.memory import fits_in_memory
from vpdsr.scale.worker import RunnerSpec, Settings, Task, UpscaleWorker

log = logging.getLogger(__name__)


def noise_seed(seed: int, input_sha256: str) -> int:
    """The image's noise seed: a 63-bit integer from `--seed` and the input file's sha256."""
    digest = hashlib.sha256(f"vpdsr-upscale-noise:{seed}:{input_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class Plan:
    """Attributes: todo (tasks to run, input order), skipped (inputs already done), failed ({input: reason}
    found while planning: unreadable files, corrupt headers), stale (todo inputs that had an older output)."""

    todo: list[Task] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stale: int = 0


def make_plan(files: list[Path], out: Path, scale: int, settings: Settings, budget: int,
              manifest: RunManifest) -> Plan:
    """Hash and size every input (headers only), pick each output's name and path (in memory or streamed),
    and leave out what the manifest says is done."""
    from vpdsr.commands.checks import distinct_outputs
    from vpdsr.data.io import read_image_size
    from vpdsr.utils import sha256_file

    # one stem, one output, whichever of .png (in memory) or .tif (streamed) it becomes
    distinct_outputs((f, out / f"{f.stem}_x{scale}") for f in files)
    manifest.keep_failures_of({str(f) for f in files})
    plan = Plan()
    for f in files:
        name = str(f)
        try:
            digest = sha256_file(f)
            h, w = read_image_size(f)
        except InputError as e:
            plan.failed[name] = " ".join(str(e).split())
            continue
        except OSError as e:
            plan.failed[name] = f"{f}: cannot read ({e.strerror or e})"
            continue
        if manifest.is_done(name, digest):
            plan.skipped.append(name)
            continue
        stream = not fits_in_memory(h, w, scale, budget, settings.bit_depth)
        target = out / f"{f.stem}_x{scale}.{'tif' if stream else 'png'}"
        if manifest.record(name) is not None:
            plan.stale += 1
        plan.todo.append(Task(name, digest, str(target), noise_seed(settings.seed, digest), stream))
    distinct_outputs((Path(t.input), Path(t.output)) for t in plan.todo)  # an output name that is a folder
    return plan


class LocalEngine:
    """The single process: one worker, the images one after another. Imports no Ray."""

    def __init__(self, spec: RunnerSpec, settings: Settings):
        self.spec, self.settings = spec, settings
        self.worker: UpscaleWorker | None = None
        self.info: dict = {"engine": "local", "workers": 1, "threads": spec.threads, "lost_workers": []}

    def start(self) -> None:
        t0 = time.perf_counter()
        self.worker = UpscaleWorker(self.spec, self.settings)
        self.info["start_s"] = round(time.perf_counter() - t0, 3)

    def results(self, tasks: list[Task]) -> Iterator[tuple[Task, dict]]:
        for task in tasks:
            yield task, self.worker.process(task)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


class JobStopped(Exception):
    """The engine cannot go on (its workers are gone); the message says why."""


def run_job(engine, plan: Plan, manifest: RunManifest, progress: bool = True, on_start=None) -> dict:
    """Run `plan.todo` on `engine`, recording every result in `manifest` as it arrives; `on_start()` is
    called once the engine has started.

    Returns:
        The run's entry in the manifest (counts, seconds, images/s, per-node counts).

    Raises:
        JobStopped / KeyboardInterrupt: after the manifest is flushed with everything finished so far.
    """
    from tqdm import tqdm

    for name, reason in plan.failed.items():
        manifest.add_failure(name, reason, stage="plan")
    run = manifest.start_run({"engine": engine.info.get("engine"), "todo": len(plan.todo),
                              "skipped": len(plan.skipped), "stale": plan.stale})
    counts = {"done": 0, "failed": len(plan.failed)}
    nodes: dict[str, dict] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(plan.todo), desc="upscale", unit="img", disable=not progress or None, dynamic_ncols=True,
               smoothing=0.1)
    started = False
    try:
        engine.start()
        started = True
        if on_start is not None:
            on_start()
        run.update({k: v for k, v in engine.info.items() if k != "lost_workers"})
        manifest.flush(force=True)
        t_work = time.perf_counter()
        for task, record in engine.results(plan.todo):
            node = nodes.setdefault(record.get("node", "?"), {"host": record.get("host"), "images": 0, "failed": 0})
            if record["status"] == "done":
                old = manifest.stale_output(task.input, relative_output(manifest.folder, Path(task.output)))
                if old is not None and old.resolve() != Path(task.output).resolve():
                    old.unlink(missing_ok=True)
                manifest.add_done({**record, "sha256": task.sha256, "noise_seed": task.noise_seed,
                                   "output": relative_output(manifest.folder, Path(task.output)),
                                   "mode": "stream" if task.stream else "memory"})
                counts["done"] += 1
                node["images"] += 1
                log.debug(f"{task.input} -> {task.output} ({record['seconds']:.2f} s, worker {record.get('worker')})")
            else:
                manifest.add_failure(task.input, record["reason"], worker=record.get("worker"), node=record.get("node"))
                counts["failed"] += 1
                node["failed"] += 1
                log.debug(f"{task.input}: failed: {record['reason']}")
            bar.update(1)
            if counts["failed"]:
                bar.set_postfix(failed=counts["failed"], refresh=False)
            run.update(counts, nodes=nodes, lost_workers=engine.info.get("lost_workers", []))
            manifest.flush()
        run["work_s"] = round(time.perf_counter() - t_work, 3)
    finally:
        bar.close()
        seconds = time.perf_counter() - t0
        run.update(counts, nodes=nodes, seconds=round(seconds, 3), lost_workers=engine.info.get("lost_workers", []))
        work = run.get("work_s")
        if work:
            run["images_per_s"] = round(counts["done"] / work, 4)
        try:
            engine.close()
        finally:
            if "shutdown_s" in engine.info:
                run["shutdown_s"] = engine.info["shutdown_s"]
            run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            if started or manifest.folder.is_dir():  # a setting the workers refused creates no --out
                manifest.flush(force=True)
    return run
