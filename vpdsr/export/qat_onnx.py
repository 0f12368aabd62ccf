"""A fake-quantized model (`vpdsr/export/qat_model.py`) as a QDQ ONNX graph that runs at INT8 speed.

NNCF exports each quantizer as a QuantizeLinear/DequantizeLinear pair with its learned scale and zero
point (`QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS`); weights come out as float initializers
behind their own Q/DQ pair. onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into
`QLinearConv` only when the weight is an int8 constant (and the bias an int32 one), as
`quantize_static` writes them, so `fold_weights` does what onnxruntime's quantizer does to a weight:
quantize it once with the learned scale (the same values the fake-quant op computed in training:
clipped to the learned range, rounded, in [-127, 127]) and quantize the bias to int32 with scale
activation scale x weight scale. The result has the node layout of `ort-int8`'s graph, and OpenVINO
converts the same file into IR with FakeQuantize / int8 weights (`openvino-int8`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def export_qdq(qat, scheme, path: Path, dynamic: bool = False) -> Path:
    """The fused graph `model.input_names -> sr` of the fake-quantized model, weights folded (see above)."""
    import onnx
    import torch
    from nncf.torch.quantization.layers import QuantizerExportMode

    from vpdsr.export.onnx_graph import FUSED, export_graph, save_onnx
    from vpdsr.export.qat_model import hook_of, quantizers, set_form

    for _, q in quantizers(qat):
        q.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    raw = path.with_name(path.stem + ".unfolded.onnx")
    params = dict(qat.named_parameters())
    saved = {}
    try:
        with torch.no_grad():  # each weight as its fake-quantized values, so folding rounds nothing anew
            for q in scheme.quantizers:
                if q.kind == "weight":
                    w = params[q.module + ".weight"]
                    saved[q.module] = w.detach().clone()
                    w.copy_(hook_of(qat, q)(w))
        export_graph(qat, FUSED, raw, scheme.tile, dynamic)
    finally:
        with torch.no_grad():
            for module, value in saved.items():
                params[module + ".weight"].copy_(value)
        for _, q in quantizers(qat):
            q.set_export_mode(QuantizerExportMode.FAKE_QUANTIZE)
        set_form(qat, scheme.tile)  # export_graph puts the trained form back; the fake-quantized model keeps its own
    model = fold_weights(onnx.load(str(raw)))
    raw.unlink()
    return save_onnx(model, path)


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def fold_weights(model):
    """Quantize constant weights behind QuantizeLinear into int8 initializers and biases into int32 (in place)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = _constants(graph)
    inits = {i.name for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in graph.node for o in n.output}
    dropped, folded = set(), 0
    for n in list(graph.node):
        if n.op_type != "QuantizeLinear" or n.input[0] not in inits:
            continue
        w, scale, zp = values[n.input[0]], values[n.input[1]], values[n.input[2]]
        if zp.dtype != np.int8 or np.any(zp != 0):
            # an activation quantizer on a tensor the exporter folded into a constant (a ResShift model's
            # timestep embedding at its one step): not a weight; onnxruntime folds its Q/DQ pair as it is
            continue
        shape = [1] * w.ndim
        if scale.ndim:
            shape[_axis(n)] = -1
        # the weight holds its fake-quantized values already (`export_qdq`): integers times the scale
        q = np.clip(np.rint(w.astype(np.float32) / scale.reshape(shape)), -127, 127).astype(np.int8)
        name = n.input[0] + "_quantized"
        graph.initializer.append(numpy_helper.from_array(q, name))
        for d in consumers.get(n.output[0], []):
            d.input[0] = name
        dropped.add(id(n))
        folded += 1
    for n in list(graph.node):  # int32 bias for Conv/Gemm whose input and weight are both dequantized
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3 or n.input[2] not in inits:
            continue
        dq_x, dq_w = producer.get(n.input[0]), producer.get(n.input[1])
        if not (dq_x is not None and dq_w is not None and dq_x.op_type == dq_w.op_type == "DequantizeLinear"):
            continue
        if n.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in n.attribute):
            continue
        x_scale, w_scale = values[dq_x.input[1]], values[dq_w.input[1]]
        bias = values[n.input[2]].astype(np.float32)
        b_scale = (np.float32(x_scale) * w_scale.astype(np.float32)).reshape(-1)
        b_scale = np.broadcast_to(b_scale, bias.shape).astype(np.float32)
        qb = np.clip(np.rint(bias / b_scale), -2**31, 2**31 - 1).astype(np.int32)
        base = n.input[2]
        zero = np.zeros(bias.shape, np.int32)
        graph.initializer.extend([numpy_helper.from_array(qb, base + "_quantized"),
                                  numpy_helper.from_array(b_scale.copy(), base + "_quantized_scale"),
                                  numpy_helper.from_array(zero, base + "_quantized_zero_point")])
        out = base + "_dequantized"
        graph.node.append(helper.make_node("DequantizeLinear", [base + "_quantized", base + "_quantized_scale",
                                                                base + "_quantized_zero_point"], [out],
                                           name=base + "_DequantizeLinear", axis=0))
        n.input[2] = out
    _own_parameters(graph, values)
    _pads_before_quantize(graph)
    keep = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(_topological(keep, [i.name for i in graph.input] + [i.name for i in graph.initializer]))
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(n)
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    log.debug(f"folded {folded} weight quantizers into int8 initializers")
    return model


def _own_parameters(graph, values: dict) -> None:
    """Every Q/DQ node gets its own scale and zero-point initializers (as `quantize_static` writes them).

    The exporter shares one Constant between quantizers with equal values (the all-zero zero points of
    every 32-channel weight); OpenVINO then keeps an explicit Subtract of the shared zero point in each
    weight's dequantization and runs every convolution in f32 (tiny student: 98 ms, like fp32).
    """
    from onnx import numpy_helper

    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k in (1, 2):
            if k < len(n.input) and n.input[k] in values and not n.input[k].startswith(n.name + "/"):
                name = f"{n.name}/{'scale' if k == 1 else 'zero_point'}"
                graph.initializer.append(numpy_helper.from_array(np.array(values[n.input[k]]), name))
                n.input[k] = name


# ops that commute with a per-tensor quantizer: they only move or copy values (and pad with zeros or edges)
_MOVERS = ("Pad",)


def _pads_before_quantize(graph) -> None:
    """DequantizeLinear -> Pad -> Conv becomes Pad -> QuantizeLinear -> DequantizeLinear -> Conv.

    A VPDSR denoiser pads its input under tracing (with zeros at a tile size already a multiple); the
    quantizer sits before the pad in the trained graph. Padding by zeros or by copying edge values commutes
    with quantization (zero is exactly representable), so moving the pair after it changes no value and
    lets onnxruntime fuse the convolution (`quantize_static` quantizes the Pad's output the same way).
    """
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    for pad in [n for n in graph.node if n.op_type in _MOVERS]:
        dq = producer.get(pad.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        if mode == "constant" and len(pad.input) > 2 and pad.input[2]:
            continue  # a non-zero constant value need not be representable
        if len(consumers.get(dq.output[0], [])) != 1 or dq.output[0] in outputs:
            continue  # the dequantized tensor is read elsewhere too: keep it
        x, padded = q.input[0], pad.output[0]
        pad.input[0], pad.output[0] = x, padded + "_float"
        q.input[0] = padded + "_float"
        for c in consumers.get(padded, []):
            for k, i in enumerate(c.input):
                if i == padded:
                    c.input[k] = dq.output[0]


def _topological(nodes: list, available: list[str]) -> list:
    """Nodes in an order where every input is produced first (the bias DequantizeLinear nodes were appended)."""
    have, out, pending = set(available) | {""}, [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                out.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    return out
