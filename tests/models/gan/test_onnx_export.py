"""Model-level export readiness: the real small SRVGG exports with the legacy exporter and runs in ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.gan.conftest import tiny_rrdbnet
from vpdsr.models.gan.convert import load_ncnn


def _export(model, path, size: int = 16):
    lr = torch.rand(1, 3, size, size)
    axes = {"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch", 2: "sr_height", 3: "sr_width"}}
    torch.onnx.export(model, (lr,), str(path), dynamo=False, opset_version=17, input_names=list(model.input_names),
                      output_names=["sr"], dynamic_axes=axes)
    return path


@pytest.mark.parametrize("which", ["animevideov3", "tiny-rrdbnet"])
def test_onnx_graph_equals_torch_at_several_sizes(tmp_path, which, request):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'vpdsr[onnx]')")
    if which == "animevideov3":
        model = load_ncnn(request.getfixturevalue("wheel_models") / "realesr-animevideov3-x4.param")
    else:
        model = tiny_rrdbnet()
    session = ort.InferenceSession(str(_export(model, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lr"]
    for b, h, w in [(1, 16, 16), (2, 9, 23)]:
        lr = np.random.default_rng(h).random((b, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(lr)).numpy()
        (got,) = session.run(["sr"], {"lr": lr})
        assert got.shape == (b, 3, 4 * h, 4 * w)
        assert np.abs(got - ref).max() < 1e-4
