"""One worker: one runner, loaded once, and the work on one image (read, upscale, write atomically).

The same class runs inside the single process and inside each Ray actor, so both engines make the same
calls with the same inputs. Everything an output's bytes depend on is in :class:`RunnerSpec` and
:class:`Settings` (picklable, sent to every worker) and in the task's noise seed; nothing depends on
which worker runs an image or what it ran before:
- `--tile auto` chooses without timing anything (:class:`AutoTileConfig` with `measure=False`): a timed
  choice could differ between two workers, and a different tiling gives other bits at tile borders;
- the noise seed comes with the task (derived from the image's bytes, see vpdsr.scale.job).
What the bytes can still depend on is the kernels a backend picks for its thread count: torch's CPU
convolutions give other bits at another thread count or batch (measured: one 8-bit step on a few
pixels), OpenVINO's INT8 and f32 kernels did not here. `threads` is recorded, and pinning it (`--threads`)
makes torch outputs identical across engines too.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vpdsr.errors import InputError, VpdsrError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSpec:
    """What runs the images: `--model` with torch, or an exported `--artifact` (any backend)."""

    model: str = "tiny"
    artifact: str | None = None
    target: str | None = None
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    threads: int | None = None  # per worker; None: the backend's default (all cores)

    def build(self):
        """The (inactive) runner; one-line InputError/ConfigError/ArtifactError for bad settings."""
        if not self.artifact and self.backend in (None, "torch"):
            from vpdsr.runtimes.torch_runner import TorchRunner

            return TorchRunner.from_pretrained(self.model, device=self.device or "cpu",
                                               precision=self.precision or "fp32")
        if not self.artifact:
            raise InputError(f"`--backend {self.backend}` needs `--artifact PATH` (an exported artifact)")
        if self.backend == "torch":
            raise InputError("`--backend torch` runs `--model`, not an exported `--artifact`; drop one of them")
        from vpdsr.runtimes import load

        options = {k: v for k, v in (("target", self.target), ("precision", self.precision),
                                     ("device", self.device)) if v}
        backend = self.backend or _artifact_backend(self.artifact, self.target)
        if self.threads and backend in ("onnxruntime", "openvino"):
            options["threads"] = self.threads
            if backend == "openvino":  # its THROUGHPUT streams would take every core whatever `threads` says
                options["performance_hint"] = "LATENCY"
        return load(self.artifact, backend=self.backend, **options)

    def identity(self, runner) -> dict:
        """What the outputs depend on in the runner: the artifact's files (sha256) or the model's tensors."""
        import hashlib
        import json

        entry = getattr(runner, "entry", None)
        if entry is not None:
            files = sorted((f.path, f.sha256) for f in entry.files)
            key = hashlib.sha256(json.dumps([entry.name, entry.target, entry.precision, files]).encode()).hexdigest()
            return {"kind": "artifact", "source": str(Path(self.artifact).resolve()), "target": entry.target,
                    "backend": runner.backend, "precision": runner.precision, "sha256": key}
        from vpdsr.export.onnx_graph import model_sha256

        return {"kind": "model", "source": self.model, "backend": "torch", "precision": runner.precision,
                "sha256": model_sha256(runner.model)}


def _artifact_backend(artifact: str, target: str | None) -> str | None:
    """The backend an artifact runs on by default (to pass it its thread count), None when unknown here."""
    from vpdsr.artifacts import ENTRY_NAME, MANIFEST_NAME, Manifest, read_entry

    path = Path(artifact)
    path = path.parent if path.is_file() else path
    try:
        if (path / ENTRY_NAME).is_file():
            return read_entry(path).backend
        if (path / MANIFEST_NAME).is_file() and target:
            return Manifest.read(path).entry(target).backend
    except VpdsrError:
        return None  # load() names the problem in one line
    return None


@dataclass(frozen=True)
class Settings:
    """The output-defining settings of a run (saved in upscale.json; a change makes earlier outputs stale)."""

    tile: int | str | None = "auto"  # LR pixels; 0/None: whole image; "auto"
    overlap: int = 16
    batch: int = 4
    seed: int = 0
    bit_depth: int = 8

    def tiles(self):
        from vpdsr.runtimes.autotile import AutoTileConfig
        from vpdsr.runtimes.tiling import TileConfig

        if self.tile in (None, "auto"):
            return AutoTileConfig(overlap=self.overlap, max_batch=self.batch, measure=False)
        tile = self.tile or None
        return TileConfig(tile=tile, overlap=self.overlap if tile else 0, batch=self.batch)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Task:
    """One image to make. `output` is the file to write; `stream`: row by row into a tiled TIFF."""

    input: str
    sha256: str
    output: str
    noise_seed: int
    stream: bool = False


class UpscaleWorker:
    """Holds one active runner; `process(task)` makes one output and returns its record.

    Raises (at construction): the one-line VpdsrError of bad settings (an unknown model, a tile that
    contradicts a static artifact, a missing backend).
    """

    def __init__(self, spec: RunnerSpec, settings: Settings, worker_id: int = 0):
        from vpdsr.runtimes.upscale import Upscaler

        if spec.threads and (spec.artifact is None or spec.backend == "torch"):
            import torch

            torch.set_num_threads(spec.threads)
        self.spec, self.settings, self.worker_id = spec, settings, worker_id
        self.runner = spec.build().activate()
        try:
            self.upscaler = Upscaler(self.runner, settings.tiles(), settings.seed,
                                     explicit_tile=settings.tile not in (None, "auto"))
        except BaseException:
            self.runner.deactivate()
            raise
        self.scale = int(getattr(self.runner, "scale", 4))
        self.node = _node_id()
        self.host = socket.gethostname()

    def where(self) -> dict:
        return {"worker": self.worker_id, "pid": os.getpid(), "node": self.node, "host": self.host}

    def process(self, task: Task) -> dict:
        """Make `task.output`. A corrupt or unreadable image (or one that cannot be written) is a failed
        record with its one-line reason, not an exception; bugs still raise."""
        from vpdsr.data.io import read_image, write_image
        from vpdsr.utils import sha256_file

        t0 = time.perf_counter()
        record = {"input": task.input, **self.where()}
        try:
            image = read_image(task.input)
            h, w = image.shape[:2]
            out = Path(task.output)
            if task.stream:
                from vpdsr.scale.tiff_rows import write_tiff_rows

                rows = self.upscaler.rows(image, seed=task.noise_seed)
                del image  # the generator holds the only reference: freed once the CHW copy is made
                write_tiff_rows(out, h * self.scale, w * self.scale, rows, bit_depth=self.settings.bit_depth)
            else:
                sr = self.upscaler(image, seed=task.noise_seed)
                del image
                write_image(out, sr, bit_depth=self.settings.bit_depth)
                del sr
        except (VpdsrError, MemoryError) as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            return {**record, "status": "failed", "reason": reason, "seconds": round(time.perf_counter() - t0, 3)}
        return {**record, "status": "done", "lr_size": [h, w], "sr_size": [h * self.scale, w * self.scale],
                "output_sha256": sha256_file(out), "output_bytes": out.stat().st_size,
                "plan": self.upscaler.last_plan.to_dict() if self.upscaler.last_plan else None,
                "seconds": round(time.perf_counter() - t0, 3)}

    def close(self) -> None:
        self.runner.deactivate()


def _node_id() -> str:
    """The Ray node this process runs on, or the host name outside Ray."""
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    return socket.gethostname()
