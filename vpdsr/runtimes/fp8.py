"""FP8 (e4m3) linear layers through `torch._scaled_mm`, for GPUs with FP8 tensor cores (compute capability >= 8.9).

What it is, exactly: every `nn.Linear` whose in/out features are multiples of 16 (what the FP8
GEMM needs) is replaced by :class:`Fp8Linear`: the weight is stored in float8 e4m3 with one
per-tensor scale (amax / 448), the activation is scaled and cast per call (dynamic per-tensor
scaling, computed on the device: no host sync, so CUDA graphs can capture it), and the product
runs in `torch._scaled_mm` (cuBLASLt's FP8 GEMM on Ada/Hopper, accumulating in fp32) with a
bf16 output. Convolutions, which carry most of a UNet's FLOPs, stay in bf16: `torch._scaled_mm`
has no convolution, so this is FP8 where the model has matrix products (attention projections,
time-embedding MLPs), not FP8 throughout. `torch._scaled_mm` is a private torch API (torchao's
float8 path calls it too); it also runs on CPU, which is how the tests check the numerics here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
MIN_CAPABILITY = (8, 9)  # Ada (sm_89) and Hopper (sm_90) have FP8 tensor cores
_ALIGN = 16  # the FP8 GEMM needs K and N (and we pad M) to multiples of 16


def _scale(t: torch.Tensor) -> torch.Tensor:
    # per-tensor scale mapping the largest magnitude to the e4m3 maximum; clamped so zeros stay finite
    return (t.detach().abs().amax().float() / FP8_MAX).clamp(min=1e-12)


class Fp8Linear(nn.Module):
    """`y = x W^T + b` with `x` and `W` in float8 e4m3 (per-tensor scales), output in `out_dtype`.

    Args:
        linear: the layer to replace (its weight is quantized once, here).
        out_dtype: dtype of the result (bf16 on GPU; fp32 works too).
    """

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        w = linear.weight.detach().float()
        scale = _scale(w)
        self.in_features, self.out_features, self.out_dtype = linear.in_features, linear.out_features, out_dtype
        self.register_buffer("weight_fp8", (w / scale).to(FP8))  # [out, in], row-major
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().to(out_dtype)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        with torch.autocast(x.device.type, enabled=False):  # the casts here are the point: autocast must not redo them
            x2 = x.reshape(-1, self.in_features)
            rows = x2.shape[0]
            scale = _scale(x2)
            # mat1 must be row-major: a reshaped transposed activation can be a column-major view
            xq = (x2.float() / scale).to(FP8).contiguous()
            pad = (-rows) % _ALIGN
            if pad:
                xq = F.pad(xq.view(torch.uint8), (0, 0, 0, pad)).view(FP8)  # pad as bytes: F.pad has no fp8 kernel
            # mat2 must be column-major: the transposed view of the row-major [out, in] weight is
            y = torch._scaled_mm(xq, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale,
                                 out_dtype=self.out_dtype)[:rows]
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3, out={self.out_dtype}"


def convert_linear_to_fp8(model: nn.Module, out_dtype: torch.dtype = torch.bfloat16) -> dict:
    """Replace (in place) every eligible `nn.Linear` of `model` by an :class:`Fp8Linear`.

    Returns:
        {"converted": [names], "kept": {name: why}}: a layer whose features are not multiples of 16
        stays as it was.
    """
    converted, kept = [], {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is not nn.Linear:
                continue
            full = f"{name}.{child_name}" if name else child_name
            if child.in_features % _ALIGN or child.out_features % _ALIGN:
                kept[full] = f"features {child.in_features}->{child.out_features} not multiples of {_ALIGN}"
                continue
            setattr(module, child_name, Fp8Linear(child, out_dtype).to(child.weight.device))
            converted.append(full)
    return {"converted": converted, "kept": kept}


def fp8_supported(cc: tuple[int, int]) -> bool:
    """True where the GPU has FP8 tensor cores (compute capability >= 8.9)."""
    return tuple(cc) >= MIN_CAPABILITY
