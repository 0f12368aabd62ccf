"""The attainable-time model: per-layer FLOPs and tensor bytes from the torch graph, max(compute, memory) per layer."""
from __future__ import annotations

import pytest
import torch

from vpdsr.bench.layers import ELEMENT_BYTES, Layer, LayerCounter
from vpdsr.bench.roofline import attainable, limit_verdict
from vpdsr.runtimes.tiling import TileConfig, plan_tiles


class TwoConvs(torch.nn.Module):
    """conv 3->8 (3x3), ReLU, conv 8->48 (1x1), pixel shuffle x4: an SR network in miniature."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 48, 1)

    def forward(self, lr):
        return torch.nn.functional.pixel_shuffle(self.b(torch.relu(self.a(lr))), 4)


def test_layers_count_flops_and_the_elements_each_matrix_op_touches():
    layers = LayerCounter(TwoConvs(), noise_channels=0).layers(16, 20)
    assert [layer.op for layer in layers] == ["convolution", "convolution"]  # relu, pixel shuffle: fused, no layer
    hw = 16 * 20
    a, b = layers
    assert a.flops == 2 * 8 * hw * 3 * 9 and b.flops == 2 * 48 * hw * 8
    assert a.read == 3 * hw + 8 * 3 * 9 + 8 and a.written == 8 * hw  # input, weight, bias; output
    assert b.read == 8 * hw + 48 * 8 + 48 and b.written == 48 * hw
    assert a.bytes("int8") * ELEMENT_BYTES["fp32"] == a.bytes("fp32")


def test_a_batch_reads_the_weights_once():
    counter = LayerCounter(TwoConvs(), noise_channels=0)
    one, four = counter.layers(16, 16), counter.layers(16, 16, batch=4)
    assert four[0].flops == 4 * one[0].flops
    weights = 8 * 3 * 9 + 8
    assert four[0].read == 4 * (one[0].read - weights) + weights


def test_attainable_takes_the_larger_of_compute_and_memory_per_layer():
    # 1 GFLOP/s peak and 1 GB/s: a layer of 1e6 FLOP and 250 fp32 elements is compute-bound (1 ms vs 1 us);
    # one of 10 FLOP and 1e6 elements (4 MB) is memory-bound (4 ms)
    layers = [Layer("convolution", 10**6, 200, 50), Layer("mm", 10, 500_000, 500_000)]
    plan = plan_tiles(8, 8, TileConfig(tile=None, batch=1))
    r = attainable(plan, lambda h, w, b: layers, "fp32", 1.0, {"gbps": 1.0}, p50_ms=10.0, best_ms=5.0)
    assert r["attainable_ms"] == pytest.approx(1.0 + 4.0)
    assert r["compute_ms"] == pytest.approx(1.0 + 1e-5) and r["memory_ms"] == pytest.approx(1e-3 + 4.0)
    assert r["memory_bound_pct"] == pytest.approx(80.0)
    assert r["attainable_pct"] == pytest.approx(50.0) and r["attainable_pct_best"] == pytest.approx(100.0)
    int8 = attainable(plan, lambda h, w, b: layers, "int8", 1.0, {"gbps": 1.0}, p50_ms=10.0, best_ms=5.0)
    assert int8["attainable_ms"] == pytest.approx(1.0 + 1.0)  # a quarter of the bytes
    assert "near its limit" in limit_verdict(r) and "memory-bound" in limit_verdict(r)
    too_fast = {**r, "attainable_pct_best": 150.0}  # faster than the limit: the roofs were measured too low
    assert "below what this machine reaches now" in limit_verdict(too_fast)


def test_every_engine_call_of_the_plan_counts():
    plan = plan_tiles(40, 40, TileConfig(tile=16, overlap=4, batch=3))  # 4x4 = 16 tiles: calls of 3,3,3,3,3,1
    seen = []

    def layers(h, w, b):
        seen.append((h, w, b))
        return [Layer("convolution", 1000 * b, 0, 0)]

    r = attainable(plan, layers, "fp32", 1.0, {"gbps": 1.0}, p50_ms=1.0, best_ms=1.0)
    assert seen == [(16, 16, b) for b in plan.call_batches()]
    assert r["attainable_ms"] == pytest.approx(1e-3 * plan.tiles)


def test_no_bandwidth_or_no_layers_no_figure():
    plan = plan_tiles(8, 8, TileConfig(tile=None))
    assert attainable(plan, None, "fp32", 1.0, {"gbps": 1.0}, 1.0, 1.0)["attainable_ms"] is None
    assert attainable(plan, lambda *a: [], "fp32", 1.0, None, 1.0, 1.0)["attainable_ms"] is None
    assert limit_verdict({"attainable_pct_best": None}) is None


def test_the_shipped_tiny_model_is_traced_whole():
    from vpdsr.bench.flops import FlopCounter
    from vpdsr.models import from_pretrained

    model = from_pretrained("tiny")
    layers = LayerCounter(model).layers(64, 64)
    assert sum(layer.flops for layer in layers) == FlopCounter(model).flops(64, 64)  # the same graph, every FLOP
