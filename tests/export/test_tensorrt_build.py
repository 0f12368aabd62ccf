"""TensorRT targets: the Polygraphy loader chain and the ONNX graphs engines are built from are checked
on CPU (nothing here needs TensorRT); building and running an engine needs TensorRT and a GPU."""
from __future__ import annotations

import collections
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.export.conftest import TILE, tiny_model
from vpdsr.export.calibration import CalibrationSet
from vpdsr.export.targets import TARGETS, BuildContext, TargetSkipped
from vpdsr.export.tensorrt_engine import EngineConfig, engine_sources, polygraphy_loader, require_tensorrt
from vpdsr.runtimes.tensorrt_common import profile_shapes

pytest.importorskip("polygraphy", reason="polygraphy not installed (pip install 'vpdsr[gpu]' or '[modelopt]')")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_loader_chain_is_strongly_typed_with_profile_timing_cache_and_no_precision_flags(tmp_path):
    shapes = profile_shapes({"lr": 3, "noise": 48}, tile=TILE, dynamic=False)
    cache = tmp_path / "timing.cache"
    save = polygraphy_loader(tmp_path / "model.onnx", tmp_path / "model.plan", shapes, cache,
                             EngineConfig(builder_optimization_level=4))
    engine = save._engine
    network, config = engine._network, engine._config
    assert save.path == str(tmp_path / "model.plan") and network.path == str(tmp_path / "model.onnx")
    assert network.strongly_typed is True
    # no weakly typed precision flag: TensorRT 10.12 deprecated them, 11 removed them
    assert not any((config.fp16, config.bf16, config.int8, config.fp8, config.tf32))
    assert config.builder_optimization_level == 4
    assert config.timing_cache_path is None  # no cache yet: nothing to load ...
    assert engine.timing_cache_path == str(cache)  # ... but the build writes it
    (profile,) = config.profiles
    assert tuple(profile["lr"].min) == (1, 3, TILE, TILE) and tuple(profile["noise"].max) == (8, 48, TILE, TILE)
    cache.write_bytes(b"")
    again = polygraphy_loader(tmp_path / "model.onnx", tmp_path / "model.plan", shapes, cache)
    assert again._engine._config.timing_cache_path == str(cache)  # the next build starts from it


@pytest.mark.skipif(bool(importlib.util.find_spec("tensorrt")), reason="TensorRT is installed here")
def test_without_tensorrt_the_target_is_skipped_with_the_reason():
    with pytest.raises(TargetSkipped, match="TensorRT is not installed"):
        require_tensorrt("cuda:0")


def _context(tmp_path: Path) -> BuildContext:
    model = tiny_model()
    calib = CalibrationSet("samples:calib", count=2, tile=TILE, channels=model.latent_channels)
    return BuildContext(model, tmp_path / "work", "fused", TILE, False, calib)


def _ort_psnr_vs_torch(path: Path, ctx: BuildContext) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = ctx.calib.feeds()[0]
    with torch.inference_mode():
        ref = ctx.model(torch.from_numpy(feed["lr"]), torch.from_numpy(feed["noise"])).numpy()
    return _psnr(session.run(None, feed)[0], ref)


def _types(path: Path):
    import onnx

    graph = onnx.load(str(path)).graph
    io = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    return graph, io, collections.Counter(i.data_type for i in graph.initializer)


def test_fp16_engine_source_is_the_onnx_fp16_graph(tmp_path):
    """What a strongly typed tensorrt-fp16 engine keeps: fp16 weights inside, fp32 I/O; it runs (ORT CPU here)."""
    from onnx import TensorProto

    ctx = _context(tmp_path)
    sources, recorded = engine_sources(ctx, TARGETS["tensorrt-fp16"])
    graph, io, inits = _types(sources["model"])
    assert set(io.values()) == {TensorProto.FLOAT}
    assert inits[TensorProto.FLOAT16] > 0 and "fp16_stages" in recorded
    assert _ort_psnr_vs_torch(sources["model"], ctx) >= 40.0


@pytest.mark.slow
def test_int8_engine_source_is_qdq_with_fp16_between(tmp_path):
    """modelopt's Q/DQ graph with fp16 as the high-precision type (what TensorRT's strongly typed int8 wants)."""
    pytest.importorskip("modelopt", reason="nvidia-modelopt not installed (pip install 'vpdsr[modelopt]')")
    from onnx import TensorProto

    ctx = _context(tmp_path)
    sources, recorded = engine_sources(ctx, TARGETS["tensorrt-int8"])
    graph, io, inits = _types(sources["model"])
    ops = collections.Counter(n.op_type for n in graph.node)
    assert recorded["high_precision_dtype"] == "fp16" and recorded["quantize_mode"] == "int8"
    assert ops["QuantizeLinear"] > 0 and ops["QuantizeLinear"] == ops["DequantizeLinear"]
    assert inits[TensorProto.FLOAT16] > 0 and inits[TensorProto.INT8] > 0
    assert set(io.values()) == {TensorProto.FLOAT}
    assert _ort_psnr_vs_torch(sources["model"], ctx) >= 30.0  # measured 45 dB on this model
