"""Helpers shared by the backend runners: optional imports, precision names, stage I/O."""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from vpdsr.errors import ConfigError, MissingDependencyError

# Canonical precision names (the manifest's) and the spellings each tool uses for them.
_PRECISION_ALIASES = {
    "fp32": "fp32", "f32": "fp32", "float32": "fp32",
    "fp16": "fp16", "f16": "fp16", "float16": "fp16", "half": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
    "int8": "int8", "i8": "int8",
    "fp8": "fp8",
}


def import_optional(module: str, what: str) -> ModuleType:
    """Import an optional backend package, or raise a one-line MissingDependencyError.

    Args:
        module: the import name, e.g. "openvino".
        what: what needs it, for the message (e.g. "the openvino runner").
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        from vpdsr.env import pip_extra

        extra = pip_extra(module)
        raise MissingDependencyError(
            f"{what} needs the package {module!r} ({str(e).splitlines()[0]}): pip install 'vpdsr[{extra}]'"
        ) from None


def canonical_precision(precision: str, allowed: tuple[str, ...] | None = None, what: str = "precision") -> str:
    """`f32`/`float32`/`fp32` -> `fp32` etc.; ConfigError for an unknown or disallowed name."""
    name = _PRECISION_ALIASES.get(str(precision).lower())
    if name is None or (allowed and name not in allowed):
        raise ConfigError(f"`{what}` must be one of {list(allowed or sorted(set(_PRECISION_ALIASES.values())))}, "
                          f"got {precision!r}")
    return name


def as_float32(arr: np.ndarray) -> np.ndarray:
    """Runner outputs are always float32 (fp16 graphs and bf16 tensors are widened)."""
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def dim(d) -> int | str:
    """One dimension for input metadata: an int when static, else a name (str)."""
    if isinstance(d, (int, np.integer)) and d >= 0:
        return int(d)
    return str(d) if d not in (None, -1) else "?"
