"""A fixed set of training crops with the teacher's outputs on them, for a teacher that is costly to run.

Real-ESRGAN x4plus takes about 0.4-1 s per LR 64x64 tile on these CPUs, against a few milliseconds for
the student: computing its output on a fresh crop every step would cost more than the training itself.
`student.target_crops: N` draws N crops once (crop, flips and degradation seeded by (seed, crop index),
as a batch draw is), takes the teacher's output on each from the disk cache or computes it (at
`student.target_threads`, in `student.target_workers` processes: vpdsr.distill.target_workers), and each
student step then draws its batch from those N by index.
"""
from __future__ import annotations

import logging
import time

import torch

from vpdsr.distill import target_workers
from vpdsr.distill.data import Batch, CropDataset, step_generator

log = logging.getLogger(__name__)


class TargetPool:
    """`batch(step, micro, batch_size, stage)` as CropDataset's, from N crops with their teacher targets.

    Args:
        data: the training photos (crops are cut and degraded by it).
        teacher: an OutputTeacher.
        count: N.
        seed: the run seed.
        progress: show a progress bar while the targets are computed.
        threads: torch threads meanwhile (0: every CPU this process may use).
        workers: processes that compute the missing outputs, this one included, each at `threads`
            (0: as many as the CPUs this process may use hold; needs the disk cache).
    """

    def __init__(self, data: CropDataset, teacher, count: int, seed: int, progress: bool = True, threads: int = 0,
                 workers: int = 1):
        from tqdm import tqdm

        from vpdsr.env import available_cpus

        self.seed, self.count = seed, count
        hrs, lrs, targets = [], [], []
        before = torch.get_num_threads()
        torch.set_num_threads(threads or available_cpus())  # the training may pin another count; the key records it
        t0 = time.perf_counter()
        cache, computed = teacher.cache, 0
        try:
            noises = []
            for i in range(count):
                b = data.batch(i, 0, 1, "targets")
                noises.append(teacher.noise_for(b.lr, None, step_generator(seed, "targets", i, 1)))
                hrs.append(b.hr)
                lrs.append(b.lr)
            workers = workers or max(1, available_cpus() // torch.get_num_threads())
            todo = target_workers.missing(teacher, list(zip(lrs, noises))) if cache is not None and workers > 1 else []
            if len(todo) > 1:
                shown = min(workers, len(todo))
                log.info(f"teacher targets: {len(todo)} of {count} to compute, in {shown} processes "
                         f"at {torch.get_num_threads()} thread(s) each")
                with tqdm(total=len(todo[::shown]), desc="teacher targets (this process's share)", unit="crop",
                          disable=not progress or None) as bar:
                    computed = target_workers.compute_in_workers(teacher, list(zip(lrs, noises)), todo, shown,
                                                                 bar.update)
                computed = len(todo)  # every missing one, whichever process computed it
                cache.hits = cache.misses = 0
            bar = tqdm(range(count), desc="teacher targets", unit="crop", disable=not progress or None)
            for i in bar:
                targets.append(teacher.output(lrs[i], noises[i]))
                if cache is not None:
                    bar.set_postfix(cached=cache.hits, computed=cache.misses, refresh=False)
        finally:
            torch.set_num_threads(before)
        self.hr, self.lr, self.target = torch.cat(hrs), torch.cat(lrs), torch.cat(targets)
        self.seconds = time.perf_counter() - t0
        if cache is not None:
            computed += cache.misses
        log.info(f"teacher targets: {count} crops in {self.seconds:.0f} s"
                 + (f" ({count - computed} from the cache, {computed} computed, in {cache.folder})" if cache else ""))

    def __len__(self) -> int:
        return self.count

    def batch(self, step: int, micro: int, batch_size: int, stage: str) -> Batch:
        g = step_generator(self.seed, stage, step, micro)
        idx = torch.randint(self.count, (batch_size,), generator=g)
        return Batch(hr=self.hr[idx], lr=self.lr[idx], target=self.target[idx])
