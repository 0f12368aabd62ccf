"""Flag an INT8 backend that is slower than fp32 here, with the reason read from what the engine runs.

Each INT8 row is compared with the fp32 row of the same engine run the same way (onnxruntime's `onnx`,
OpenVINO's `openvino`; `onnx@untuned` for `ort-int8@untuned`; else the reference). When its p50
latency is higher, the row gets a flag whose reason comes from evidence, not from a guess:
- the CPU: no VNNI / AMX-INT8 (`avx512_vnni`, `avx_vnni`, `amx_int8`) means int8 dot products are
  AVX2 `vpmaddubsw` + `vpmaddwd`, little faster than fp32 FMA;
- onnxruntime (its optimised graph, :meth:`OnnxRuntimeRunner.kernel_summary`): how many matrix ops
  became int8 kernels (QLinearConv, MatMulIntegerToFloat) and how many stayed float behind a
  DequantizeLinear (Q/DQ placed on inputs only, TensorRT style, is not fused), how many Q/DQ nodes
  are left between float ops, and s8 activations where the measured peaks show s8 x s8 slower
  than u8 x s8 (onnxruntime's x86 kernels are u8 x s8);
- OpenVINO (its runtime model): how many convolutions run in f32 rather than u8/i8.
"""
from __future__ import annotations

from vpdsr import env
from vpdsr.bench.columns import measured

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def flag_int8_rows(rows: list[dict], peaks: dict | None = None, cpu_flags: set[str] | None = None) -> None:
    """Add a `flags` entry to every ok INT8 row slower than its engine's fp32 row (in place)."""
    flags = env.cpu_flags() if cpu_flags is None else cpu_flags
    ok = [r for r in rows if measured(r) and (r.get("latency_ms") or {}).get("p50")]
    for row in ok:
        if row.get("precision") != "int8":
            continue
        fp32 = next((r for r in ok if r.get("backend") == row.get("backend") and r.get("precision") == "fp32"
                     and _variant(r) == _variant(row)), None) \
            or next((r for r in ok if r.get("backend") == "torch" and r.get("precision") == "fp32"), None)
        if fp32 is None:
            continue
        ratio = row["latency_ms"]["p50"] / fp32["latency_ms"]["p50"]
        if ratio <= 1.0:
            continue
        reasons = int8_reasons(row.get("kernels"), peaks, flags)
        row.setdefault("flags", []).append({
            "flag": "int8-slower-than-fp32", "vs": fp32["name"], "ratio": round(ratio, 3),
            "reason": "; ".join(reasons) or "no cause found in the engine's graph or the CPU's features"})


def _variant(row: dict) -> str:
    """`@untuned`, `@cuda`...: an INT8 row is compared with the fp32 row run the same way."""
    return str(row.get("name", "")).partition("@")[2]


def int8_reasons(kernels: dict | None, peaks: dict | None, cpu_flags: set[str]) -> list[str]:
    """The causes the evidence shows, as short sentences."""
    out = []
    if not any(f in cpu_flags for f in VNNI_FLAGS):
        out.append("this CPU has no VNNI/AMX-INT8: int8 dot products run as AVX2 vpmaddubsw+vpmaddwd, "
                   "little faster than fp32 FMA")
    if not kernels:
        return out
    if kernels.get("engine") == "onnxruntime":
        int8, flt, qdq = kernels.get("int8_ops", 0), kernels.get("float_matrix_ops", 0), kernels.get("qdq_nodes", 0)
        if flt and flt >= int8:
            out.append(f"onnxruntime fused only {int8} matrix ops into int8 kernels and runs {flt} in float after "
                       f"DequantizeLinear (Q/DQ on inputs only, TensorRT style, is not fused on CPU)")
        if qdq > 2 * max(int8, 1):
            out.append(f"{qdq} QuantizeLinear/DequantizeLinear nodes are left between float ops "
                       "(elementwise ops quantized too): each is a full pass over a tensor")
        s8 = (kernels.get("activation_types") or {}).get("int8", 0)
        u8s8, s8s8 = _figure(peaks, "MatMulInteger u8s8"), _figure(peaks, "MatMulInteger s8s8")
        if s8 and u8s8 and s8s8 and s8s8 < 0.8 * u8s8:
            out.append(f"s8 activations: onnxruntime's x86 int8 kernels are u8 x s8 (MatMulInteger s8s8 "
                       f"{s8s8:.0f} vs u8s8 {u8s8:.0f} GOP/s measured here)")
    elif kernels.get("engine") == "openvino":
        layers = kernels.get("layers") or {}
        f32 = sum(n for k, n in layers.items() if k.startswith("Convolution") and k.endswith("f32"))
        low = sum(n for k, n in layers.items() if k.startswith("Convolution") and not k.endswith("f32"))
        if f32 > low:
            out.append(f"OpenVINO runs {f32} of {f32 + low} convolutions in f32 (their FakeQuantize was not fused)")
    return out


def _figure(peaks: dict | None, op: str) -> float | None:
    for f in (peaks or {}).get("figures") or []:
        if f.get("op") == op and f.get("gflops"):
            return f["gflops"]
    return None


def collect_kernels(runner) -> dict | None:
    """The runner's `kernel_summary()` (the stages' merged for a split artifact); None where it has none."""
    parts = list(getattr(runner, "stages", {}).values()) or [runner]
    summaries = [p.kernel_summary() for p in parts if hasattr(p, "kernel_summary")]
    if not summaries:
        return None
    merged: dict = {"engine": summaries[0]["engine"]}
    for s in summaries:
        for key, value in s.items():
            if isinstance(value, int):
                merged[key] = merged.get(key, 0) + value
            elif isinstance(value, dict):
                into = merged.setdefault(key, {})
                for k, n in value.items():
                    into[k] = into.get(k, 0) + n
    return merged
