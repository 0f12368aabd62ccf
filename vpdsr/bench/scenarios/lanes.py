"""How each engine runs many images at once: the lanes of the offline, server and multi-stream scenarios.

A *lane* is one image in flight: an :class:`~vpdsr.runtimes.upscale.Upscaler` with the latency
column's tiling and noise seed over an engine object of its own. What that object is, is the engine's
own way of running many requests (`--scenario-lanes N` sets how many; "auto" is the default):

- OpenVINO (``streams``): one compile with the THROUGHPUT performance hint, which splits the cores into
  streams; one infer request per stream (OPTIMAL_NUMBER_OF_INFER_REQUESTS; N lanes ask for N streams),
  each lane's request runs one image's tiles while the other streams run other images;
- ONNX Runtime (``sessions``): N inference sessions (auto: one per CPU), each with CPUs / N intra-op
  threads, one image per session, so no image waits at another's thread barrier;
- torch (``batched``): N lanes (auto: 2 on a CPU, 4 on a GPU) over one model, whose concurrent engine calls
  of the same input shape are merged into one batch (:class:`BatchingRunner`, a dynamic batcher as serving
  engines have: images of one size form one call), run on the benchmark's own thread;
- anything else (``serial``): the latency column's runner as the one lane (TensorRT engines, split
  OpenVINO artifacts without a compiled model of their own).

Example:
    >>> with open_lanes(spec, runner, upscaler, sizes, LaneOptions(seed=0)) as lanes:
    ...     sr = lanes.lanes[0](lr)
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from vpdsr import env
from vpdsr.errors import InputError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import as_float32
from vpdsr.runtimes.upscale import Upscaler

log = logging.getLogger(__name__)
STREAMS, SESSIONS, BATCHED, SERIAL = "streams", "sessions", "batched", "serial"
# images in flight for torch (the batcher's largest batch): on a CPU, batching same-shape calls gains little
# (tiny, three held-out photos, 2 cores: 12.3 images/s one at a time, 14.4 with 2 in flight, 13.4 with 4), the
# second image's tiling and noise overlap the first one's engine call; on a GPU the batch is what pays
TORCH_AUTO_LANES = {"cpu": 2, "cuda": 4}


@dataclass(frozen=True)
class LanePlan:
    """What a backend's pool will be (decided before anything loads, so that bad settings cost nothing)."""

    kind: str
    lanes: int | None  # None: the engine decides (OpenVINO's optimal number of requests)
    threads: int | None  # intra-op threads per lane (None: the engine's own)

    def describe(self, lanes: int | None = None) -> str:
        n = lanes or self.lanes
        if self.kind == STREAMS:
            return (f"{n} OpenVINO THROUGHPUT stream(s), one infer request per stream, one image per request"
                    if n else "OpenVINO THROUGHPUT streams, one infer request per stream")
        if self.kind == SESSIONS:
            return f"{n} ONNX Runtime session(s) of {self.threads or 'default'} thread(s), one image per session"
        if self.kind == BATCHED:
            return f"{n} image(s) in flight, same-shape engine calls merged into one batch (up to {n})"
        return "1 lane: the latency column's runner, one image at a time"


def plan_lanes(spec, lanes: int | str, cpus: int | None = None) -> LanePlan:
    """The pool of `spec` (a :class:`vpdsr.bench.backends.BackendSpec`) for `--scenario-lanes` `lanes`.

    Raises:
        InputError: the backend cannot run several images at once with `lanes` (torch CUDA graphs replay
            one set of static buffers).
    """
    cpus = cpus or env.available_cpus()
    auto = lanes == "auto"
    if spec.backend == "torch":
        if spec.extra.get("cuda_graphs") and not auto and lanes > 1:
            raise InputError(f"`--scenario-lanes {lanes}`: {spec.name} replays CUDA graphs, whose static input "
                             "buffers take one batch at a time; the batcher still merges calls (leave it auto)")
        n = (TORCH_AUTO_LANES["cuda" if str(spec.device).startswith("cuda") else "cpu"]) if auto else int(lanes)
        return LanePlan(BATCHED, n, None)
    if spec.backend == "openvino" and spec.stages != "split" and str(spec.device).upper().startswith("CPU"):
        return LanePlan(STREAMS, None if auto else int(lanes), None)
    if spec.backend in ("onnxruntime", "openvino"):
        n = (cpus if str(spec.device).lower() == "cpu" or spec.backend == "openvino" else 2) if auto else int(lanes)
        on_cpu = str(spec.device).lower() == "cpu" or spec.backend == "openvino"
        return LanePlan(SESSIONS, n, max(1, cpus // n) if on_cpu else None)
    return LanePlan(SERIAL, 1, None)


class BatchingRunner(Runner):
    """Merges concurrent `infer` calls with equal input shapes (but the batch) into one call of `inner`.

    The calls are run by whichever thread runs :meth:`serve` (the benchmark's own thread, where the latency
    column ran: torch's CPU thread team behaves differently on another thread, see
    :func:`vpdsr.bench.scenarios.loadgen.run_test`), so `inner` sees one caller (a CUDA graph or a compiled
    model too). It takes the first waiting call, then every other waiting call of the same shapes up to
    `max_batch` samples, waiting at most `wait_s` for callers that are still computing their tiles (none
    when all `clients` are already waiting), runs them as one batch and hands each caller its slice.

    Args:
        inner: an active runner with a dynamic batch dimension.
        max_batch: samples per merged call at most.
        clients: the threads that call it (the lanes); when all wait, the batch goes without waiting.
        wait_s: the longest a batch waits for more callers.
    """

    backend = "batched"

    def __init__(self, inner: Runner, max_batch: int, clients: int, wait_s: float = 0.005):
        super().__init__(f"{inner.name}+batcher", device=inner.device, precision=inner.precision)
        self.inner, self.max_batch, self.clients, self.wait_s = inner, max_batch, clients, wait_s
        self.size_multiple, self.scale = inner.size_multiple, inner.scale
        self._cv = threading.Condition()
        self._waiting: list[tuple[dict, Future]] = []
        self.calls = 0
        self.samples = 0

    def activate_impl(self) -> None:
        pass

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        return self.inner.get_input_metadata()

    @property
    def noise_channels(self) -> int | None:
        return self.inner.noise_channels

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done: Future = Future()
        with self._cv:
            self._waiting.append((feed, done))
            self._cv.notify_all()
        return done.result()

    @staticmethod
    def _key(feed: dict[str, np.ndarray]) -> tuple:
        return tuple((k, v.shape[1:], str(v.dtype)) for k, v in sorted(feed.items()))

    def _take(self, stop: threading.Event) -> list[tuple[dict, Future]] | None:
        """The next merged batch (the first waiting call and the waiting calls of its shapes); None once `stop`
        is set and no call waits."""
        with self._cv:
            while not self._waiting:
                if stop.is_set():
                    return None
                self._cv.wait(timeout=0.02)
            if len(self._waiting) < self.clients:  # others may still be cutting their tiles: wait a little
                self._cv.wait_for(lambda: len(self._waiting) >= self.clients, timeout=self.wait_s)
            key = self._key(self._waiting[0][0])
            batch, n = [], 0
            for w in self._waiting:
                if self._key(w[0]) != key:
                    continue
                b = next(iter(w[0].values())).shape[0]
                if batch and n + b > self.max_batch:
                    break
                batch.append(w)
                n += b
            taken = {id(w) for w in batch}  # by identity: the feeds are arrays, == would compare them
            self._waiting = [w for w in self._waiting if id(w) not in taken]
            return batch

    def serve(self, stop: threading.Event) -> None:
        """Run the waiting calls, merged, on this thread until `stop` is set and none waits."""
        while True:
            try:
                batch = self._take(stop)
            except BaseException as e:  # noqa: BLE001 - a bug here must not leave the callers waiting forever
                with self._cv:
                    batch, self._waiting = self._waiting, []
                for _, done in batch:
                    done.set_exception(e)
                continue
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[tuple[dict, Future]]) -> None:
        try:
            if len(batch) == 1:
                outs = [self.inner.infer(batch[0][0])]
            else:
                merged = {k: np.concatenate([f[k] for f, _ in batch]) for k in batch[0][0]}
                out = self.inner.infer(merged)
                outs, start = [], 0
                for f, _ in batch:
                    b = next(iter(f.values())).shape[0]
                    outs.append({k: v[start : start + b] for k, v in out.items()})
                    start += b
            self.calls += 1
            self.samples += sum(next(iter(f.values())).shape[0] for f, _ in batch)
            for (_, done), out in zip(batch, outs):
                done.set_result(out)
        except BaseException as e:  # noqa: BLE001 - every caller of the batch gets the engine's error
            for _, done in batch:
                if not done.done():
                    done.set_exception(e)


class OpenVINORequestRunner(Runner):
    """One infer request of an active OpenVINO runner's compiled model (one THROUGHPUT stream's lane)."""

    backend = "openvino"

    def __init__(self, parent, request):
        super().__init__(f"{parent.name}[request]", device=parent.device, precision=parent.precision)
        self.parent, self.request = parent, request
        self.size_multiple, self.scale = parent.size_multiple, parent.scale
        self._meta = parent.get_input_metadata()
        compiled = parent.compiled
        self._f16 = {name for name, port in zip(self._meta, compiled.inputs)
                     if port.get_element_type().to_dtype() == np.float16}
        self._out = compiled.outputs[0]

    def activate_impl(self) -> None:
        pass

    def input_metadata_impl(self) -> dict[str, tuple[str, tuple]]:
        return self._meta

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: v.astype(np.float16) if k in self._f16 else v for k, v in feed.items()}
        result = self.request.infer(feed)
        return {"sr": as_float32(np.array(result[self._out], copy=True))}  # the request's buffer is reused


@dataclass
class LaneOptions:
    """Settings shared by every lane: the noise seed, and (torch) how long a batch waits."""

    seed: int = 0
    batch_wait_s: float = 0.005
    noise_cache_mb: int = 16


@dataclass
class OpenLanes:
    """The pool of one backend: `lanes` (callables image -> SR) and what they are (`plan`, `describe()`)."""

    plan: LanePlan
    lanes: list
    batcher: BatchingRunner | None = None
    owned: list = field(default_factory=list)  # the engine objects this pool opened (closed on exit)

    @property
    def serve(self):
        """The loop the caller's thread must run while the lanes work (the batcher's), or None."""
        return self.batcher.serve if self.batcher is not None else None

    def describe(self) -> dict:
        out = {"kind": self.plan.kind, "lanes": len(self.lanes), "threads_per_lane": self.plan.threads,
               "how": self.plan.describe(len(self.lanes))}
        if self.batcher is not None and self.batcher.calls:
            out["mean_batch"] = round(self.batcher.samples / self.batcher.calls, 2)
        return out

    def __enter__(self) -> OpenLanes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.deactivate()
            self.batcher = None
        for r in self.owned:
            r.deactivate()
        self.owned.clear()
        self.lanes.clear()


def _lane(runner: Runner, upscaler: Upscaler, sizes: list[tuple[int, int]], opts: LaneOptions):
    """An image -> SR callable over `runner` with `upscaler`'s tiling of each size and its noise seed."""
    by_size = {}
    noise = None
    for h, w in sizes:
        if (h, w) in by_size:
            continue
        up = Upscaler(runner, upscaler.tiles_for_size(h, w), opts.seed, noise_cache_mb=opts.noise_cache_mb)
        noise = noise or up.noise  # one noise field per lane (its cache is not shared between threads)
        up.noise = noise
        by_size[(h, w)] = up

    def run(image: np.ndarray) -> np.ndarray:
        return by_size[image.shape[:2]](image)

    return run


def open_lanes(spec, runner: Runner, upscaler: Upscaler, sizes: list[tuple[int, int]], opts: LaneOptions,
               plan: LanePlan) -> OpenLanes:
    """Open the pool `plan` for `spec` beside its active latency-column `runner` / `upscaler`.

    Args:
        sizes: the (h, w) of every image the pool will see (their tilings are fixed now).
    """
    if plan.kind == SERIAL:
        return OpenLanes(plan, [_lane(runner, upscaler, sizes, opts)])
    if plan.kind == BATCHED:
        batcher = BatchingRunner(runner, max_batch=plan.lanes, clients=plan.lanes, wait_s=opts.batch_wait_s)
        batcher.activate()
        return OpenLanes(plan, [_lane(batcher, upscaler, sizes, opts) for _ in range(plan.lanes)], batcher=batcher)
    from vpdsr.runtimes import load

    if plan.kind == STREAMS:
        options = {"performance_hint": "THROUGHPUT"}
        if plan.lanes:
            options["streams"] = plan.lanes
        parent = load(spec.artifact, allow_failed=spec.kept, **options)
        parent.name = f"{spec.name}[throughput]"
        parent.activate()
        pool = OpenLanes(plan, [], owned=[parent])
        try:
            n = plan.lanes or max(1, int(parent.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            for _ in range(n):
                lane_runner = OpenVINORequestRunner(parent, parent.compiled.create_infer_request()).activate()
                pool.lanes.append(_lane(lane_runner, upscaler, sizes, opts))
        except BaseException:
            pool.close()
            raise
        return pool
    pool = OpenLanes(plan, [])
    try:
        for k in range(plan.lanes):
            options = {"threads": plan.threads} if plan.threads else {}
            if "providers" in spec.extra:
                options.update(providers=spec.extra["providers"], device=spec.device)
            r = load(spec.artifact, allow_failed=spec.kept, **options)
            r.name = f"{spec.name}[session {k}]"
            r.activate()
            pool.owned.append(r)
            pool.lanes.append(_lane(r, upscaler, sizes, opts))
    except BaseException:
        pool.close()
        raise
    return pool
