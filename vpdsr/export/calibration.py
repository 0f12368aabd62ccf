"""One calibration set for every INT8 path (ONNX Runtime, modelopt, NNCF) and the fp16 checks.

A :class:`CalibrationSet` is a seeded list of LR crops (from an image folder, an image file, or the
bundled sample photos) paired with seeded noise. A crop larger than the exported tile is cut into
tile-sized samples (the graph is static at the tile; tiles of one crop are neighbours, as the
Upscaler cuts an image). It yields one feed dict `{"lr": [1,3,t,t], "noise": [1,C,t,t]}` at a
time, so a calibrator never holds more than one sample's activations; `.sha256()` names its exact
content for the manifest and the cache key, `.image_hashes()` the pixels of every source image it
drew from (so the export can refuse a calibration set that shares an image with validation).

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
        count: number of crops.
        tile: sample side in LR pixels (the exported tile size); images smaller than a crop are
            edge-padded.
        channels: noise channels (the model's latent channels; None or 0: a model without noise).
        seed: picks the crop positions and the noise.
        crop: crop side in LR pixels (None: the tile), at least the tile:
            cut into ceil(crop / tile)^2 tile samples, the last row/column shifted inward.
    """

    source: str = DEFAULT_CALIB
    count: int = 8
    tile: int = 64
    channels: int | None = 48
    seed: int = 0
    crop: int | None = None
    _feeds: list[dict[str, np.ndarray]] | None = field(default=None, init=False, repr=False)
    _hashes: dict[str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"`--calib-count` must be at least 1, got {self.count}")
        if self.tile < 1:
            raise InputError(f"`--tile` must be positive, got {self.tile}")
        if self.crop is not None and self.crop < self.tile:
            raise InputError(f"`--calib-crop` must be at least the tile ({self.tile} LR px), got {self.crop}")

    @property
    def crop_size(self) -> int:
        return self.crop or self.tile

    def to_lr(self, src, photo: np.ndarray) -> np.ndarray:
        """The LR image crops are cut from: the photo itself (a subclass may degrade it)."""
        return photo

    def feeds(self) -> list[dict[str, np.ndarray]]:
        """All samples (built once; count x crop^2 x (3 + C) floats, a few MB at most)."""
        if self._feeds is None:
            from vpdsr.data.samples import resolve_images

            images, self._hashes = [], {}
            for src in resolve_images(self.source)[:self.count]:  # the photos the crops come from
                photo = src.load()
                self._hashes[src.name] = image_sha256(photo)
                images.append((src.name, self.to_lr(src, photo)))
            rng = np.random.default_rng(self.seed)
            c, out = self.crop_size, []
            for i in range(self.count):
                img = _pad_to(images[i % len(images)][1], c)
                y = int(rng.integers(0, img.shape[0] - c + 1))
                x = int(rng.integers(0, img.shape[1] - c + 1))
                crop = img[y:y + c, x:x + c]
                for ty in _starts(c, self.tile):
                    for tx in _starts(c, self.tile):
                        lr = crop[ty:ty + self.tile, tx:tx + self.tile].transpose(2, 0, 1)[None]
                        feed = {"lr": np.ascontiguousarray(lr, dtype=np.float32)}
                        if self.channels:  # None/0: a model without a noise input (GANSR) gets `lr` alone
                            feed["noise"] = rng.standard_normal((1, self.channels, self.tile, self.tile),
                                                                dtype=np.float32)
                        out.append(feed)
            self._feeds = out
        return self._feeds

    def image_hashes(self) -> dict[str, str]:
        """{image name: sha256 of its decoded pixels} of the images the samples come from."""
        if self._hashes is None:
            self.feeds()
        return dict(self._hashes)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds())

    def __len__(self) -> int:
        return len(self.feeds())

    def sha256(self) -> str:
        """Hash of the exact arrays fed (so a changed image folder changes the cache key)."""
        h = hashlib.sha256()
        for feed in self.feeds():
            for name in sorted(feed):
                h.update(name.encode())
                h.update(feed[name].tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """The manifest's `calibration` field (also what the cache key hashes)."""
        return {"source": str(self.source), "count": self.count, "crop": self.crop_size, "tile": self.tile,
                "samples": len(self.feeds()), "seed": self.seed, "sha256": self.sha256(),
                "images_sha256": self.image_hashes()}

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


def image_sha256(img: np.ndarray) -> str:
    """sha256 of an image's decoded float32 pixels and shape (the same photo in any file gives one hash)."""
    arr = np.ascontiguousarray(img, dtype=np.float32)
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


def refuse_overlap(sets: dict[str, dict[str, str]]) -> None:
    """InputError naming the first image two of `sets` ({role: {image name: pixel sha256}}) share."""
    roles = list(sets)
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            shared = set(sets[a].values()) & set(sets[b].values())
            if shared:
                name_a = next(n for n, h in sets[a].items() if h in shared)
                name_b = next(n for n, h in sets[b].items() if h in shared)
                raise InputError(f"the {a} images and the {b} images share a photo ({name_a!r} = {name_b!r}); "
                                 f"expected disjoint sets (pick other images for one of them)")


def _starts(size: int, tile: int) -> list[int]:
    """Top-left offsets of tiles covering `size` pixels; the last one shifted inward to end at the edge."""
    n = -(-size // tile)
    return [min(i * tile, size - tile) for i in range(n)]


def _pad_to(img: np.ndarray, tile: int) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return img
