"""`vpdsr info`: versions, importable backends, CPU features, GPUs."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import platform

from vpdsr import __version__

BACKENDS = {
    "torch": "torch", "torchvision": "torchvision", "diffusers": "diffusers", "onnx": "onnx",
    "onnxruntime": "onnxruntime", "openvino": "openvino", "nncf": "nncf", "tensorrt": "tensorrt",
    "modelopt": "nvidia-modelopt", "polygraphy": "polygraphy", "pyiqa": "pyiqa", "accelerate": "accelerate",
    "kornia": "kornia",
}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, importable backends, CPU features and GPUs")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def collect() -> dict:
    """What is installed and usable here (importing each optional backend, catching failures)."""
    backends = {}
    for module, dist in BACKENDS.items():
        try:
            importlib.import_module(module)
            backends[module] = {"importable": True, "version": _version(dist)}
        except Exception as e:  # an optional backend may fail in any way (missing libs, ABI)
            backends[module] = {"importable": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return {
        "vpdsr": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "backends": backends,
        "onnxruntime_providers": _ort_providers(),
        "openvino_devices": _ov_devices(),
    }


def cpu_info() -> dict:
    name, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("unknown", ""):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    import os

    return {"name": name, "cores": os.cpu_count(), "features": [f for f in CPU_FLAGS if f in flags]}


def gpu_info() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                    "memory_gb": round(p.total_memory / 2**30, 1)})
    return out


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return ort.get_available_providers()
    except Exception:
        return []


def _ov_devices() -> list[str]:
    try:
        import openvino as ov

        return ov.Core().available_devices
    except Exception:
        return []


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"vpdsr {info['vpdsr']}  python {info['python']}  {info['platform']}")
    print(f"cpu: {info['cpu']['name']} ({info['cpu']['cores']} cores) features: {' '.join(info['cpu']['features']) or '-'}")
    gpus = info["gpus"]
    print("gpus: " + (", ".join(f"{g['name']} (sm {g['capability']}, {g['memory_gb']} GB)" for g in gpus) or "none"))
    for name, b in info["backends"].items():
        state = b["version"] if b["importable"] else f"not importable ({b['reason']})"
        print(f"  {name:<12} {state}")
    if info["onnxruntime_providers"]:
        print("onnxruntime providers: " + ", ".join(info["onnxruntime_providers"]))
    if info["openvino_devices"]:
        print("openvino devices: " + ", ".join(info["openvino_devices"]))
    return 0
