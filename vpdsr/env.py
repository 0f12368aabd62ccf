"""What this machine has: the optional packages (one table), their versions, CPU features, GPUs.

One table serves every place that names a package: `vpdsr info`, the versions an export records
(and hashes into its cache key), the environment of a benchmark report, and the `pip install
'vpdsr[extra]'` hint of a missing-package error. Versions come from package metadata, so asking
for them imports nothing; only `importable()` imports (it is what `vpdsr info` shows).

Example:
    >>> versions(["torch", "onnx"])  # doctest: +SKIP
    {'torch': '2.14.1', 'onnx': '1.19.0'}
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from vpdsr import __version__


@dataclass(frozen=True)
class Package:
    """Attributes:
        name: the key in every table (the import name; the distribution where two share a module).
        module: the import name.
        dist: the distribution whose metadata gives the version.
        extra: the vpdsr pip extra that installs it (None: a core dependency).
    """

    name: str
    module: str
    dist: str
    extra: str | None = None


PACKAGES: tuple[Package, ...] = (
    Package("torch", "torch", "torch"),
    Package("torchvision", "torchvision", "torchvision"),
    Package("diffusers", "diffusers", "diffusers"),
    Package("numpy", "numpy", "numpy"),
    Package("onnx", "onnx", "onnx", "onnx"),
    Package("onnxruntime", "onnxruntime", "onnxruntime", "onnx"),
    Package("onnxruntime-gpu", "onnxruntime", "onnxruntime-gpu", "gpu"),
    Package("onnxconverter_common", "onnxconverter_common", "onnxconverter-common", "modelopt"),
    Package("openvino", "openvino", "openvino", "openvino"),
    Package("nncf", "nncf", "nncf", "openvino"),
    Package("tensorrt", "tensorrt", "tensorrt", "gpu"),
    Package("modelopt", "modelopt", "nvidia-modelopt", "modelopt"),
    Package("polygraphy", "polygraphy", "polygraphy", "gpu"),
    Package("pyiqa", "pyiqa", "pyiqa", "metrics"),
    Package("accelerate", "accelerate", "accelerate"),
    Package("ray", "ray", "ray", "ray"),
    Package("kornia", "kornia", "kornia"),
)
_BY_NAME = {p.name: p for p in PACKAGES}
# CPU features that decide which precisions run natively (bf16/int8 tiles, VNNI).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def package(name: str) -> Package:
    """The table's row for `name` (KeyError for a name the table does not have)."""
    return _BY_NAME[name]


def version(name: str) -> str | None:
    """Installed version of a table package (from metadata: nothing is imported), None if absent."""
    try:
        return md.version(_BY_NAME[name].dist)
    except md.PackageNotFoundError:
        return None


def versions(names=None, installed_only: bool = False) -> dict[str, str | None]:
    """{name: version} for `names` (default: the whole table); None for a missing one unless dropped."""
    out = {n: version(n) for n in (names if names is not None else _BY_NAME)}
    return {k: v for k, v in out.items() if v is not None} if installed_only else out


def pip_extra(module: str) -> str:
    """The vpdsr extra that brings an import name (`onnxruntime` -> `onnx`); `all` when not in the table."""
    top = module.split(".")[0]
    return next((p.extra for p in PACKAGES if p.module == top and p.extra), "all")


def importable() -> dict[str, dict]:
    """Import every table package: {name: {"importable": True, "version"} or {"importable": False, "reason"}}."""
    out = {}
    for p in PACKAGES:
        found = version(p.name)
        if found is None and p.dist != p.module:
            out[p.name] = {"importable": False, "reason": f"not installed (pip package {p.dist})"}
            continue
        try:
            importlib.import_module(p.module)
            out[p.name] = {"importable": True, "version": found}
        except Exception as e:  # an optional backend may fail in any way (missing libs, ABI)
            first = str(e).splitlines()[0] if str(e) else ""
            out[p.name] = {"importable": False, "reason": f"{type(e).__name__}: {first}"}
    return out


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return name, flags


def cpu_flags() -> set[str]:
    """Every flag /proc/cpuinfo lists for the first CPU (empty where there is no /proc/cpuinfo)."""
    return _cpuinfo()[1]


def cpu_info() -> dict:
    """CPU model name, core count and the CPU_FLAGS it has (from /proc/cpuinfo where there is one)."""
    name, flags = _cpuinfo()
    return {"name": name, "cores": os.cpu_count(), "features": [f for f in CPU_FLAGS if f in flags]}


def cache_dir() -> Path:
    """Where vpdsr keeps per-machine caches (peak figures, converted presets, engine caches).

    $VPDSR_CACHE, else the platform's user cache folder (platformdirs): $XDG_CACHE_HOME/vpdsr or
    ~/.cache/vpdsr on Linux, ~/Library/Caches/vpdsr on macOS, %LOCALAPPDATA%\\vpdsr\\Cache on Windows.
    """
    import platformdirs

    return Path(os.environ.get("VPDSR_CACHE") or platformdirs.user_cache_dir("vpdsr", appauthor=False))


def gpu_info() -> list[dict]:
    """CUDA devices torch sees: index, name, compute capability, memory."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                    "memory_gb": round(p.total_memory / 2**30, 1)})
    return out


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return ort.get_available_providers()
    except Exception:  # not installed, or a broken install: none usable
        return []


def openvino_devices() -> list[str]:
    try:
        import openvino as ov

        return ov.Core().available_devices
    except Exception:  # not installed, or a broken install: none usable
        return []


def machine() -> dict:
    """Where this runs: vpdsr and Python versions, platform, CPU, GPUs."""
    return {"vpdsr": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_info(), "gpus": gpu_info()}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def probe_threads(max_threads: int | None = None, seconds: float = 0.3) -> dict:
    """How many CPU threads pay off right now: 1 or `max_threads`, from a short matmul probe.

    On a 2-core machine that other processes share, a 2-thread kernel waits at every barrier for
    its descheduled second thread and ran 1.4-2.5x slower than 1 thread (ONNX Runtime, OpenVINO and
    torch alike); on an idle machine it is close to 2x faster. The probe times blocks of 1-thread and
    n-thread runs of a 512^2 fp32 matmul in turn for about `seconds` and keeps n only when its median is at
    least 25 % faster.

    Returns:
        {"threads": chosen, "max_threads": n, "ms": {"1": median, "n": median}, "loadavg": [...]}.
    """
    import time

    import torch

    n = max_threads or available_cpus()
    out: dict = {"max_threads": n, "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if n <= 1:
        return {**out, "threads": 1, "ms": {}}
    a = torch.randn(512, 512)
    old = torch.get_num_threads()
    times: dict[int, list[float]] = {1: [], n: []}
    try:
        # blocks of runs per thread count, twice in turn: resizing the thread pool between single
        # runs costs more than the matmul itself
        for k in (1, n, 1, n):
            torch.set_num_threads(k)
            a @ a
            t_end = time.perf_counter() + seconds / 4
            while time.perf_counter() < t_end or len(times[k]) < 3:
                t0 = time.perf_counter()
                a @ a
                times[k].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    chosen = n if med[n] < 0.75 * med[1] else 1
    return {**out, "threads": chosen, "ms": {str(k): round(v, 3) for k, v in med.items()}}
