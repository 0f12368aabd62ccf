"""Find, load and run OpenAI CLIP weights (CLIPIQA's backbone and ESS's image encoder).

Nothing here downloads unless asked to: the weights are looked up, in order, at

1. the path the caller gives (``--clip-weights PATH``),
2. the environment variable ``VPDSR_CLIP_WEIGHTS``,
3. pyiqa's cache, ``<torch hub dir>/clip/RN50.pt``: ``torch.hub.get_dir()``, i.e.
   ``$TORCH_HOME/hub`` or ``$XDG_CACHE_HOME/torch/hub`` or ``~/.cache/torch/hub``,
4. openai-clip's cache, ``~/.cache/clip/RN50.pt``.

The file must be one of OpenAI's TorchScript archives (``RN50.pt`` as pyiqa and openai-clip
download it). It is loaded by pyiqa's own loader (``pyiqa.archs.clip_model.load``), which
reads the archive's state dict and rebuilds the eager model, so gradients can flow through
``encode_image`` to the input image (ESS) and CLIPIQA sees exactly the model pyiqa builds.

Example:
    >>> model = load_clip(find_clip_weights())
    >>> emb = clip_image_embedding(model, images)  # [B, D], unit length, differentiable
"""
from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vpdsr.errors import InputError, MissingDependencyError, MissingWeightsError

CLIP_WEIGHTS_ENV = "VPDSR_CLIP_WEIGHTS"
CLIP_FILENAME = "RN50.pt"
# OpenAI's normalisation constants (also pyiqa.archs.constants.OPENAI_CLIP_MEAN/STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DOWNLOAD_TIMEOUT_S = 20.0

_HOW_TO_GET = (
    f"put OpenAI's {CLIP_FILENAME} (TorchScript archive, "
    "https://openaipublic.azureedge.net/clip/models/"
    "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt) "
    f"at one of them, or pass --clip-weights PATH / set {CLIP_WEIGHTS_ENV}"
)


def import_pyiqa():
    """Import pyiqa lazily; a missing or broken install becomes a one-line user error."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources / timm deprecation noise
            import pyiqa
            from pyiqa.utils import get_root_logger
    except ImportError as exc:  # pyiqa itself, or its pkg_resources (setuptools>=81)
        raise MissingDependencyError(
            f"CLIPIQA, PIQE, GMSD and MS-SSIM need pyiqa ({exc}); install it with: pip install 'vpdsr[metrics]'"
        ) from exc
    from vpdsr.logs import adopt

    get_root_logger()  # pyiqa prints "Metric [...] is created" through its own handler, made here:
    adopt("pyiqa")  # inside a CLI session those lines go to the log file, not the terminal
    return pyiqa


def clip_cache_candidates() -> list[Path]:
    """The cache files where pyiqa and openai-clip keep OpenAI's RN50, in lookup order."""
    # torch.hub.get_dir() is what pyiqa's loader uses, evaluated at call time, so
    # TORCH_HOME / XDG_CACHE_HOME / torch.hub.set_dir are honoured exactly as pyiqa does.
    pyiqa_cache = Path(torch.hub.get_dir()).absolute() / "clip" / CLIP_FILENAME
    # openai-clip hard-codes "~/.cache/clip" (it ignores XDG_CACHE_HOME).
    openai_cache = Path(os.path.expanduser("~/.cache/clip")) / CLIP_FILENAME
    return [pyiqa_cache, openai_cache]


def find_clip_weights(path: str | os.PathLike | None = None, *, allow_download: bool = False) -> Path:
    """Locate the CLIP weights file.

    Args:
        path: Explicit file (e.g. from ``--clip-weights``); if given it must exist.
        allow_download: If nothing is found, download RN50.pt into pyiqa's cache with pyiqa's
            own downloader (SHA-256 checked, ``DOWNLOAD_TIMEOUT_S`` socket timeout). Off by
            default: tests and offline machines must never touch the network.

    Returns:
        The path of an existing file.

    Raises:
        MissingWeightsError: Nothing found; the one-line message lists every place looked at.
    """
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise MissingWeightsError(f"CLIP weights not found at `--clip-weights` {explicit}: no such file")
        return explicit
    env = os.environ.get(CLIP_WEIGHTS_ENV)
    if env:
        from_env = Path(env).expanduser()
        if not from_env.is_file():
            # A set but wrong variable is a typo to report, not a reason to fall back silently.
            raise MissingWeightsError(f"CLIP weights not found at ${CLIP_WEIGHTS_ENV}={from_env}: no such file")
        return from_env
    candidates = clip_cache_candidates()
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = f"${CLIP_WEIGHTS_ENV} (unset), " + ", ".join(str(c) for c in candidates)
    if allow_download:
        return _download_rn50(candidates[0], looked)
    raise MissingWeightsError(f"CLIP weights not found; looked at {looked}; {_HOW_TO_GET}")


def _download_rn50(target: Path, looked: str) -> Path:
    import urllib.error

    import_pyiqa()
    from pyiqa.archs.clip_model import _MODELS, _download  # pyiqa's SHA-256-checked downloader

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urlopen in pyiqa has no timeout of its own
    try:
        return Path(_download(_MODELS["RN50"], str(target.parent)))
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise MissingWeightsError(
            f"CLIP weights not found; looked at {looked}; download failed ({reason}); {_HOW_TO_GET}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def check_clip_archive(path: str | os.PathLike) -> Path:
    """Fail early, in one line, unless ``path`` is a TorchScript archive (OpenAI's format).

    pyiqa's loader falls back to ``torch.load`` on anything else and then dies with an
    unrelated EOFError; a state-dict file or a random file is reported here instead.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"CLIP weights not found at {path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"CLIP weights {path} are not a TorchScript archive (OpenAI's RN50.pt format): {exc}"
        ) from exc
    # TorchScript archives carry compiled code (<name>/code/...); torch.save files do not.
    if not any("/code/" in name for name in names):
        raise InputError(
            f"CLIP weights {path} are a plain torch.save file, expected a TorchScript archive (OpenAI's RN50.pt format)"
        )
    return path


# What pyiqa's loader raises on an archive that is not a CLIP (missing keys, odd shapes).
PYIQA_LOAD_ERRORS = (RuntimeError, KeyError, AssertionError, ValueError)


def not_a_clip_archive(path: Path, exc: BaseException) -> InputError:
    """The one-line error for a TorchScript archive that pyiqa cannot rebuild as CLIP."""
    reason = " ".join(str(exc).split())[:200]
    return InputError(f"CLIP weights {path} are not an OpenAI CLIP archive pyiqa can rebuild: {reason}")


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load OpenAI CLIP weights with pyiqa's loader and freeze them.

    Args:
        path: A TorchScript CLIP archive (see :func:`find_clip_weights`).
        device: Where to put the model. Weights are float32 on every device (pyiqa keeps
            fp16 on CUDA; mixed precision is the caller's choice through autocast).

    Returns:
        pyiqa's eager ``CLIP`` module in eval mode, ``requires_grad=False`` on every parameter;
        gradients still flow to the input of ``encode_image``.
    """
    path = check_clip_archive(path)
    import_pyiqa()
    from pyiqa.archs.clip_model import load

    try:
        model = load(str(path), device="cpu", jit=False)
    except PYIQA_LOAD_ERRORS as exc:
        raise not_a_clip_archive(path, exc) from exc
    model = model.float().to(device).eval()
    model.requires_grad_(False)
    return model


def clip_input_resolution(model: nn.Module) -> int:
    """The square input size the model's image tower was trained at (224 for RN50)."""
    return int(model.visual.input_resolution)


def clip_preprocess(x: torch.Tensor, resolution: int = 224) -> torch.Tensor:
    """CLIP's preprocessing on a tensor, differentiable.

    The tensor version of openai-clip's ``_transform``: bicubic antialiased resize of the
    shorter side to ``resolution``, center crop to ``resolution`` x ``resolution``, then
    OpenAI's mean/std normalisation.

    Args:
        x: ``[B, 3, H, W]`` (or ``[3, H, W]``) float in [0, 1].
        resolution: The model's input size (:func:`clip_input_resolution`).

    Returns:
        ``[B, 3, resolution, resolution]`` normalised tensor.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise InputError(f"clip_preprocess expects [B,3,H,W] or [3,H,W] images, got shape {tuple(x.shape)}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    x = TF.resize(x, resolution, interpolation=InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [resolution, resolution])
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def clip_image_embedding(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Unit-length CLIP image embeddings of images in [0, 1], gradients flowing to ``x``.

    Args:
        model: From :func:`load_clip`.
        x: ``[B, 3, H, W]`` float in [0, 1], any size (preprocessed with :func:`clip_preprocess`).

    Returns:
        ``[B, D]`` embeddings with L2 norm 1 (cosine distance = 1 - dot product).
    """
    pixels = clip_preprocess(x, clip_input_resolution(model))
    features = model.encode_image(pixels, pos_embedding=False)
    return F.normalize(features.float(), dim=-1)
