"""One calibration set for every INT8 path (ONNX Runtime, modelopt, NNCF) and the fp16 checks.

A :class:`CalibrationSet` is a seeded list of LR crops of the tile size (from an image folder,
an image file, or the bundled sample photos) paired with seeded noise. It yields one feed dict
`{"lr": [1,3,t,t], "noise": [1,C,t,t]}` at a time, so a calibrator never holds more than one
sample's activations; `.sha256()` names its exact content for the manifest and the cache key.

Example:
    >>> calib = CalibrationSet("samples:calib", count=8, tile=64, channels=48)  # doctest: +SKIP
    >>> for feed in calib: ...                                                   # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vpdsr.errors import InputError

DEFAULT_CALIB = "samples:calib"


@dataclass
class CalibrationSet:
    """Seeded LR crops + noise.

    Attributes:
        source: image file, folder, or "samples[:subset]" (see `vpdsr.data.samples.resolve_images`).
        count: number of samples.
        tile: crop side in LR pixels (the exported tile size); images smaller than a tile are
            edge-padded.
        channels: noise channels (the model's latent channels); None or 0 for a model without noise.
        seed: picks the crop positions and the noise.
    """

    source: str = DEFAULT_CALIB
    count: int = 8
    tile: int = 64
    channels: int = 48
    seed: int = 0
    _feeds: list[dict[str, np.ndarray]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"`--calib-count` must be at least 1, got {self.count}")
        if self.tile < 1:
            raise InputError(f"`--tile` must be positive, got {self.tile}")

    def feeds(self) -> list[dict[str, np.ndarray]]:
        """All samples (built once; count x tile^2 x (3 + C) floats, a few MB at most)."""
        if self._feeds is None:
            from vpdsr.data.samples import resolve_images

            sources = resolve_images(self.source)
            rng = np.random.default_rng(self.seed)
            images = {}
            out = []
            for i in range(self.count):
                src = sources[i % len(sources)]
                if src.path not in images:
                    images[src.path] = _pad_to(src.load(), self.tile)
                img = images[src.path]
                y = int(rng.integers(0, img.shape[0] - self.tile + 1))
                x = int(rng.integers(0, img.shape[1] - self.tile + 1))
                crop = img[y:y + self.tile, x:x + self.tile].transpose(2, 0, 1)[None]
                feed = {"lr": np.ascontiguousarray(crop, dtype=np.float32)}
                if self.channels:  # None/0: a model without a noise input (GANSR) gets `lr` alone
                    feed["noise"] = rng.standard_normal((1, self.channels, self.tile, self.tile), dtype=np.float32)
                out.append(feed)
            self._feeds = out
        return self._feeds

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds())

    def __len__(self) -> int:
        return self.count

    def sha256(self) -> str:
        """Hash of the exact arrays fed (so a changed image folder changes the cache key)."""
        h = hashlib.sha256()
        for feed in self.feeds():
            for name in sorted(feed):
                h.update(name.encode())
                h.update(feed[name].tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """The manifest's `calibration` field."""
        return {"source": str(self.source), "count": self.count, "tile": self.tile, "seed": self.seed,
                "sha256": self.sha256()}

    def reader(self, feeds: list[dict[str, np.ndarray]] | None = None):
        """An onnxruntime `CalibrationDataReader` over these samples (or over `feeds`), one at a time."""
        return make_reader(feeds if feeds is not None else self.feeds())


def stage_feeds(graphs: dict[str, Path], feeds: list[dict[str, np.ndarray]]) -> dict[str, list[dict]]:
    """For each stage graph of a chain, the feeds it sees when the fp32 chain runs on `feeds`.

    Used to calibrate split graphs: the decoder is calibrated on the latents the fp32 denoiser makes.
    Each graph runs on the onnxruntime runner and reads its inputs by name from what came before.
    """
    from contextlib import ExitStack

    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    per: dict[str, list[dict]] = {name: [] for name in graphs}
    with ExitStack() as stack:
        runners = {n: stack.enter_context(OnnxRuntimeRunner(p, name=n)) for n, p in graphs.items()}
        for feed in feeds:
            env = dict(feed)
            for name, runner in runners.items():
                inputs = {k: env[k] for k in runner.get_input_metadata()}
                per[name].append(inputs)
                env.update(runner.infer(inputs))
    return per


def make_reader(feeds: list[dict[str, np.ndarray]]):
    """Wrap a list of feed dicts as an onnxruntime CalibrationDataReader (imported lazily)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

        def get_first(self):  # modelopt peeks at the first sample for a test run
            return feeds[0]

    return _Reader()


def _pad_to(img: np.ndarray, tile: int) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return img
