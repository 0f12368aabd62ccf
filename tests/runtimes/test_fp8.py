"""FP8 linear layers: the numerics of `torch._scaled_mm` e4m3 with per-tensor scales, checked on CPU
(torch runs `_scaled_mm` there too); the GPU path is in test_torch_gpu_path.py."""
from __future__ import annotations

import torch
from torch import nn

from vpdsr.runtimes.fp8 import FP8, Fp8Linear, convert_linear_to_fp8, fp8_supported


def _rel_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()) ** 2).mean() / (b.float() ** 2).mean())


def test_fp8_linear_is_close_to_fp32_and_keeps_shapes_and_dtype():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(2, 37, 64)  # 74 rows: padded to 80 inside, cut back
    layer = Fp8Linear(linear, out_dtype=torch.float32)
    assert layer.weight_fp8.dtype == FP8 and layer.weight_fp8.shape == (48, 64)
    with torch.no_grad():
        y, ref = layer(x), linear(x)
    assert y.shape == ref.shape and y.dtype == x.dtype
    # e4m3 keeps 3 mantissa bits: ~2^-4 relative rounding per operand, ~1e-3 relative MSE after the dot product
    assert _rel_mse(y, ref) < 5e-3
    assert _rel_mse(y, ref) > 1e-6  # it really is quantized, not a float matmul in disguise


def test_fp8_linear_handles_zero_input_and_no_bias():
    layer = Fp8Linear(nn.Linear(32, 16, bias=False), out_dtype=torch.float32)
    assert torch.equal(layer(torch.zeros(3, 32)), torch.zeros(3, 16))


def test_convert_replaces_eligible_linears_only():
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Sequential(nn.Linear(64, 10)), nn.Linear(10, 16))
    x = torch.randn(5, 32)
    with torch.no_grad():
        ref = model(x)
        info = convert_linear_to_fp8(model, out_dtype=torch.float32)
        y = model(x)
    assert info["converted"] == ["0"] and set(info["kept"]) == {"2.0", "3"}
    assert "not multiples of 16" in info["kept"]["3"]
    assert isinstance(model[0], Fp8Linear) and type(model[3]) is nn.Linear
    assert _rel_mse(y, ref) < 5e-3


def test_fp8_needs_ada_or_hopper():
    assert not fp8_supported((8, 6)) and not fp8_supported((7, 5))
    assert fp8_supported((8, 9)) and fp8_supported((9, 0)) and fp8_supported((10, 0))


def test_fp8_linear_takes_a_transposed_activation_and_ignores_autocast():
    torch.manual_seed(1)
    linear = nn.Linear(32, 16)
    layer = Fp8Linear(linear, out_dtype=torch.float32)
    x = torch.randn(1, 32, 24).transpose(1, 2)  # [1, 24, 32] with column-major strides, as attention hands it over
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    with torch.no_grad():
        ref = linear(x)
    assert y.shape == (1, 24, 16) and _rel_mse(y, ref) < 5e-3
