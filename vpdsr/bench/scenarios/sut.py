"""The system under test and the query sample library LoadGen drives.

The query sample library (:class:`SampleLibrary`) is the bench images: their LR arrays, read once
before anything runs and kept in memory (LoadGen's load/unload callbacks only record what it asked
for). A sample is one whole image, upscaled with the same tiling and noise as the latency column.

Two systems under test:

- :class:`InlineSUT` (single-stream): the very upscaler the latency column timed, on the thread it was
  timed on (LoadGen runs on a helper thread meanwhile, see :func:`.loadgen.run_test`), one sample at a
  time, as LoadGen's single-stream waits for each answer;
- :class:`PoolSUT` (offline, server, multi-stream): the issue callback only queues samples; one worker
  thread per *lane* (an upscaler over its own engine request, session or batch slot, see
  :mod:`.lanes`) takes the next one as soon as it is free, first in, first out.

A lane that raises stops the scenario: the error is kept, every sample still outstanding is completed
at once (so LoadGen ends instead of waiting for answers that never come), and the scenario is failed.
Each sample's own time (from the lane taking it to its result) is recorded per image, beside LoadGen's
latencies, which also count the time a sample waited in the queue. The first result of every image in
a pool is checked against the single-stream output of that image (:class:`OutputCheck`): an engine
that answers wrongly under concurrent requests fails as one that crashes.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vpdsr.bench.scenarios import loadgen

log = logging.getLogger(__name__)
Lane = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) LR -> (sH, sW, 3) SR


class SampleLibrary:
    """LoadGen's query sample library: the bench images' LR arrays, all kept loaded.

    Args:
        images: (H, W, 3) float32 LR images.
        names: their names (for the per-image figures).
        scale: the model's upscaling factor (output megapixels).
    """

    def __init__(self, images: list[np.ndarray], names: list[str] | None = None, scale: int = 4):
        if not images:
            raise ValueError("a sample library needs at least one image")
        self.images = images
        self.names = names or [f"image{i}" for i in range(len(images))]
        self.scale = scale
        self.loaded: set[int] = set()
        self.asked: set[int] = set()  # every index LoadGen ever asked to load

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices) -> None:
        self.loaded.update(int(i) for i in indices)  # already in memory: read before the run started
        self.asked.update(int(i) for i in indices)

    def unload(self, indices) -> None:
        self.loaded.difference_update(int(i) for i in indices)

    def output_mpix(self, index: int) -> float:
        h, w = self.images[index].shape[:2]
        return h * w * self.scale * self.scale / 1e6


class ScenarioFault(RuntimeError):
    """A lane answered wrongly (its output differs from the single-stream output of the same image)."""


@dataclass
class OutputCheck:
    """The first output of every image must match its single-stream output (PSNR >= `min_psnr_db`).

    Threads of one pool may use other kernels than the single-stream engine (another thread count, a
    THROUGHPUT compile, a batch), so equality is not asked for: only what a user would call the same image.
    """

    expected: list[np.ndarray]
    min_psnr_db: float = 40.0
    worst_psnr_db: float = math.inf
    checked: set = field(default_factory=set)

    def __call__(self, index: int, sr: np.ndarray, lock: threading.Lock) -> None:
        with lock:
            if index in self.checked:
                return
            self.checked.add(index)
        ref = self.expected[index]
        if sr.shape != ref.shape:
            raise ScenarioFault(f"image {index}: output shape {sr.shape} under concurrent requests, "
                                f"{ref.shape} single-stream")
        mse = float(np.mean((np.asarray(sr, np.float64) - ref) ** 2))
        psnr = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
        with lock:
            self.worst_psnr_db = min(self.worst_psnr_db, psnr)
        if not psnr >= self.min_psnr_db:
            raise ScenarioFault(f"image {index}: the output under concurrent requests differs from its "
                                f"single-stream output (PSNR {psnr:.1f} dB < {self.min_psnr_db:g} dB)")


class _Recorder:
    """What every SUT keeps: per-image own times, output megapixels done, the first error."""

    def __init__(self, qsl: SampleLibrary, check: OutputCheck | None):
        self.qsl, self.check = qsl, check
        self.lock = threading.Lock()
        self.times: dict[int, list[float]] = {}
        self.mpix = 0.0
        self.samples = 0
        self.error: BaseException | None = None

    def run(self, lane: Lane, index: int) -> None:
        if self.error is not None:  # failed already: answer at once so that LoadGen ends
            return
        t0 = time.perf_counter()
        try:
            sr = lane(self.qsl.images[index])
            if self.check is not None:
                self.check(index, sr, self.lock)
        except BaseException as e:  # noqa: BLE001 - any engine error fails the scenario, LoadGen must still end
            with self.lock:
                if self.error is None:
                    self.error = e
                    log.debug("scenario: a lane failed", exc_info=e)
            return
        dt = time.perf_counter() - t0
        with self.lock:
            self.times.setdefault(index, []).append(dt)
            self.mpix += self.qsl.output_mpix(index)
            self.samples += 1

    def reset(self) -> None:
        """Forget the figures (not the output checks) before the next LoadGen run."""
        with self.lock:
            self.times.clear()
            self.mpix = 0.0
            self.samples = 0

    def own_times_ms(self) -> dict:
        """{"all": {p50, p90, n}, "per_image": {name: {p50, p90, n}}} of the samples' own times."""
        def stats(values):
            ms = np.asarray(values) * 1000.0
            return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)), "n": len(ms)}

        every = [t for v in self.times.values() for t in v]
        return {"all": stats(every) if every else None,
                "per_image": {self.qsl.names[i]: stats(v) for i, v in sorted(self.times.items())}}


class InlineSUT(_Recorder):
    """Single-stream: each sample runs with `lane` (the latency column's upscaler) on the thread that calls
    :meth:`serve` (pass it to :func:`.loadgen.run_test`: the thread the latency column was timed on)."""

    def __init__(self, lane: Lane, qsl: SampleLibrary, check: OutputCheck | None = None):
        super().__init__(qsl, check)
        self.lane = lane
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def issue(self, samples) -> None:
        for s in samples:
            self._queue.put((s.id, s.index))

    def flush(self) -> None:
        pass

    def serve(self, done: threading.Event) -> None:
        """Answer the queued samples until `done` is set and none is left."""
        while True:
            try:
                sample_id, index = self._queue.get(timeout=0.02)
            except queue.Empty:
                if done.is_set():
                    return
                continue
            self.run(self.lane, index)
            loadgen.complete([sample_id])


class PoolSUT(_Recorder):
    """Offline, server and multi-stream: one worker thread per lane over one first-in first-out queue.

    Use as a context manager (the threads start on enter and are joined on exit).
    """

    def __init__(self, lanes: list[Lane], qsl: SampleLibrary, check: OutputCheck | None = None,
                 serve: Callable[[threading.Event], None] | None = None):
        super().__init__(qsl, check)
        self.lanes = lanes
        self.serve = serve  # the loop the caller's thread runs while the lanes work (a batcher's), or None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> PoolSUT:
        for k, lane in enumerate(self.lanes):
            t = threading.Thread(target=self._work, args=(lane,), name=f"vpdsr-lane-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._threads.clear()

    def issue(self, samples) -> None:
        for s in samples:
            self._queue.put((s.id, s.index))

    def flush(self) -> None:
        pass

    def _work(self, lane: Lane) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sample_id, index = item
            self.run(lane, index)
            loadgen.complete([sample_id])

    def run_direct(self, indices: list[int]) -> float:
        """Run these samples through the lanes without LoadGen (warm-up, a first throughput estimate);
        returns the seconds it took. Raises the first lane error."""
        pending: queue.SimpleQueue = queue.SimpleQueue()
        for i in indices:
            pending.put(i)

        def work(lane: Lane) -> None:
            while True:
                try:
                    i = pending.get_nowait()
                except queue.Empty:
                    return
                self.run(lane, i)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=work, args=(lane,), daemon=True) for lane in self.lanes]
        for t in threads:
            t.start()
        if self.serve is not None:
            done = threading.Event()

            def watch() -> None:
                for t in threads:
                    t.join()
                done.set()

            threading.Thread(target=watch, daemon=True).start()
            self.serve(done)
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error
        return time.perf_counter() - t0
