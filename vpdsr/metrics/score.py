"""Score image files with the report's metrics: the library behind `vpdsr score` (and bench).

Full-reference metrics compare each image with the reference image of the same stem (any
extension; a trailing ``_x2``/``_x4``... as `vpdsr upscale` appends is tried second). Everything
that can be checked from file headers is checked before any scoring starts: a missing or
ambiguous reference, a reference of another size, a crop border larger than an image.

A metric that cannot run is ``None``, never a made-up number, with a one-line reason: for one
image (too small for MS-SSIM) in that row's ``reasons``, for all images (no CLIP weights, no
pyiqa) in ``metrics[name]["reason"]``. A metric the caller named explicitly must run: missing
weights or packages are then an error.

Example:
    >>> images = collect_images(["runs/sr"])
    >>> refs = match_references(images, "data/hr")
    >>> result = score_images(images, refs, ScoreOptions(metrics=("piqe", "ms_ssim")))
    >>> result["mean"]["piqe"]
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpdsr.errors import InputError, VpdsrError
from vpdsr.metrics.catalog import METRICS

SCHEMA = 1
DEFAULT_METRICS = ("piqe", "gmsd", "ms_ssim", "psnr", "ssim", "clipiqa", "lpips")
CROPPED = ("psnr", "psnr_y", "ssim", "ssim_y")  # --crop-border applies to these (SR-paper convention)
_SSIM_MIN_SIDE = 11  # vpdsr.metrics.fidelity's Gaussian window
# CLIP's ModifiedResNet and LPIPS's AlexNet pool a side below 31 pixels to nothing (measured).
_NETWORK_MIN_SIDE = {"clipiqa": 31, "lpips": 31}
_SCALE_SUFFIX = re.compile(r"_x\d+$")

MetricFn = Callable[[np.ndarray, "np.ndarray | None"], float]


@dataclass(frozen=True)
class ScoreOptions:
    """What to compute.

    Attributes:
        metrics: Names from :data:`vpdsr.metrics.catalog.METRICS`; ``None`` = :data:`DEFAULT_METRICS`
            (without references: only the no-reference ones), where unavailable ones become null.
            Named metrics must run: missing weights or a missing reference are errors.
        crop_border: Pixels removed from each side before PSNR/SSIM (SR papers: the scale).
        clip_weights: CLIP RN50 archive for CLIPIQA; ``None`` searches the usual caches.
        lpips_weights: Folder with the LPIPS files; ``None`` searches the torch hub caches.
        device: Torch device for CLIPIQA and LPIPS.
    """

    metrics: tuple[str, ...] | None = None
    crop_border: int = 0
    clip_weights: str | None = None
    lpips_weights: str | None = None
    device: str = "cpu"


def collect_images(specs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named by ``specs`` (files or folders, see ``list_images``), each file once."""
    from vpdsr.data.io import list_images

    seen: dict[Path, Path] = {}
    for spec in specs:
        for path in list_images(spec):
            seen.setdefault(path.resolve(), path)
    return list(seen.values())


def match_references(images: Sequence[Path], reference_dir: str | os.PathLike) -> list[Path]:
    """The reference file of each image: same stem in ``reference_dir``, any image extension.

    Raises:
        InputError: the folder is missing, or an image has no reference or more than one
            (the message names the first few and how many).
    """
    from vpdsr.data.io import is_image_file

    folder = Path(reference_dir)
    if not folder.is_dir():
        raise InputError(f"`--reference` {folder}: not a folder (expected a folder of reference images)")
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if is_image_file(p):
            by_stem.setdefault(p.stem, []).append(p)
    refs, missing = [], []
    for image in images:
        stem = image.stem
        found = by_stem.get(stem) or by_stem.get(_SCALE_SUFFIX.sub("", stem), [])
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise InputError(f"reference for {image.name} is ambiguous in {folder}: {names} (keep one)")
        if found:
            refs.append(found[0])
        else:
            missing.append(image.name)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(f"no reference image in {folder} with the stem of {shown} (expected the same file name, "
                         "any image extension)")
    return refs


def resolve_metrics(options: ScoreOptions, has_reference: bool) -> list[str]:
    """The metric names to compute; a named full-reference metric without references is an error."""
    if options.metrics is None:
        return [n for n in DEFAULT_METRICS if has_reference or not METRICS[n].needs_reference]
    unknown = [n for n in options.metrics if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {', '.join(unknown)} (expected {', '.join(METRICS)})")
    needing = [n for n in options.metrics if METRICS[n].needs_reference]
    if needing and not has_reference:
        raise InputError(f"`--metrics`: {', '.join(needing)} compare with a reference image; give `--reference DIR`")
    return list(dict.fromkeys(options.metrics))


def check_sizes(images: Sequence[Path], references: Sequence[Path] | None, crop_border: int,
                metrics: Sequence[str]) -> list[tuple[int, int]]:
    """(height, width) of every image from its header; references must match, the crop must fit.

    Raises:
        InputError: an unreadable header, a reference of another size, a crop border too large.
    """
    from vpdsr.data.io import read_image_size

    sizes = [read_image_size(p) for p in images]
    if references is not None:
        for image, ref, size in zip(images, references, sizes):
            ref_size = read_image_size(ref)
            if ref_size != size:
                raise InputError(f"reference {ref} is {ref_size[1]}x{ref_size[0]} but {image} is {size[1]}x{size[0]} "
                                 "(full-reference metrics need images of the same size)")
    if crop_border < 0:
        raise InputError(f"`--crop-border` {crop_border}: expected 0 or more pixels")
    if crop_border and any(m in CROPPED for m in metrics):
        for image, (h, w) in zip(images, sizes):
            if 2 * crop_border >= min(h, w):
                raise InputError(f"`--crop-border` {crop_border} leaves no pixels of {image} ({w}x{h})")
    return sizes


class MetricSet:
    """The metric functions that can run here, and the reason for each one that cannot.

    Args:
        names: Metrics to build.
        options: Weights, device, crop border; ``options.metrics`` set means "must run".
    """

    def __init__(self, names: Sequence[str], options: ScoreOptions) -> None:
        self.names = list(names)
        self.crop_border = options.crop_border
        self.functions: dict[str, MetricFn] = {}
        self.unavailable: dict[str, str] = {}
        for name in self.names:
            try:
                self.functions[name] = self._build(name, options)
            except VpdsrError as exc:
                if options.metrics is not None:  # asked for by name: it must run
                    raise
                self.unavailable[name] = "unavailable: " + " ".join(str(exc).split())

    def _build(self, name: str, options: ScoreOptions) -> MetricFn:
        from vpdsr.metrics import fidelity, perceptual

        crop = options.crop_border
        if name in ("piqe", "gmsd", "ms_ssim"):
            from vpdsr.metrics.clip_weights import import_pyiqa

            import_pyiqa()  # a missing pyiqa is known now, not at the first image
            if name == "piqe":
                return lambda img, ref: perceptual.piqe(img)
            return getattr(perceptual, name)
        if name in CROPPED:
            fn = fidelity.psnr if name.startswith("psnr") else fidelity.ssim
            y = name.endswith("_y")
            return lambda img, ref: fn(img, ref, y_channel=y, crop_border=crop)
        if name == "clipiqa":
            from vpdsr.metrics.clipiqa import ClipIqa

            clip = ClipIqa(options.clip_weights, device=options.device)
            return lambda img, ref: clip.score_numpy(img)
        if name == "lpips":
            from vpdsr.metrics.lpips import Lpips

            net = Lpips(options.lpips_weights, device=options.device)
            return net.score_numpy
        raise InputError(f"unknown metric {name!r}")  # resolve_metrics lets none through

    def size_problem(self, name: str, height: int, width: int) -> str | None:
        """Why ``name`` cannot score an image of this size, or None."""
        from vpdsr.metrics.perceptual import size_problem

        if name in ("ssim", "ssim_y"):
            side = min(height, width) - 2 * self.crop_border
            if side < _SSIM_MIN_SIDE:
                return f"SSIM needs at least {_SSIM_MIN_SIDE}x{_SSIM_MIN_SIDE} pixels after cropping, got {side}"
        least = _NETWORK_MIN_SIDE.get(name)
        if least and min(height, width) < least:
            return f"{name} needs at least {least}x{least} pixels, got {width}x{height}"
        return size_problem(name, height, width)

    def score(self, image: np.ndarray, reference: np.ndarray | None) -> tuple[dict, dict]:
        """(values, reasons) of one image; a metric that cannot run on it is None with a reason."""
        values, reasons = {}, {}
        height, width = image.shape[:2]
        for name in self.names:
            fn = self.functions.get(name)
            problem = self.unavailable.get(name) if fn is None else self.size_problem(name, height, width)
            if fn is None or problem:
                values[name] = None
                if fn is not None:
                    reasons[name] = problem
                continue
            value = float(fn(image, reference))
            values[name] = None if math.isnan(value) else value
            if math.isnan(value):  # e.g. PIQE of an all-black image (pyiqa divides by the maximum)
                reasons[name] = f"{name} is undefined for this image (the metric returned NaN)"
        return values, reasons


def score_images(images: Sequence[Path], references: Sequence[Path] | None = None,
                 options: ScoreOptions | None = None, progress: bool = False) -> dict:
    """Score image files; returns the JSON-ready result (see :func:`write_json`).

    Args:
        images: Image files (see :func:`collect_images`).
        references: One reference file per image (see :func:`match_references`), or None.
        options: What to compute.
        progress: Show a progress bar over the images (stderr).

    Returns:
        ``{"schema", "images": [{"image", "path", "reference", "width", "height", <metric>: value,
        "reasons"?}], "mean": {<metric>: value}, "metrics": {<metric>: {direction, range, ...,
        "available", "reason", "count"}}, "crop_border", "versions"}``. PSNR of identical images
        is ``inf`` (written as the string "inf").

    Raises:
        InputError: see :func:`resolve_metrics`, :func:`check_sizes` and ``read_image``.
    """
    from tqdm import tqdm

    from vpdsr.data.io import read_image

    options = options or ScoreOptions()
    images = [Path(p) for p in images]
    if references is not None and len(references) != len(images):
        raise InputError(f"{len(images)} images but {len(references)} references")
    names = resolve_metrics(options, references is not None)
    sizes = check_sizes(images, references, options.crop_border, names)
    metric_set = MetricSet(names, options)
    labels = _labels(images)
    rows = []
    for i, path in enumerate(tqdm(images, desc="score", unit="img", disable=not progress or len(images) < 2)):
        image = read_image(path)
        reference = None if references is None else read_image(references[i])
        if reference is not None and reference.shape != image.shape:
            raise InputError(f"reference {references[i]} decodes to {reference.shape[:2]}, {path} to {image.shape[:2]}")
        values, reasons = metric_set.score(image, reference)
        row = {"image": labels[i], "path": str(path), "reference": None if references is None else str(references[i]),
               "width": sizes[i][1], "height": sizes[i][0], **values}
        if reasons:
            row["reasons"] = reasons
        rows.append(row)
    return {
        "schema": SCHEMA,
        "images": rows,
        "mean": {n: _mean([r[n] for r in rows]) for n in names},
        "metrics": {n: {**METRICS[n].to_dict(), "available": n not in metric_set.unavailable,
                        "reason": metric_set.unavailable.get(n), "count": sum(r[n] is not None for r in rows)}
                    for n in names},
        "crop_border": options.crop_border,
        "versions": _versions(),
    }


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write a score result atomically (infinity as the string "inf", NaN as null)."""
    import json

    from vpdsr.utils import atomic_write_text

    return atomic_write_text(Path(path), json.dumps(_json_ready(result), indent=2, allow_nan=False) + "\n")


def _json_ready(obj):
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _labels(images: Sequence[Path]) -> list[str]:
    """File names when they are unique, else the paths as given (two folders of one set of names)."""
    names = [p.name for p in images]
    return names if len(set(names)) == len(names) else [str(p) for p in images]


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def _versions() -> dict:
    from importlib import metadata

    from vpdsr import __version__

    out = {"vpdsr": __version__}
    for dist in ("pyiqa", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
