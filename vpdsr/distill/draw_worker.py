"""A step's draws computed ahead in a worker process, on a CPU core the training leaves idle.

A CPU run pinned to fewer threads than it has cores (configs/tiny.yaml pins 1 thread, the count its
shipped weights were made with) leaves cores idle. What a step needs before its backward pass - the
crops, their latents, the noise and, for the student, the teacher's T-step sampling - touches no
trained weight and depends only on (seed, step, micro), so a worker process with the same thread
count computes it ahead and hands over the same tensors: the weights keep their bits. Measured (tiny,
1 thread, AMD EPYC, 2 cores): the teacher's 4-step sampling is 0.53 s of a 1.2 s student step.

The worker is `python -m vpdsr.distill.draw_worker SPEC.json`, not a multiprocessing child: spawn
would import the caller's main module again (a script without a ``__main__`` guard would train a
second time inside it). It rebuilds the draw from the spec (the config as a dict, model folders in
safetensors) and sends each draw back as a safetensors frame on its stdout; nothing is unpickled.

`accelerate.draw_worker`: auto (on for a single-process CPU stage of at least AUTO_MIN_STEPS steps,
without mixed precision, whose thread count leaves a core free), on (every CPU run without mixed
precision), off. A worker that fails costs one warning line with its last words, and the run draws
in-process from there, with the same results.
"""
from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FRAME_HEADER = struct.Struct("<Q")  # byte length of the safetensors frame that follows
# A worker takes ~4 s to start here (it imports torch and diffusers); `auto` leaves stages shorter than
# this many steps (tests, smoke runs) in-process, where that start would not be earned back.
AUTO_MIN_STEPS = 100


def wanted(cfg, acc, steps: int) -> bool:
    """Whether `accelerate.draw_worker` asks for a worker on a stage of `steps` steps."""
    from vpdsr.env import available_cpus

    mode = cfg.accelerate.draw_worker
    # autocast applies in the training process only: with mixed precision the worker's draws would differ
    if mode == "off" or acc.device.type != "cpu" or cfg.accelerate.mixed_precision != "no":
        return False
    return mode == "on" or (acc.num_processes == 1 and steps >= AUTO_MIN_STEPS
                            and available_cpus() > torch.get_num_threads())


@dataclass
class DrawSpec:
    """What the worker rebuilds its draw from (see `build_draw`)."""

    stage: str  # teacher | student
    config: dict  # DistillConfig.to_dict()
    model_dir: str  # the model whose frozen parts encode (saved at the stage's start)
    model_training: bool  # its train()/eval() mode, as in the training process
    teacher_dir: str | None = None  # the student stage's teacher (None: no teacher targets)
    num_threads: int = 1
    steps: list | None = None  # [(step, micro), ...] in the order the loop asks


def build_draw(spec: DrawSpec) -> Callable:
    """The draw a spec describes, built as the training process built its own."""
    from vpdsr.distill.config import load_config
    from vpdsr.distill.data import CropDataset
    from vpdsr.models.checkpoint import load_directory

    cfg = load_config(spec.config)
    model = load_directory(Path(spec.model_dir)).requires_grad_(False).train(spec.model_training)
    if spec.stage == "teacher":
        from vpdsr.distill.trainer import TeacherDraw

        data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
        return TeacherDraw(cfg, data, model, "cpu")
    from vpdsr.distill.student import StudentDraw, student_net, training_data
    from vpdsr.distill.teachers import plan_teacher

    teacher = plan_teacher(cfg, spec.teacher_dir).load(cfg, "cpu") if spec.teacher_dir else None
    if teacher is not None:
        data = training_data(cfg, teacher, progress=False)
    else:
        data = CropDataset(cfg.data.images, cfg.data.crop_size, cfg.degradation_config(), cfg.seed, cfg.data.augment)
    return StudentDraw(cfg, data, student_net(model, cfg), teacher, "cpu", teacher is not None)


class StepDraws:
    """`draws(step, micro)`: `draw(step, micro)` in this process, or the same ahead in a worker.

    Args:
        draw: the in-process draw (also the fallback); its results depend only on (step, micro).
        spec: how the worker rebuilds it (None: never a worker); `steps` is filled at the first call.
        model: the model whose state `spec.model_dir` must hold, saved when the worker starts.
        last_step: the loop's last step; the worker starts at the first step asked for (a resumed run's).
        micros: the micro-batch draw indices of every step, in the order the loop asks for them.
        depth: how many draws may wait ready.
    """

    def __init__(self, draw: Callable, spec: DrawSpec | None, model, last_step: int, micros: list[int],
                 depth: int = 2, label: str = "draws"):
        self.draw, self.spec, self.model, self.label = draw, spec, model, label
        self.last_step, self.micros, self.depth = last_step, list(micros), depth
        self.process = None
        self.folder: Path | None = None

    @property
    def in_worker(self) -> bool:
        return self.process is not None

    def __call__(self, step: int, micro: int):
        if self.spec is not None:  # started at the first call: a resumed loop begins after its checkpoint
            spec, self.spec = self.spec, None
            self._start(spec, [(s, m) for s in range(step, self.last_step + 1) for m in self.micros])
        if self.process is None:
            return self.draw(step, micro)
        item = self._next()
        if item is None:  # the worker failed: draw in-process from here on
            return self.draw(step, micro)
        got, value = item
        if got != (step, micro):
            raise RuntimeError(f"{self.label}: the worker sent step {got}, expected {(step, micro)}")
        return value

    def _start(self, spec: DrawSpec, steps: list[tuple[int, int]]) -> None:
        from vpdsr.models import save_pretrained

        self.folder = Path(tempfile.mkdtemp(prefix="vpdsr-draws-"))
        save_pretrained(self.model, self.folder / "model")
        spec.model_dir, spec.steps = str(self.folder / "model"), steps
        spec.num_threads = torch.get_num_threads()
        (self.folder / "spec.json").write_text(json.dumps(asdict(spec)))
        self.worker_log = open(self.folder / "worker.log", "wb")  # noqa: SIM115 (open for the worker's life; closed in close())
        package_root = str(Path(__file__).resolve().parents[2])  # so the worker imports this vpdsr
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": str(spec.num_threads)}
        command = [sys.executable, "-m", "vpdsr.distill.draw_worker", str(self.folder / "spec.json")]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self.worker_log, env=env)
        self.ready: queue_mod.Queue = queue_mod.Queue(maxsize=self.depth)
        self.reader = threading.Thread(target=_read_frames, args=(self.process.stdout, self.ready), daemon=True)
        self.reader.start()
        log.debug(f"{self.label}: steps {steps[0][0]}-{self.last_step} drawn ahead in worker pid {self.process.pid}")

    def _next(self):
        item = self.ready.get()  # no deadline: a big model's draw may take minutes; the reader ends on EOF
        if item is None:
            self.process.wait()
            self._fall_back(f"exit code {self.process.returncode}: {self._last_words()}")
        return item

    def _last_words(self) -> str:
        self.worker_log.flush()
        lines = [ln for ln in (self.folder / "worker.log").read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "no output"

    def _fall_back(self, reason: str) -> None:
        log.warning(f"warning: {self.label}: the draw worker stopped ({reason}); drawing in this process from here "
                    "(same results, slower)")
        self.close()

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            while self.reader.is_alive():  # it ends at EOF; drain what it holds so a full queue cannot block it
                try:
                    self.ready.get(timeout=0.1)
                except queue_mod.Empty:
                    pass
            self.process.stdout.close()
            self.worker_log.close()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_frames(stream, ready: queue_mod.Queue) -> None:
    """Reader thread: each frame from the worker's stdout into `ready` (blocks when it is full), None at EOF."""
    while True:
        head = stream.read(FRAME_HEADER.size)
        if len(head) < FRAME_HEADER.size:
            break
        (n,) = FRAME_HEADER.unpack(head)
        frame = stream.read(n)
        if len(frame) < n:
            break
        ready.put(decode_frame(frame))
    ready.put(None)


def encode_frame(step: int, micro: int, value: tuple) -> bytes:
    """A draw as safetensors bytes: its tensors by position, None entries left out (the count is in the metadata)."""
    from safetensors.torch import save

    tensors = {str(i): v.contiguous() for i, v in enumerate(value) if v is not None}
    return save(tensors, metadata={"step": str(step), "micro": str(micro), "count": str(len(value))})


def decode_frame(frame: bytes) -> tuple[tuple[int, int], tuple]:
    """((step, micro), the draw's tuple) of an `encode_frame` buffer."""
    from safetensors.torch import load

    meta = _metadata(frame)
    tensors = load(frame)
    return (int(meta["step"]), int(meta["micro"])), tuple(tensors.get(str(i)) for i in range(int(meta["count"])))


def _metadata(frame: bytes) -> dict:
    """The `__metadata__` of a safetensors buffer (its JSON header)."""
    (n,) = struct.unpack("<Q", frame[:8])
    return json.loads(frame[8:8 + n]).get("__metadata__", {})


def main(argv: list[str] | None = None) -> int:
    """The worker: rebuild the draw, then write one frame per (step, micro) of the spec to stdout."""
    argv = sys.argv[1:] if argv is None else argv
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to the log, never into the frames
    spec = DrawSpec(**json.loads(Path(argv[0]).read_text()))
    torch.set_num_threads(spec.num_threads)  # the training's count: the same kernels, the same bits
    draw = build_draw(spec)
    for step, micro in spec.steps:
        frame = encode_frame(step, micro, draw(step, micro))
        try:
            out.write(FRAME_HEADER.pack(len(frame)) + frame)
            out.flush()
        except BrokenPipeError:  # the training finished or stopped early
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
