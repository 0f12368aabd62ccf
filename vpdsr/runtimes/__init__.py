"""Runtimes: one Runner per backend (torch, onnxruntime, openvino, tensorrt), tiling, `load`.

Backend packages are imported only when a runner is activated, so `import vpdsr.runtimes` works
without onnxruntime, openvino or tensorrt installed.
"""
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.loader import execution_precision, load

__all__ = ["Runner", "execution_precision", "load", "runner_class"]


def runner_class(backend: str):
    """The Runner class of a backend name (imports that module only)."""
    import importlib

    modules = {"torch": ("torch_runner", "TorchRunner"), "onnxruntime": ("onnxruntime_runner", "OnnxRuntimeRunner"),
               "openvino": ("openvino_runner", "OpenVINORunner"), "tensorrt": ("tensorrt_runner", "TensorRTRunner"),
               "staged": ("staged", "StagedRunner")}
    if backend not in modules:
        from vpdsr.errors import ConfigError

        raise ConfigError(f"unknown backend {backend!r}; expected one of {sorted(modules)}")
    module, cls = modules[backend]
    return getattr(importlib.import_module(f"vpdsr.runtimes.{module}"), cls)
