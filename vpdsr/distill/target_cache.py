"""A teacher's outputs on disk, so a resumed or repeated run does not compute them again.

One safetensors file per LR crop, named by the sha256 of everything that decides the output:

    teacher   the teacher's hash (its config and every weight: `model_hash`)
    call      how it was called (`forward` or `sample`, the sampling seed), and the torch version, the
              thread count and the CPU kernel family (`cpu_capability`): they change the output's last bits
    lr        the LR crop's bytes, shape and dtype: the crop, its flips and the degradation, all at once
    noise     the teacher's noise input, for a model that takes one

Each entry records the sha256 of its tensor; an entry that is truncated, corrupt or does not hold what
its name promises is dropped with a warning and computed again, never used.

    <root>/<teacher hash[:16]>/<key[:2]>/<key>.safetensors
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FORMAT = 1


def default_root() -> Path:
    """$VPDSR_CACHE/teacher-targets (default ~/.cache/vpdsr)."""
    from vpdsr.env import cache_dir

    return cache_dir() / "teacher-targets"


def model_hash(model: torch.nn.Module) -> str:
    """sha256 of a model's config.json content and every tensor of its state dict (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        _tensor_into(h, name, tensor)
    return h.hexdigest()


def _tensor_into(h, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def tensor_sha256(tensor: torch.Tensor) -> str:
    h = hashlib.sha256()
    _tensor_into(h, "", tensor)
    return h.hexdigest()


def machine_call() -> dict:
    """What besides the inputs changes a CPU forward pass's bits: torch's version, threads, kernel family."""
    return {"torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


class TargetCache:
    """The cached outputs of one teacher.

    Args:
        root: the cache folder (default: `default_root()`).
        teacher_hash: `model_hash` of the teacher.
        call: how the teacher is called (e.g. {"call": "forward"}); `machine_call()` is added.
    """

    def __init__(self, root: Path | None, teacher_hash: str, call: dict):
        self.teacher_hash = teacher_hash
        self.folder = Path(root or default_root()) / teacher_hash[:16]
        self.call = {"format": FORMAT, "teacher": teacher_hash, **call}
        self.hits = self.misses = 0

    def key(self, lr: torch.Tensor, noise: torch.Tensor | None = None) -> str:
        """The entry name of (lr, noise) computed now (the thread count in force is part of it)."""
        h = hashlib.sha256(json.dumps({**self.call, **machine_call()}, sort_keys=True).encode())
        _tensor_into(h, "lr", lr)
        if noise is not None:
            _tensor_into(h, "noise", noise)
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        """The entry's tensor, or None when absent or unusable (an unusable file is removed)."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta, tensor = f.metadata() or {}, f.get_tensor("target")
            if meta.get("key") != key or meta.get("sha256") != tensor_sha256(tensor):
                raise ValueError("its content does not match its name")
        except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign: all one answer
            log.warning(f"warning: teacher target cache: {path} dropped ({' '.join(str(e).split())[:160]}); "
                        "computing it again")
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Write an entry atomically (a temporary name in the same folder, then a rename)."""
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        t = tensor.detach().cpu().contiguous()
        save_file({"target": t}, str(tmp), metadata={"key": key, "sha256": tensor_sha256(t)})
        os.replace(tmp, path)
        self.misses += 1

    def get_or_compute(self, lr: torch.Tensor, noise: torch.Tensor | None, compute) -> torch.Tensor:
        """The cached output for (lr, noise), or `compute()`'s, stored first."""
        key = self.key(lr, noise)
        cached = self.get(key)
        if cached is not None:
            return cached.to(lr.device)
        out = compute()
        self.put(key, out)
        return out
