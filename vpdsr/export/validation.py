"""Validation of an exported artifact on the engine that will run it.

Each artifact is loaded with `vpdsr.runtimes.load` (hashes verified, the backend's own settings:
OpenVINO's pinned precision and hints, ONNX Runtime's session options, a StagedRunner for split
artifacts) and upscales the held-out photos through :class:`vpdsr.runtimes.upscale.Upscaler`,
the one tiling path `vpdsr bench` and `vpdsr upscale` use. So `vpdsr bench` on the same images
(`holdout_images()`, which `vpdsr pipeline` writes as its bench inputs), seed and tiling
reproduces the manifest's figures: `psnr_db_mean` is the bench's `psnr_vs_ref`, `psnr_db` its
`psnr_vs_ref_min`.

The held-out photos are never used for calibration or training (`vpdsr.data.samples`); each is
cropped to a multiple of 4 and bicubic-downscaled x4 to 8-bit LR levels, i.e. exactly what a PNG
of it holds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vpdsr.errors import CapabilityError, InputError, VpdsrError
from vpdsr.metrics.fidelity import psnr
from vpdsr.runtimes.tiling import TileConfig

HOLDOUT = "samples:holdout"  # never seen by calibration or training
SCALE = 4
PSNR_CAP_DB = 150.0  # identical outputs: JSON has no infinity


class ValidationFailed(Exception):
    """The artifact was built but did not validate (a runtime error, NaN, below its floor)."""


@dataclass
class ValidationConfig:
    """Which images, noise and tiling validate an artifact (the defaults are `vpdsr bench`'s).

    Attributes:
        source: held-out photos ("samples[:subset]", a folder or a file) to degrade into LR.
        max_images: use only the first N of them (None: all).
        max_size: centre-crop each LR image to at most this many pixels a side (None: whole photos).
        seed: noise seed.
        overlap, batch: the tiling; the tile is the export's (a static artifact's own, as in bench).
    """

    source: str = HOLDOUT
    max_images: int | None = None
    max_size: int | None = None
    seed: int = 0
    overlap: int = 8
    batch: int = 4

    def __post_init__(self) -> None:
        for name in ("max_images", "max_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"validation `{name}` must be an integer >= 1 or None, got {value!r}")

    def tiles(self, tile: int | None) -> TileConfig:
        """The tiling at the export's tile (an overlap of a whole tile or more is cut to tile - 1)."""
        overlap = self.overlap if tile is None else min(self.overlap, tile - 1)
        return TileConfig(tile=tile, overlap=overlap, batch=self.batch)

    def images(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return holdout_images(self.source, self.max_images, self.max_size)


def holdout_images(source: str = HOLDOUT, max_images: int | None = None, max_size: int | None = None,
                   scale: int = SCALE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) per photo: HR cropped to a multiple of `scale` (and centred to at most `max_size` LR
    pixels a side), LR its bicubic x`scale` at 8-bit levels."""
    import torch

    from vpdsr.data.degrade import bicubic_downscale
    from vpdsr.data.io import to_numpy, to_tensor
    from vpdsr.data.samples import resolve_images

    sources = resolve_images(source)
    out = []
    for src in sources[:max_images]:
        hr = src.load()
        h, w = hr.shape[0] // scale, hr.shape[1] // scale
        if max_size is not None:  # centre crop, on the LR pixel grid
            y, x = max(0, (h - max_size) // 2), max(0, (w - max_size) // 2)
            h, w = min(h, max_size), min(w, max_size)
        else:
            y = x = 0
        hr = hr[y * scale : (y + h) * scale, x * scale : (x + w) * scale]
        with torch.no_grad():
            lr = to_numpy(bicubic_downscale(to_tensor(hr), scale))
        # the levels an 8-bit PNG of it holds (what `vpdsr pipeline` writes for the bench)
        lr = np.round(np.clip(lr.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8).astype(np.float32) / 255.0
        out.append((src.name, lr, hr))
    return out


def upscale_all(runner, images: list[np.ndarray], cfg: ValidationConfig, tile: int | None) -> list[np.ndarray]:
    """Every image through the runner (active) with the validation tiling and noise."""
    from vpdsr.runtimes.upscale import Upscaler

    upscaler = Upscaler(runner, cfg.tiles(tile), cfg.seed)
    return [upscaler(im) for im in images]


def safe_psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB, RGB, peak 1) as `vpdsr bench` computes it; NaN/Inf anywhere gives 0, identical gives the cap."""
    if not (np.isfinite(image).all() and np.isfinite(reference).all()):
        return 0.0
    return min(PSNR_CAP_DB, psnr(image, reference))


def compare(outputs: list[np.ndarray], refs: list[np.ndarray], floor_db: float | None = None,
            names: list[str] | None = None) -> dict:
    """The manifest's `validation` field: worst and mean PSNR, max abs difference, NaN/Inf, per image.

    Args:
        outputs, refs: (H, W, 3) images, the artifact's and the torch fp32 reference's.
        floor_db: the target's floor; adds `floor_db` and `passed`.
        names: image names for `psnr_db_per_image`.
    """
    values = [safe_psnr(o, r) for o, r in zip(outputs, refs)]
    finite = all(np.isfinite(o).all() for o in outputs)
    result = {
        "reference": "torch-fp32",
        "psnr_db": round(min(values), 3),
        "psnr_db_mean": round(math.fsum(values) / len(values), 3),
        "max_abs": float(max(np.abs(o - r).max() for o, r in zip(outputs, refs))) if finite else None,
        "finite": bool(finite),
        "n_inputs": len(outputs),
    }
    if names is not None:
        result["psnr_db_per_image"] = {n: round(v, 3) for n, v in zip(names, values)}
    if floor_db is not None:
        result["floor_db"] = floor_db
        result["passed"] = bool(finite and result["psnr_db"] >= floor_db)
    return result


def validate(entry, folder, images: list[tuple[str, np.ndarray, np.ndarray]], refs: list[np.ndarray],
             cfg: ValidationConfig, tile: int | None, floor_db: float) -> dict:
    """Load the artifact as `vpdsr bench` would, upscale `images`, compare with `refs`.

    Raises:
        CapabilityError: this machine cannot run the artifact (no GPU, no bf16 execution): a skip.
        ValidationFailed: it does not load or run here although it should.
    """
    from vpdsr.runtimes import load

    try:
        with load(entry, folder) as runner:
            outputs = upscale_all(runner, [lr for _, lr, _ in images], cfg, tile)
    except CapabilityError:
        raise
    except (VpdsrError, RuntimeError, ValueError, OSError) as e:
        raise ValidationFailed(f"does not run on its runner: {' '.join(str(e).split())[:300]}") from None
    result = compare(outputs, refs, floor_db, [name for name, _, _ in images])
    result["inputs"] = {**asdict(cfg), "tile": tile, "images": [name for name, _, _ in images],
                        "lr": f"bicubic x{SCALE} of the HR photo, 8-bit levels"}
    return result
