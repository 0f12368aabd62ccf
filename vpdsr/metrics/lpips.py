"""LPIPS v0.1 (AlexNet), the same computation as pyiqa's ``lpips`` metric, loaded safely.

pyiqa builds LPIPS through torchvision's and its own loaders, which unpickle the whole file
(no weights-only restriction) and download when a file is missing. Here the same
network is rebuilt and both files are read with ``torch.load(weights_only=True)``, from the
caches those loaders fill (so a machine where pyiqa's LPIPS ran once works offline):

- ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` (torchvision's ImageNet AlexNet),
- ``<torch hub dir>/pyiqa/LPIPS_v0.1_alex-df73285e.pth`` (the linear heads),

or both inside a folder given explicitly. Nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vpdsr.errors import InputError, MissingWeightsError
from vpdsr.metrics.fidelity import as_float_image

TRUNK_FILENAME = "alexnet-owt-7be5be79.pth"
HEADS_FILENAME = "LPIPS_v0.1_alex-df73285e.pth"
_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # AlexNet features up to relu1..relu5
_CHANNELS = (64, 192, 384, 256, 256)
# LPIPS's ScalingLayer: inputs in [-1, 1] are re-normalised to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def find_lpips_weights(weights_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Locate the AlexNet trunk and LPIPS head files; MissingWeightsError lists where it looked."""
    if weights_dir is not None:
        trunk, heads = Path(weights_dir) / TRUNK_FILENAME, Path(weights_dir) / HEADS_FILENAME
    else:
        hub = Path(torch.hub.get_dir()).absolute()
        trunk, heads = hub / "checkpoints" / TRUNK_FILENAME, hub / "pyiqa" / HEADS_FILENAME
    missing = [str(p) for p in (trunk, heads) if not p.is_file()]
    if missing:
        raise MissingWeightsError(
            f"LPIPS weights not found: {', '.join(missing)}; run pyiqa's `lpips` once where the network "
            f"is reachable (it fills those caches) or copy {TRUNK_FILENAME} and {HEADS_FILENAME} there"
        )
    return trunk, heads


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to replace
        raise InputError(f"LPIPS weights {path} cannot be read as a tensor state dict: {exc}") from exc
    return {k.removeprefix("module."): v for k, v in state.items()}


class Lpips(nn.Module):
    """Perceptual distance in [0, ~1]; lower is better, 0 for identical images.

    Args:
        weights_dir: Folder holding both weight files; ``None`` uses the torch hub caches.
        device: Torch device.
    """

    higher_is_better = False

    def __init__(self, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from torchvision.models import AlexNet

        trunk_path, heads_path = find_lpips_weights(weights_dir)
        features = AlexNet().features
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in _SLICES)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        trunk = _load_state(trunk_path)
        heads = _load_state(heads_path)
        try:
            trunk_features = {k.removeprefix("features."): v for k, v in trunk.items() if k.startswith("features.")}
            features.load_state_dict(trunk_features)
            # the head files name them lin{k}.model.1.weight (index 0 is a Dropout)
            self.lins.load_state_dict({f"{k}.weight": heads[f"lin{k}.model.1.weight"] for k in range(len(self.lins))})
        except (RuntimeError, KeyError) as exc:
            reason = " ".join(str(exc).split())[:200]
            files = f"{trunk_path} / {heads_path}"
            raise InputError(f"LPIPS weights {files} do not fit AlexNet LPIPS v0.1: {reason}") from exc
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.to(device).eval()

    def forward(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """LPIPS of ``[B,3,H,W]`` images in [0, 1] against references of the same shape -> ``[B]``."""
        if images.shape != references.shape or images.dim() != 4 or images.shape[1] != 3:
            shapes = f"{tuple(images.shape)} and {tuple(references.shape)}"
            raise InputError(f"LPIPS expects two [B,3,H,W] tensors of one shape, got {shapes}")
        h0 = ((2 * images - 1) - self.shift) / self.scale
        h1 = ((2 * references - 1) - self.shift) / self.scale
        total = torch.zeros(images.shape[0], device=images.device, dtype=images.dtype)
        for block, lin in zip(self.slices, self.lins):
            h0, h1 = block(h0), block(h1)
            diff = (_unit_channels(h0) - _unit_channels(h1)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total

    @torch.no_grad()
    def score_numpy(self, image: np.ndarray, reference: np.ndarray) -> float:
        """LPIPS of one ``HxWx3`` image (float in [0, 1] or uint8) against its reference."""
        device = self.shift.device
        pair = [
            torch.from_numpy(as_float_image(a, n).astype(np.float32)).permute(2, 0, 1)[None].to(device)
            for a, n in ((image, "image"), (reference, "reference"))
        ]
        return float(self(*pair)[0])


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)
