"""Reading foreign checkpoints (ResShift/SinSR `.pth`, Real-ESRGAN `.pth`): tensors only, never a full unpickle.

`torch.load(..., weights_only=True)` unpickles nothing but tensors and plain containers; a file that
needs more (a pickled module, a custom class) is refused in one line. Converters then map the keys
onto a vpdsr family and save an ordinary model directory (config.json + model.safetensors) with the
sources' sha256 in `convert.json`.

Example:
    >>> state = read_state_dict("resshift_realsrx4_s4_v3.pth", unwrap=("state_dict",))
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from vpdsr.errors import CheckpointError, InputError
from vpdsr.utils import sha256_file

PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
CONVERT_NAME = "convert.json"


def read_state_dict(path: str | Path, unwrap: tuple[str, ...] = ("state_dict",)) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth` file, read with `weights_only=True`.

    Args:
        path: the file.
        unwrap: top-level keys that may hold the real state dict (the first present one is used,
            e.g. "state_dict" for ResShift, "params_ema" then "params" for basicsr).

    Returns:
        {key: tensor} with `module.` / `_orig_mod.` prefixes stripped (non-tensor entries dropped).

    Raises:
        InputError: the file is missing.
        CheckpointError: not a torch file, or one that needs more than tensors to load.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a torch .pth checkpoint)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        if "global" not in text.lower():  # not a pickle of anything: a damaged or foreign file
            raise CheckpointError(f"{path}: not a readable torch checkpoint (its pickle data is corrupt)") from None
        detail = text[text.find("Unsupported global"):][:200] if "Unsupported global" in text else text[:200]
        raise CheckpointError(f"{path}: refused: it needs more than tensors to load (weights_only=True: {detail}); "
                              "re-save it as a plain state dict") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({' '.join(str(e).split())[:200]})") from None
    for key in unwrap:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        for prefix in PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    if not out:
        raise CheckpointError(f"{path}: holds no tensors (top-level keys: {sorted(map(str, obj))[:5]})")
    return out


def check_keys(expected: set[str] | list[str], got: set[str] | list[str], source: str | Path, show: int = 3) -> None:
    """One-line CheckpointError naming the first few missing / unexpected keys and their counts."""
    expected, got = set(expected), set(got)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:show])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:show])})")
    raise CheckpointError(f"{source}: keys do not match the architecture: {'; '.join(parts)}")


def source_record(**files: str | Path | None) -> dict:
    """{"role": {"path", "sha256", "bytes"}} for the files a conversion read (None entries skipped)."""
    out = {}
    for role, path in files.items():
        if path is None:
            continue
        p = Path(path)
        out[role] = {"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def convert_record_text(kind: str, sources: dict, **extra) -> str:
    """The `convert.json` text written beside a converted model."""
    return json.dumps({"converter": kind, "sources": sources, **extra}, indent=2) + "\n"
