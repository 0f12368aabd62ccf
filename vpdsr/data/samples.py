"""Bundled sample photos: real photographs that ship inside installed packages.

Nothing is downloaded: every photo is a file inside scikit-image (``skimage/data``) or
scikit-learn (``sklearn/datasets/images``), found without importing either package. The
scikit-image images that ``skimage.data`` fetches at run time (eagle, lily, ...) are left out.

Subsets:
    all      every photo (15).
    holdout  astronaut, chelsea, coffee: three colourful photos (a face and fabric, cat fur,
             a cup on a table) kept out of training, for evaluation.
    train    everything else (12), including the four gray textures (camera, brick,
             grass, gravel; converted to RGB).
    calib    rocket, motorcycle_left, china, flower: colourful training photos for INT8
             calibration, so calibration never sees evaluation images.
    val      ihc, camera, grass, hubble_deep_field: training photos outside calib (and not
             motorcycle_right, calib's stereo twin) on which an INT8 accuracy budget is measured.
    demo     astronaut, a holdout photo, so a demo never shows a training image.

Example:
    >>> for source in resolve_images("samples:holdout"):  # doctest: +SKIP
    ...     image = source.load()
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpdsr.data.io import list_images, read_image, write_image
from vpdsr.errors import InputError, MissingDependencyError

# name -> (distribution's import name, folder inside it, file name)
_FILES: dict[str, tuple[str, str, str]] = {
    "astronaut": ("skimage", "data", "astronaut.png"),
    "chelsea": ("skimage", "data", "chelsea.png"),
    "coffee": ("skimage", "data", "coffee.png"),
    "rocket": ("skimage", "data", "rocket.jpg"),
    "motorcycle_left": ("skimage", "data", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data", "motorcycle_right.png"),
    "hubble_deep_field": ("skimage", "data", "hubble_deep_field.jpg"),
    "retina": ("skimage", "data", "retina.jpg"),
    "ihc": ("skimage", "data", "ihc.png"),
    "camera": ("skimage", "data", "camera.png"),
    "brick": ("skimage", "data", "brick.png"),
    "grass": ("skimage", "data", "grass.png"),
    "gravel": ("skimage", "data", "gravel.png"),
    "china": ("sklearn", "datasets/images", "china.jpg"),
    "flower": ("sklearn", "datasets/images", "flower.jpg"),
}
_PACKAGES = {"skimage": "scikit-image", "sklearn": "scikit-learn"}

SAMPLE_NAMES: tuple[str, ...] = tuple(_FILES)
_HOLDOUT = ("astronaut", "chelsea", "coffee")
_SUBSETS: dict[str, tuple[str, ...]] = {
    "all": SAMPLE_NAMES,
    "train": tuple(n for n in SAMPLE_NAMES if n not in _HOLDOUT),
    "holdout": _HOLDOUT,
    "calib": ("rocket", "motorcycle_left", "china", "flower"),
    "val": ("ihc", "camera", "grass", "hubble_deep_field"),
    "demo": ("astronaut",),
}
SUBSET_NAMES: tuple[str, ...] = tuple(_SUBSETS)
SAMPLES_SPEC = "samples"


def sample_set(name: str = "all") -> list[str]:
    """The sample names in a subset: 'all', 'train', 'holdout', 'calib' or 'demo'."""
    if name not in _SUBSETS:
        raise InputError(f"unknown sample subset {name!r} (expected one of {', '.join(SUBSET_NAMES)})")
    return list(_SUBSETS[name])


def sample_path(name: str) -> Path:
    """Where the installed package keeps sample ``name``."""
    if name not in _FILES:
        raise InputError(f"unknown sample image {name!r} (expected one of {', '.join(SAMPLE_NAMES)})")
    package, folder, filename = _FILES[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"sample image {name!r} ships with {_PACKAGES[package]}, which is not installed "
            f"(pip install {_PACKAGES[package]})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / folder / filename


def load_sample(name: str) -> np.ndarray:
    """Sample ``name`` as float32 RGB (H, W, 3) in [0, 1]; gray photos are repeated to RGB."""
    return read_image(sample_path(name))


@dataclass(frozen=True)
class ImageSource:
    """One input image: a display name and the file it is read from (loaded on demand)."""

    name: str
    path: Path

    def load(self) -> np.ndarray:
        """The image as float32 RGB (H, W, 3) in [0, 1]."""
        return read_image(self.path)


def resolve_images(spec: str | os.PathLike) -> list[ImageSource]:
    """Turn an ``--images`` argument into image sources.

    Args:
        spec: an image file, a folder of images (non-recursive), or the string
            ``"samples"`` / ``"samples:<subset>"`` for the bundled photos. The keyword wins
            over a folder called ``samples``: write ``./samples`` for the folder.

    Returns:
        Sources in a stable order (sorted file names, or the subset's order), named by
        sample name or file stem (the full file name where two stems collide).

    Raises:
        InputError: the path holds no image, or the subset is unknown.
    """
    if isinstance(spec, str) and (spec == SAMPLES_SPEC or spec.startswith(SAMPLES_SPEC + ":")):
        subset = spec.partition(":")[2] or "all"
        return [ImageSource(name, sample_path(name)) for name in sample_set(subset)]
    paths = list_images(spec)
    stems = [p.stem for p in paths]
    return [ImageSource(p.stem if stems.count(p.stem) == 1 else p.name, p) for p in paths]


def export_samples(out_dir: str | os.PathLike, subset: str = "all") -> list[Path]:
    """Write a subset of the samples as 8-bit PNGs ``<out_dir>/<name>.png``; returns the paths."""
    out_dir = Path(out_dir)
    return [write_image(out_dir / f"{name}.png", load_sample(name)) for name in sample_set(subset)]
