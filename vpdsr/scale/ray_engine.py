"""`vpdsr upscale --engine ray`: the images on Ray actors, one runner each, pulling images as they finish.

Why actors and not Ray Data: every image is its own unit (one input file, one output file written
atomically, one manifest record with its seconds, worker and node), images of a set have different sizes
(Ray Data batches rows into blocks; mixed shapes would travel as opaque objects), and a lost worker must
cost exactly its image in flight, counted: Ray Data retries whole blocks out of sight and would need
pyarrow and pandas besides (`ray[data]`). An actor holds its runner for the whole job (loaded and compiled
once), as Ray Data's actor pools would; the dispatch below is the few lines that remain.

How the work flows: the driver gives each actor one image; when its result comes back, that actor gets
the next one (an actor pulls work as it frees up, so fast and slow workers both stay busy). Actors are placed with
Ray's SPREAD strategy (on a cluster, across nodes rather than packed on the first). Each actor reserves
`threads` CPUs, and its runner uses that many threads.

When a worker dies (its process killed, its node lost), Ray restarts the actor (loading its runner again)
and the driver gives the image it held to the next free worker: a death costs the image in flight,
nothing that was finished (results are written by the worker before it reports them). An image whose
worker died `max_attempts` times is recorded as failed with that reason, and the job goes on.

Workers read the inputs and write the outputs by path: on a cluster of several machines, the inputs and
`--out` must be on storage every node mounts at the same path.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator

from vpdsr.errors import InputError, MissingDependencyError, VpdsrError
from vpdsr.scale.job import JobStopped
from vpdsr.scale.worker import RunnerSpec, Settings, Task, UpscaleWorker

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # worker deaths one image may cost before it counts as failed
RESTART_PATIENCE_S = 300.0  # how long the job waits for lost workers to come back when none is left


def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("`--engine ray` needs Ray: pip install 'vpdsr[ray]'") from None
    return ray


class EngineError(VpdsrError):
    """The Ray workers cannot run (exit 2: nothing was made)."""


class _Actor:
    """The body of a Ray actor: an UpscaleWorker whose construction errors are kept, not raised, so the
    driver can report a bad setting in one line (a raising __init__ would only say the actor died)."""

    def __init__(self, spec: RunnerSpec, settings: Settings, worker_id: int):
        self.error = None
        self.worker = None
        try:
            self.worker = UpscaleWorker(spec, settings, worker_id)
        except VpdsrError as e:
            self.error = (type(e).__module__, type(e).__name__, " ".join(str(e).split()), e.exit_code)

    def ready(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return self.worker.where()

    def process(self, task: Task) -> dict:
        return self.worker.process(task)


class RayEngine:
    """Ray actors as workers (see the module docstring).

    Args:
        spec, settings: what every worker runs (as the single process would).
        workers: actors to start.
        address: an existing cluster to join (`ray start --head` printed it); None: start a local Ray and
            shut it down at the end.
        threads: CPUs (and runner threads) per actor.
    """

    def __init__(self, spec: RunnerSpec, settings: Settings, workers: int, address: str | None, threads: int):
        self.spec, self.settings = spec, settings
        self.workers, self.address, self.threads = workers, address, threads
        self.actors: list = []
        self._started_ray = False
        self.info: dict = {"engine": "ray", "address": address, "workers": workers, "threads": threads,
                           "lost_workers": []}

    # -- start / stop ------------------------------------------------------------------------------
    def start(self) -> None:
        ray = _import_ray()
        t0 = time.perf_counter()
        # Workers log to their own files; only the driver's terminal lines reach the user.
        common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if self.address:
            try:
                ray.init(address=self.address, **common)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"`--address {self.address}`: cannot join the Ray cluster "
                                 f"({' '.join(str(e).split())[:200]})") from None
        else:
            # address="local": a new Ray for this job, even where `ray start` left a cluster address behind
            ray.init(address="local", num_cpus=self.workers * self.threads, **common)
            self._started_ray = True
        self.info["ray_init_s"] = round(time.perf_counter() - t0, 3)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.info["cluster"] = {"nodes": len(nodes), "cpus": cpus}
        if self.workers * self.threads > cpus:
            raise InputError(f"`--workers {self.workers}` x `--threads {self.threads}` needs "
                             f"{self.workers * self.threads} CPUs; the Ray cluster has {cpus}")
        remote = ray.remote(num_cpus=self.threads, max_restarts=-1, max_task_retries=0,
                            scheduling_strategy="SPREAD")(_Actor)
        self.actors = [remote.remote(self.spec, self.settings, i) for i in range(self.workers)]
        from ray.exceptions import RayActorError

        try:
            where = ray.get([a.ready.remote() for a in self.actors])
        except RayActorError as e:  # the worker process could not even start (e.g. no vpdsr on that node)
            cause = " ".join(str(e).split())
            raise EngineError(f"a Ray worker could not start ({cause[-300:]}); every node needs this vpdsr "
                              "installed (pip install 'vpdsr[ray]') and the inputs and --out on a path it sees"
                              ) from None
        for w in where:
            if "error" in w:
                module, name, message, code = w["error"]
                raise _rebuild_error(module, name, message, code)
        self.info["worker_places"] = where
        self.info["start_s"] = round(time.perf_counter() - t0, 3)
        log.debug(f"ray: {len(self.actors)} worker(s) on {len({w['node'] for w in where})} node(s) "
                  f"in {self.info['start_s']:.1f} s")

    def close(self) -> None:
        import sys

        ray = sys.modules.get("ray")
        if ray is None:
            return
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # an actor already gone: nothing to end
                pass
        self.actors = []
        if ray.is_initialized():
            t0 = time.perf_counter()
            ray.shutdown()  # a joined cluster keeps running; a local Ray stops
            self.info["shutdown_s"] = round(time.perf_counter() - t0, 3)

    # -- the work --------------------------------------------------------------------------------------
    def results(self, tasks: list[Task]) -> Iterator[tuple[Task, dict]]:
        ray = _import_ray()
        from ray.exceptions import RayActorError  # ActorDiedError and ActorUnavailableError derive from it

        queue = deque(tasks)
        attempts: dict[str, int] = {}
        pending: dict = {}  # ObjectRef -> (actor index, task, or None for a readiness probe)
        busy = [False] * len(self.actors)
        restarting: dict[int, float] = {}  # actor -> when to probe it next
        self._since_alive = time.monotonic()

        def give(i: int) -> None:
            if not busy[i] and i not in restarting and queue:
                task = queue.popleft()
                attempts[task.input] = attempts.get(task.input, 0) + 1
                pending[self.actors[i].process.remote(task)] = (i, task)
                busy[i] = True

        def probe_due() -> None:
            now = time.monotonic()
            probing = {i for i, t in pending.values() if t is None}
            for i, when in list(restarting.items()):
                if when <= now and i not in probing:
                    pending[self.actors[i].ready.remote()] = (i, None)

        for i in range(len(self.actors)):
            give(i)
        while pending or restarting:
            probe_due()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5) if pending else ([], [])
            if not done:
                if not pending:
                    time.sleep(0.2)
                self._check_alive(restarting)
                continue
            i, task = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except RayActorError as e:
                if task is None:  # still restarting: ask again shortly
                    restarting[i] = time.monotonic() + 0.5
                    continue
                busy[i] = False
                restarting[i] = time.monotonic() + 0.5
                # A death while making this image: it costs this image (made again elsewhere or later).
                self.info["lost_workers"].append({"worker": i, "input": task.input, "attempt": attempts[task.input],
                                                  "error": " ".join(str(e).split())[:300], "when": time.time()})
                log.warning(f"ray: worker {i} was lost while making {task.input}; it is restarted and the image "
                            "made again")
                if attempts[task.input] >= MAX_ATTEMPTS:
                    yield task, {"input": task.input, "status": "failed", "worker": i,
                                 "reason": f"its worker died {MAX_ATTEMPTS} times while making it (out of memory?)"}
                else:
                    queue.appendleft(task)  # first in line again, for the next free worker
                for j in range(len(self.actors)):
                    give(j)
                continue
            if task is None:  # the restarted actor answers again (a new process, maybe on another node)
                restarting.pop(i, None)
                if "error" not in record:
                    self.info["worker_places"][i] = record
                self._since_alive = time.monotonic()
                give(i)
                continue
            busy[i] = False
            self._since_alive = time.monotonic()
            record["attempts"] = attempts[task.input]
            give(i)
            yield task, record

    def _check_alive(self, restarting: dict[int, float]) -> None:
        """Stop the job when every worker has been restarting for long, and no node is left to run them."""
        if len(restarting) == len(self.actors) and time.monotonic() - self._since_alive > RESTART_PATIENCE_S:
            if not self._alive():
                raise JobStopped("no Ray node is left to run the workers (the cluster is gone?)")
            raise JobStopped(f"no Ray worker came back within {RESTART_PATIENCE_S:.0f} s of being lost")

    def _alive(self) -> bool:
        """Whether the cluster still has a node to restart actors on."""
        ray = _import_ray()
        try:
            return any(n.get("Alive") for n in ray.nodes())
        except Exception:  # the GCS itself is unreachable
            return False


def _rebuild_error(module: str, name: str, message: str, code: int) -> VpdsrError:
    """The worker's VpdsrError as the same class here (the CLI prints it in one line with its exit code)."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, VpdsrError):
            return cls(message)
    except (ImportError, AttributeError):
        pass
    err = VpdsrError(message)
    err.exit_code = code
    return err


def local_cpus() -> int:
    from vpdsr.env import available_cpus

    return available_cpus() or os.cpu_count() or 1
