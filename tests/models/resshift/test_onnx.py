"""The ResShift family traces into ONNX (TorchScript exporter, opset 17) and runs in onnxruntime.

Static tiles: `fix_size` makes every shifted-window mask a constant (no Range op in the graph).
Dynamic H/W: the masks are computed in the graph from the input's shape, so a graph exported at
one size runs at another. Both are checked against torch on the tiny config.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from vpdsr.models import get_preset
from vpdsr.models.checkpoint import build

onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'vpdsr[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'vpdsr[onnx]')")


@pytest.fixture(scope="module")
def model():
    m = build(get_preset("resshift-tiny"), seed=5).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.unet.parameters():  # wake up the zero-initialised convs
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        m.autoencoder.quantize.embedding.weight.normal_(generator=g)
    return m


def export(module, inputs: tuple, path, names: list[str], dynamic: bool) -> list[str]:
    axes = {n: {0: "b", 2: "h", 3: "w"} for n in names + ["sr"]} if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=17, input_names=names,
                          output_names=["sr"], dynamic_axes=axes, do_constant_folding=True)
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def run(path, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feeds.items()})[0]


def test_static_tile_export_has_constant_masks(model, tmp_path):
    lr = torch.rand(1, 3, 16, 32)
    noise = model.make_noise(lr)
    model.fix_size((16, 32))
    try:
        ops = export(model, (lr, noise), tmp_path / "static.onnx", ["lr", "noise"], dynamic=False)
        with torch.no_grad():
            ref = model(lr, noise).numpy()
    finally:
        model.fix_size(None)
    assert "Range" not in ops  # the masks were folded into constants
    got = run(tmp_path / "static.onnx", {"lr": lr, "noise": noise})
    assert np.abs(got - ref).max() < 1e-4


def test_dynamic_export_runs_at_another_size(model, tmp_path):
    lr = torch.rand(1, 3, 16, 16)
    ops = export(model, (lr, model.make_noise(lr)), tmp_path / "dyn.onnx", ["lr", "noise"], dynamic=True)
    assert "Range" in ops  # the masks are computed from the input shape
    for shape in [(1, 3, 32, 48), (2, 3, 16, 32)]:
        lr2 = torch.rand(*shape)
        noise2 = model.make_noise(lr2, seed=1)
        with torch.no_grad():
            ref = model(lr2, noise2).numpy()
        got = run(tmp_path / "dyn.onnx", {"lr": lr2, "noise": noise2})
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


def test_denoiser_stage_exports_with_two_inputs(model, tmp_path):
    lr = torch.rand(1, 3, 16, 16)
    noise = model.make_noise(lr)
    stages = model.stage_modules()
    with torch.no_grad():
        cond = stages["encoder"](lr)
        ref = stages["denoiser"](cond, noise).numpy()
    export(stages["denoiser"], (cond, noise), tmp_path / "den.onnx", ["cond", "noise"], dynamic=True)
    lr2 = torch.rand(1, 3, 32, 16)
    noise2 = model.make_noise(lr2)
    with torch.no_grad():
        cond2 = stages["encoder"](lr2)
        ref2 = stages["denoiser"](cond2, noise2).numpy()
    assert np.abs(run(tmp_path / "den.onnx", {"cond": cond, "noise": noise}) - ref).max() < 1e-4
    assert np.abs(run(tmp_path / "den.onnx", {"cond": cond2, "noise": noise2}) - ref2).max() < 1e-4
