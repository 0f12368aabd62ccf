"""Tiny models and real artifacts (ONNX, OpenVINO IR) built inside the tests, never downloaded.

The model is the tiny preset's shape shrunk further (two UNet levels of 16/32 channels) with its
zero-initialised residual head perturbed, so the denoiser actually changes the output (an untrained
model would only reproduce bicubic upscaling and hide graph differences).
"""
from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from vpdsr.artifacts import ArtifactEntry, Manifest, file_entries, read_entry, write_entry
from vpdsr.models import DenoiserConfig, ModelConfig, build
from vpdsr.models.vpdsr import DecoderStage, DenoiserStage, EncoderStage

SIZE = 16  # LR side used by the tests (8..16 keeps every backend fast)


@functools.lru_cache(maxsize=1)
def tiny_model() -> torch.nn.Module:
    cfg = ModelConfig(preset="test", denoiser=DenoiserConfig(block_out_channels=(16, 32),
                                                             attention_levels=(False, False), norm_num_groups=8))
    model = build(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return model


def inputs(batch: int = 1, h: int = SIZE, w: int = SIZE, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    channels = tiny_model().latent_channels
    return {"lr": rng.random((batch, 3, h, w), dtype=np.float32),
            "noise": rng.standard_normal((batch, channels, h, w)).astype(np.float32)}


@torch.inference_mode()
def torch_reference(feed: dict[str, np.ndarray]) -> np.ndarray:
    """The torch fp32 output every backend is compared with."""
    return tiny_model()(torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _export(module: torch.nn.Module, args: tuple, path: Path, names_in: list[str], names_out: list[str]) -> Path:
    """Legacy (TorchScript) exporter, opset 17, dynamic batch/H/W (the dynamo exporter needs onnxscript)."""
    axes = {n: {0: "B", 2: "h", 3: "w"} for n in names_in + names_out}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=names_in,
                          output_names=names_out, dynamic_axes=axes)
    return path


@functools.lru_cache(maxsize=1)
def _fused_onnx_bytes() -> bytes:
    """Exported once per session (the export is deterministic), then copied where each test wants it."""
    feed = inputs()
    with tempfile.TemporaryDirectory() as tmp:
        path = _export(tiny_model(), (torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])),
                       Path(tmp) / "model.onnx", ["lr", "noise"], ["sr"])
        return path.read_bytes()


def export_fused_onnx(path: Path) -> Path:
    path.write_bytes(_fused_onnx_bytes())
    return path


def export_split_onnx(folder: Path) -> dict[str, Path]:
    model, feed = tiny_model(), inputs()
    lr, noise = torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])
    with torch.inference_mode():
        y = model.encode(lr)
        x0 = model.student_step(y, noise)
    return {
        "encoder": _export(EncoderStage(model), (lr,), folder / "encoder.onnx", ["lr"], ["y"]),
        "denoiser": _export(DenoiserStage(model), (y, noise), folder / "denoiser.onnx", ["y", "noise"], ["x0"]),
        "decoder": _export(DecoderStage(model), (x0,), folder / "decoder.onnx", ["x0"], ["sr"]),
    }


def _entry(folder: Path, target: str, backend: str, precision: str, stages: str = "fused", **options) -> ArtifactEntry:
    entry = ArtifactEntry(name=folder.name, target=target, backend=backend, precision=precision, stages=stages,
                          files=file_entries(folder), dynamic=True, options=options,
                          inputs={"lr": {"shape": ["B", 3, "h", "w"], "dtype": "float32"},
                                  "noise": {"shape": ["B", tiny_model().latent_channels, "h", "w"],
                                            "dtype": "float32"}},
                          outputs={"sr": {"shape": ["B", 3, "4h", "4w"], "dtype": "float32"}})
    write_entry(folder, entry)
    return entry


def onnx_artifact(folder: Path, stages: str = "fused") -> Path:
    """An `onnx` artifact folder (model.onnx, or encoder/denoiser/decoder.onnx) with its artifact.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if stages == "split":
        graphs = {stage: path.name for stage, path in export_split_onnx(folder).items()}
    else:
        graphs = {"model": export_fused_onnx(folder / "model.onnx").name}
    _entry(folder, "onnx", "onnxruntime", "fp32", stages, graphs=graphs)
    return folder


def openvino_artifact(folder: Path, precision: str = "fp32") -> Path:
    """An `openvino-<precision>` artifact: IR converted from the ONNX graph, execution precision recorded."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_fused_onnx(folder.parent / f".{folder.name}.onnx")
    # read_model is OpenVINO's ONNX frontend without convert_model's Python-side passes: ~3x faster here
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(folder / "model.xml"), compress_to_fp16=False)
    onnx_path.unlink()
    _entry(folder, f"openvino-{precision}", "openvino", precision, graphs={"model": "model.xml"},
           inference_precision=precision)
    return folder


def export_dir(root: Path) -> Path:
    """An export output folder: onnx/ and openvino-fp32/ plus manifest.json."""
    root.mkdir(parents=True, exist_ok=True)
    entries = [read_entry(onnx_artifact(root / "onnx")), read_entry(openvino_artifact(root / "openvino-fp32"))]
    Manifest(model={"source": "tests"}, artifacts=entries).write(root)
    return root
