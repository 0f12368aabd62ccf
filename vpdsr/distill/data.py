"""Training pairs: random HR crops from images held in memory, LR made on the fly by vpdsr.data.degrade.

Every draw of a batch (which image, where, flips, the degradation) comes from a generator seeded
by (run seed, stage, step, micro-batch), never from a stateful iterator: step k of a resumed run
sees exactly the batch of an uninterrupted one. The photos are few (the bundled samples are 12
training images), so they are decoded once and kept as tensors; crops are cut in torch in the
main process (no DataLoader workers: the target machine has 2 cores).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vpdsr.errors import ConfigError, InputError

STAGE_IDS = {"teacher": 1, "student": 2, "eval": 3, "targets": 4, "test": 9}


def step_generator(seed: int, stage: str, step: int, micro: int = 0, device: str = "cpu") -> torch.Generator:
    """A generator whose state depends only on (seed, stage, step, micro)."""
    key = f"{seed}/{STAGE_IDS.get(stage, 0)}/{step}/{micro}".encode()
    value = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.Generator(device=device).manual_seed(value)


@dataclass
class Batch:
    hr: torch.Tensor  # [B,3,H,W] in [0,1]
    lr: torch.Tensor  # [B,3,H/4,W/4] in [0,1]
    target: torch.Tensor | None = None  # the teacher's output on lr, where it was computed ahead (TargetPool)


class CropDataset:
    """HR images in memory; `batch(step, micro)` returns a deterministic batch of (HR crop, LR) pairs.

    Args:
        images: image specs (folders, files, or ``samples[:subset]``); the held-out sample photos are
            refused so that evaluation never sees a training image.
        crop_size: HR crop side (a multiple of the scale).
        degradation: a vpdsr.data.degrade.DegradationConfig.
        seed: the run seed.
        augment: random horizontal flips and 90-degree rotations (ours).
    """

    def __init__(self, images: list[str], crop_size: int, degradation, seed: int = 0, augment: bool = True):
        from vpdsr.data.samples import resolve_images, sample_path, sample_set

        holdout = {sample_path(n).resolve() for n in sample_set("holdout")}
        sources = [s for spec in images for s in resolve_images(spec)]
        if not sources:
            raise InputError(f"no training images found in {images}")
        leaked = [s.name for s in sources if s.path.resolve() in holdout]
        if leaked:
            raise ConfigError(f"`data.images` includes held-out evaluation photos {leaked}; use samples:train")
        self.names = [s.name for s in sources]
        self.crop_size = crop_size
        self.degradation = degradation
        self.seed = seed
        self.augment = augment
        self.images = [_at_least(_to_chw(s.load()), crop_size) for s in sources]

    def __len__(self) -> int:
        return len(self.images)

    def crops(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        c = self.crop_size
        idx = torch.randint(len(self.images), (batch_size,), generator=generator).tolist()
        out = []
        for i in idx:
            img = self.images[i]
            _, h, w = img.shape
            top = int(torch.randint(h - c + 1, (1,), generator=generator))
            left = int(torch.randint(w - c + 1, (1,), generator=generator))
            crop = img[:, top:top + c, left:left + c]
            if self.augment:
                flip = torch.randint(2, (1,), generator=generator).item()
                rot = torch.randint(4, (1,), generator=generator).item()
                crop = crop.flip(-1) if flip else crop
                crop = torch.rot90(crop, rot, dims=(-2, -1))
            out.append(crop)
        return torch.stack(out).contiguous()

    def batch(self, step: int, micro: int, batch_size: int, stage: str) -> Batch:
        from vpdsr.data.degrade import degrade

        g = step_generator(self.seed, stage, step, micro)
        hr = self.crops(batch_size, g)
        lr = degrade(hr, self.degradation, g)
        return Batch(hr=hr, lr=lr)


def load_eval_images(images: list[str], scale: int = 4, max_side: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(name, HR [1,3,H,W]) for each eval image, center-cropped to a multiple of `scale` (and `max_side`)."""
    from vpdsr.data.samples import resolve_images

    out = []
    for spec in images:
        for s in resolve_images(spec):
            img = _to_chw(s.load())
            _, h, w = img.shape
            th, tw = h - h % scale, w - w % scale
            if max_side:
                th, tw = min(th, max_side - max_side % scale), min(tw, max_side - max_side % scale)
            top, left = (h - th) // 2, (w - tw) // 2
            out.append((s.name, img[:, top:top + th, left:left + tw].unsqueeze(0).contiguous()))
    return out


def _to_chw(img) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).contiguous().float().clamp(0, 1)


def _at_least(img: torch.Tensor, side: int) -> torch.Tensor:
    _, h, w = img.shape
    if min(h, w) >= side:
        return img
    s = side / min(h, w)
    size = (max(side, round(h * s)), max(side, round(w * s)))
    return F.interpolate(img[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)
