"""What the TensorRT engine builder, the TensorRT runner and ONNX Runtime's TensorRT EP share.

Plain Python (nothing here imports `tensorrt`), so it is tested on machines without a GPU:
- the TensorRT versions this code supports, compared as numbers (10.12 > 10.9);
- optimisation profiles (min/opt/max shapes) from the artifact's tile or dynamic range, and the
  same shapes as ONNX Runtime's `trt_profile_*_shapes` strings;
- where caches live: `$VPDSR_CACHE` (default ~/.cache/vpdsr), outside any artifact folder (whose
  files are hashed) and outside the export's temporary build folder (deleted after the export).

Why 10.12: TensorRT 10.12 deprecated the weakly typed precision flags (BuilderFlag.FP16/INT8/BF16/FP8)
in favour of strongly typed networks, where the ONNX graph's own types and Q/DQ nodes decide the
precision; TensorRT 11 removed those flags (its STRONGLY_TYPED creation flag is accepted and
ignored: every network is strongly typed). Our builder only builds strongly typed networks, so it
needs 10.12 or later; 12 is a major release we have not seen.
"""
from __future__ import annotations

import re
from pathlib import Path

from vpdsr.errors import CapabilityError

MIN_TENSORRT = (10, 12)  # strongly typed networks without the deprecated precision flags
MAX_TENSORRT_MAJOR = 11  # the newest major release this code was written against
PYPROJECT_BOUND = f"tensorrt>={MIN_TENSORRT[0]}.{MIN_TENSORRT[1]},<{MAX_TENSORRT_MAJOR + 1}"  # the `gpu` extra's

MAX_BATCH = 8  # tiles per engine call at most
OPT_BATCH = 4  # `vpdsr bench`'s default tile batch: what the builder tunes for
DYNAMIC_RANGE = (32, 256)  # LR side min/max of a --dynamic artifact (opt: its tile)


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.12.0.36' -> (10, 12, 0, 36): each dot-separated part's leading digits, as numbers.

    Strings compare '10.9' > '10.12'; numbers do not. A suffix ('0rc1', 'post1') keeps its digits' prefix.
    """
    parts = []
    for piece in str(version).strip().split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    if not parts:
        raise ValueError(f"not a version number: {version!r}")
    return tuple(parts)


def same_release(a: str, b: str) -> bool:
    """True when two TensorRT versions are the same major.minor.patch (engines are tied to it; the
    build number is not)."""
    return _pad(version_tuple(a)[:3]) == _pad(version_tuple(b)[:3])


def _pad(v: tuple[int, ...], n: int = 3) -> tuple[int, ...]:
    return v + (0,) * (n - len(v))


def check_supported(version: str) -> None:
    """Raise CapabilityError (one line) for a TensorRT this code does not support."""
    v = version_tuple(version)
    if _pad(v, 2)[:2] < MIN_TENSORRT:
        raise CapabilityError(f"TensorRT {version} is older than {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]}, "
                              f"which vpdsr needs (strongly typed networks; {PYPROJECT_BOUND}): "
                              "pip install 'vpdsr[gpu]'")
    if v[0] > MAX_TENSORRT_MAJOR:
        raise CapabilityError(f"TensorRT {version} is newer than the {MAX_TENSORRT_MAJOR}.x this vpdsr was written "
                              f"against ({PYPROJECT_BOUND})")


def _round_up(x: int, multiple: int) -> int:
    return -(-int(x) // multiple) * multiple


def profile_shapes(channels: dict[str, int], tile: int, dynamic: bool, size_multiple: int = 1,
                   max_batch: int = MAX_BATCH, opt_batch: int = OPT_BATCH) -> dict[str, dict[str, list[int]]]:
    """{input: {"min", "opt", "max"}} NCHW shapes of one optimisation profile.

    Args:
        channels: {input name: channels}, e.g. {"lr": 3, "noise": 4}.
        tile: the artifact's LR tile (the static side, or the opt side of a dynamic engine).
        dynamic: H/W span DYNAMIC_RANGE (rounded to `size_multiple`, and always including `tile`).
        size_multiple: LR sides the model takes.
        max_batch, opt_batch: the batch dimension spans 1..max_batch, tuned for opt_batch.
    """
    if tile < 1 or max_batch < 1 or not 1 <= opt_batch <= max_batch:
        raise ValueError(f"bad profile: tile {tile}, batch {opt_batch} of at most {max_batch}")
    m = max(1, int(size_multiple))
    opt = _round_up(tile, m)
    lo, hi = (min(_round_up(DYNAMIC_RANGE[0], m), opt), max(_round_up(DYNAMIC_RANGE[1], m), opt)) if dynamic \
        else (opt, opt)
    return {name: {"min": [1, c, lo, lo], "opt": [opt_batch, c, opt, opt], "max": [max_batch, c, hi, hi]}
            for name, c in channels.items()}


def ort_profile_options(shapes: dict[str, dict[str, list[int]]]) -> dict[str, str]:
    """The same profile as ONNX Runtime TensorRT EP options: `"lr:1x3x64x64,noise:1x4x64x64"` per bound."""
    return {f"trt_profile_{bound}_shapes": ",".join(f"{name}:{'x'.join(str(d) for d in s[bound])}"
                                                    for name, s in shapes.items())
            for bound in ("min", "opt", "max")}


def cache_root() -> Path:
    """vpdsr's cache folder (:func:`vpdsr.env.cache_dir`)."""
    from vpdsr.env import cache_dir

    return cache_dir()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "unknown"


def timing_cache_path(gpu_name: str, compute_capability, tensorrt_version: str) -> Path:
    """$VPDSR_CACHE/tensorrt/timing-<gpu>-sm<cc>-trt<version>.cache: one per GPU model and TensorRT release.

    A timing cache records measured tactic times; it is only valid for the GPU and TensorRT that
    measured them, so the name carries both. It outlives the export's temporary folder: the next
    build on this machine (another model, a rebuild) starts from it and tunes in a fraction of the time.
    """
    from vpdsr.runtimes.cuda import capability_text

    cc = capability_text(compute_capability).replace(".", "")
    release = ".".join(str(x) for x in _pad(version_tuple(tensorrt_version)[:3]))
    return cache_root() / "tensorrt" / f"timing-{_slug(gpu_name)}-sm{cc}-trt{release}.cache"


def ort_engine_cache_dir(graph_sha256: str) -> Path:
    """ONNX Runtime TensorRT EP's engine cache for one graph: $VPDSR_CACHE/ort-tensorrt/<sha256[:16]>.

    ORT names cached engines after the model and its subgraphs, not the weights: two artifacts sharing
    one folder could load each other's engine. One folder per graph hash cannot collide.
    """
    if not re.fullmatch(r"[0-9a-f]{16,64}", str(graph_sha256)):
        raise ValueError(f"not a sha256 hex digest: {graph_sha256!r}")
    return cache_root() / "ort-tensorrt" / str(graph_sha256)[:16]


def graph_sha256(path: Path) -> str:
    """sha256 of an ONNX graph file and its external data (`<name>.data` beside it, as the export saves it)."""
    import hashlib

    from vpdsr.utils import sha256_file

    path = Path(path)
    parts = [sha256_file(path)]
    data = path.with_name(path.name + ".data")
    if data.is_file():
        parts.append(sha256_file(data))
    return parts[0] if len(parts) == 1 else hashlib.sha256("".join(parts).encode()).hexdigest()
