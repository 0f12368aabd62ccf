"""A fake-quantized copy of any `SRModel` for quantization-aware training, with NNCF's quantizers.

Library: NNCF's PyTorch quantizers (`nncf.torch.quantization.layers.SymmetricQuantizer` /
`AsymmetricQuantizer`), placed with NNCF's function-hook API (`nncf.torch.function_hook`) and saved with
`nncf.torch.get_config` / `load_from_config`. Why NNCF and not ModelOpt's torch quantization: NNCF's
quantizers learn their ranges (the weight scale and the activation low/range are parameters with
gradients), it has asymmetric u8 activations (the format onnxruntime's x86 INT8 kernels run fast:
`vpdsr/runtimes/int8_formats.py`), and it is OpenVINO's own tool. ModelOpt 0.47 learns amax only for
NVFP4 weight blocks, keeps INT8 activation amax fixed, and quantizes activations symmetric s8 (TensorRT's
format), which onnxruntime's CPU provider runs no faster than fp32 (`modelopt-int8` in the README).

Where the quantizers go (the point of this module). `nncf.quantize` places quantizers where OpenVINO
wants them: at the inputs of the quantizable ops only. onnxruntime runs a convolution in INT8 only as
`QLinearConv`, fused from DequantizeLinear -> Conv -> QuantizeLinear, i.e. with the convolution's output
quantized too; a QDQ graph with NNCF's placement runs every convolution in float (measured on
realesr-animevideov3, one 64x64 tile, 1 thread: 231 ms, fp32 195, `ort-int8` 98). So the fake-quantized
model quantizes exactly the tensors `ort-int8`'s `quantize_static` quantizes: the activation inputs and
the output of every matrix op (Conv, Linear, MatMul) that the float policy (`vpdsr/export/float_policy.py`)
does not keep in float, each tensor once where it is produced (as onnxruntime inserts one Q/DQ pair per
tensor), weights per output channel symmetric in [-127, 127], activations per tensor in this CPU's fast
format. The same quantizers export to a QDQ ONNX for onnxruntime and to OpenVINO IR
(`vpdsr/export/qat_onnx.py`), so one trained model serves both targets.

Ranges start from the min/max over the calibration crops of the float model (onnxruntime's MinMax, the
statistic every `*-int8` target calibrates with), so an untrained copy exports to what `ort-int8` builds.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vpdsr.errors import InputError

log = logging.getLogger(__name__)
QAT_NAME = "qat.json"
WEIGHTS_NAME = "model.safetensors"
# the fake-quant ops' numerics: NNCF's pure-torch reference functions (see `use_reference_functions`)
FUNCTIONS = "nncf-reference"


@dataclass(frozen=True)
class QuantizedTensor:
    """One quantizer: an activation tensor (the output `port` of op `op`, or a graph input) or a weight.

    Attributes:
        op: NNCF graph node name of the producing op ("lr" for a graph input), or of the consuming op for a weight.
        port: output port (activation) or input port (weight).
        kind: "activation" or "weight".
        module: the module path of the weight (weights only).
    """

    op: str
    port: int
    kind: str
    module: str = ""


@dataclass
class QatScheme:
    """What the fake-quantized model simulates (saved in `qat.json`, checked again at export).

    Attributes:
        activations: "uint8" (asymmetric, x86) or "int8" (symmetric), from `ort_int8_format()` at prepare time.
        float_policy: the regexes (ONNX node-name prefixes) of the layers kept in float.
        tile: the LR tile the model is traced at (ops of a ResShift model depend on it), and the export's tile.
        quantizers: every quantizer placed.
        kept_float: matrix ops left in float (policy, or a weight that is not a constant), with the reason.
    """

    activations: str
    float_policy: list[str]
    tile: int
    quantizers: list[QuantizedTensor] = field(default_factory=list)
    kept_float: dict[str, str] = field(default_factory=dict)
    library: str = "nncf"
    functions: str = FUNCTIONS

    def to_dict(self) -> dict:
        return {**asdict(self), "quantizers": [asdict(q) for q in self.quantizers]}

    @classmethod
    def from_dict(cls, d: dict) -> QatScheme:
        d = dict(d)
        d["quantizers"] = [QuantizedTensor(**q) for q in d.get("quantizers", [])]
        return cls(**d)


def use_reference_functions() -> None:
    """Run NNCF's quantizers on its pure-torch reference functions, eagerly, instead of its C++ extension.

    NNCF compiles the extension with the system compiler on first use, into a cache folder shared by every
    process, behind a lock, and gives up after 60 s (seen here on a loaded 2-core machine); its fallback,
    the reference functions, are wrapped in `torch.compile`, which needs a compiler too and recompiles per
    tensor shape. The reference functions called eagerly need neither, compute the same values, and cost
    little beside the convolutions (`vpdsr.distill.quantize`'s docstring has the figure). Idempotent;
    called before any quantizer runs.
    """
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import torch_executor

    class EagerReference:
        Quantize_forward = staticmethod(torch_executor.forward)
        Quantize_backward = staticmethod(torch_executor.backward)

    # NNCF loads the extension lazily into this slot on first use; filled, it is never compiled
    extensions.QuantizedFunctionsCPU._loaded_namespace = EagerReference


def _matrix_metatypes() -> tuple:
    from nncf.torch.graph import operator_metatypes as om

    # the torch ops that export to Conv, Gemm or MatMul (`int8_formats.MATRIX_OPS`); ConvTranspose is not one
    return (om.PTConv1dMetatype, om.PTConv2dMetatype, om.PTConv3dMetatype, om.PTDepthwiseConv1dSubtype,
            om.PTDepthwiseConv2dSubtype, om.PTDepthwiseConv3dSubtype, om.PTLinearMetatype, om.PTMatMulMetatype)


def policy_modules(patterns: list[str]) -> list[str]:
    """The float policy's ONNX node-name prefixes as torch module paths ("^/denoiser/unet/conv_out/" ->
    "denoiser.unet.conv_out"; the exporter's "/body/body.0/" for a Sequential's child -> "body.0")."""
    out = []
    for p in patterns:
        parts = [s for s in p.lstrip("^").replace("\\", "").rstrip(".*").split("/") if s]
        merged: list[str] = []
        for s in parts:
            if merged and s.startswith(merged[-1] + "."):
                merged.pop()
            merged.append(s)
        out.append(".".join(merged))
    return out


def _in_policy(module: str, prefixes: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes if p)


def _scope(node_name: str) -> str:
    """'denoiser/unet/conv2d/3' -> 'denoiser.unet' (the module an op without a weight runs in)."""
    return ".".join(node_name.split("/")[:-2])


def plan(model: nn.Module, example: tuple, activations: str, patterns: list[str], tile: int) -> QatScheme:
    """Where the quantizers go (see the module docstring), from NNCF's graph of `model` on `example`."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.model_graph_manager import get_const_node, split_const_name

    graph = build_nncf_graph(model, example)
    matrix = _matrix_metatypes()
    prefixes = policy_modules(patterns)
    scheme = QatScheme(activations=activations, float_policy=list(patterns), tile=tile)
    seen: set[tuple[str, int]] = set()

    def activation(op: str, port: int) -> None:
        if (op, port) not in seen:
            seen.add((op, port))
            scheme.quantizers.append(QuantizedTensor(op, port, "activation"))

    for node in graph.topological_sort():
        if node.metatype.__name__ == "PTScaledDotProductAttentionMetatype":
            # its two matmuls and the softmax between them are one torch op: no hook point for the tensors
            # onnxruntime quantizes inside it (the scores, the probabilities), so it stays float
            scheme.kept_float[node.node_name] = "scaled_dot_product_attention (one op: no quantizer fits inside)"
            continue
        if node.metatype not in matrix:
            continue
        weight = _const_input(node, graph, get_const_node)
        module = split_const_name(weight.layer_attributes.name)[0] if weight is not None else _scope(node.node_name)
        if _in_policy(module, prefixes):
            scheme.kept_float[node.node_name] = f"float policy ({module})"
            continue
        edges = sorted(graph.get_input_edges(node), key=lambda e: e.input_port_id)
        if node.metatype.__name__ != "PTMatMulMetatype" and weight is None:
            scheme.kept_float[node.node_name] = f"its weight ({module}) is computed, not a constant"
            continue
        for e in edges:
            if e.input_port_id == 0 or (e.input_port_id == 1 and weight is None):
                activation(e.from_node.node_name, e.output_port_id)
        if weight is not None:
            scheme.quantizers.append(QuantizedTensor(node.node_name, 1, "weight", module))
        activation(node.node_name, 0)
    if not any(q.kind == "weight" for q in scheme.quantizers):
        raise InputError(f"{type(model).__name__}: no layer to quantize (every matrix op is kept in float)")
    return scheme


def _const_input(node, graph, get_const_node):
    """The constant behind input 1 (a weight), or None where that input is computed from activations."""
    import nncf

    try:
        return get_const_node(node, 1, graph)
    except nncf.InternalError:
        return None


class _MinMax(nn.Module):
    """A pass-through hook that records the min and max of what flows through it (range statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.lo, self.hi = float("inf"), float("-inf")

    def forward(self, x):
        self.lo = min(self.lo, float(x.detach().min()))
        self.hi = max(self.hi, float(x.detach().max()))
        return x


def _activation_quantizer(scheme: QatScheme, lo: float, hi: float):
    from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig
    from nncf.torch.quantization.layers import AsymmetricQuantizer, PTQuantizerSpec, SymmetricQuantizer

    asym = scheme.activations == "uint8"
    cfg = QuantizerConfig(num_bits=8, mode=QuantizationScheme.ASYMMETRIC if asym else QuantizationScheme.SYMMETRIC,
                          signedness_to_force=None if asym else True, per_channel=False)
    spec = PTQuantizerSpec.from_config(cfg, narrow_range=False, half_range=False, scale_shape=(1,),
                                       logarithm_scale=False, is_quantized_on_export=False)
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero is representable (onnxruntime's MinMax does the same)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    if asym:
        q = AsymmetricQuantizer(spec)
        q.input_low = nn.Parameter(torch.tensor([lo]))
        q.input_range = nn.Parameter(torch.tensor([hi - lo - q.eps]))
    else:
        q = SymmetricQuantizer(spec)
        q.signed = True
        q.scale = nn.Parameter(torch.tensor([max(-lo, hi) - q.eps]))
    return q


def _weight_quantizer(weight: torch.Tensor):
    from nncf.common.quantization.structs import QuantizationScheme, QuantizerConfig
    from nncf.torch.quantization.layers import PTQuantizerSpec, SymmetricQuantizer

    # per output channel (axis 0 for Conv and Linear weights), symmetric in [-127, 127] as onnxruntime's s8 weights
    shape = (weight.shape[0],) + (1,) * (weight.dim() - 1)
    cfg = QuantizerConfig(num_bits=8, mode=QuantizationScheme.SYMMETRIC, signedness_to_force=True, per_channel=True,
                          narrow_range=True)
    spec = PTQuantizerSpec.from_config(cfg, narrow_range=True, half_range=False, scale_shape=shape,
                                       logarithm_scale=False, is_quantized_on_export=False)
    q = SymmetricQuantizer(spec)
    q.signed = True
    absmax = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True).clamp_min(1e-8)
    q.scale = nn.Parameter(absmax.reshape(shape) - q.eps)
    return q


def insert(model: nn.Module, scheme: QatScheme, feeds: list[tuple] | None = None) -> nn.Module:
    """Wrap `model` (in place) with the quantizers of `scheme`; with `feeds` (calibration inputs), their ranges
    from the float model's min/max on them (without: placeholders, for `load` to fill from a state dict)."""
    from nncf.torch.function_hook import register_post_function_hook, register_pre_function_hook, wrap_model
    from nncf.torch.model_graph_manager import get_module_by_name

    use_reference_functions()
    model = wrap_model(model)
    acts = [q for q in scheme.quantizers if q.kind == "activation"]
    ranges = {q: (0.0, 1.0) for q in acts}
    if feeds:
        probes = {q: _MinMax() for q in acts}
        handles = [register_post_function_hook(model, q.op, q.port, p) for q, p in probes.items()]
        with torch.no_grad():
            for f in feeds:
                model(*f)
        for h in handles:
            h.remove()
        ranges = {q: (p.lo, p.hi) for q, p in probes.items()}
    for q in scheme.quantizers:
        if q.kind == "activation":
            register_post_function_hook(model, q.op, q.port, _activation_quantizer(scheme, *ranges[q]))
        else:
            weight = get_module_by_name(q.module, model).weight
            register_pre_function_hook(model, q.op, q.port, _weight_quantizer(weight))
    return model


def quantizers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(hook name, NNCF quantizer) of every quantizer in a fake-quantized model."""
    from nncf.torch.function_hook import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    return [(n, m) for n, m in get_hook_storage(model).named_hooks() if isinstance(m, BaseQuantizer)]


def hook_of(qat: nn.Module, q: QuantizedTensor) -> nn.Module:
    """The NNCF quantizer `insert` placed for `q`."""
    from nncf.torch.function_hook import get_hook_storage
    from nncf.torch.function_hook.hook_storage import HookStorage

    storage = get_hook_storage(qat)
    hooks = storage.pre_hooks if q.kind == "weight" else storage.post_hooks
    return hooks[HookStorage._generate_key(q.op, q.port)]["0"]


def prepare(model, feeds: list[dict], tile: int, activations: str | None = None) -> tuple[nn.Module, QatScheme]:
    """The fake-quantized copy of `model` (an `SRModel`, copied; the original stays float) and its scheme.

    Args:
        model: the float model (any family).
        feeds: calibration samples, dicts of numpy arrays keyed by `model.input_names` (`CalibrationSet.feeds()`).
        tile: the LR tile the samples have (and the INT8 artifacts will be exported at).
        activations: "uint8" or "int8"; default: this CPU's fast onnxruntime format (`ort_int8_format`).
    """
    import copy

    from vpdsr.export.float_policy import float_patterns
    from vpdsr.runtimes.int8_formats import ort_int8_format

    activations = activations or ort_int8_format().activations
    model = copy.deepcopy(model).float().eval()
    _trainable(model)  # a frozen teacher's copy would be frozen too
    set_form(model, tile)
    inputs = [tuple(torch.from_numpy(f[k]) for k in model.input_names) for f in feeds]
    scheme = plan(model, inputs[0], activations, list(float_patterns("int8", family=type(model).__name__)), tile)
    qat = insert(model, scheme, inputs)
    log.info(f"fake-quantized {type(model).__name__}: {sum(q.kind == 'weight' for q in scheme.quantizers)} layers "
             f"INT8, {len(scheme.kept_float)} kept in float, activations {activations}")
    return qat, scheme


def _trainable(model: nn.Module) -> nn.Module:
    """Every floating-point parameter trainable (NNCF's integer bookkeeping parameters cannot be)."""
    for p in model.parameters():
        p.requires_grad_(p.dtype.is_floating_point)
    return model


def set_form(model, tile: int) -> None:
    """The form the model is traced, trained and exported in: the deploy form (VPDSR's bicubic x4 as a
    convolution) and, for ResShift, shifted-window masks fixed to the tile. NNCF's hooks are keyed by op
    order, so the form never changes over the fake-quantized model's life."""
    if hasattr(model, "set_deploy_form"):
        model.set_deploy_form(True)
    if hasattr(model, "fix_size"):
        model.fix_size((tile, tile))


def base_model(qat: nn.Module):
    """The `SRModel` inside a fake-quantized model (NNCF wraps the same object)."""
    return qat


def save(qat: nn.Module, scheme: QatScheme, folder: str | Path, extra: dict | None = None) -> Path:
    """Write `config.json` (the float model's), `model.safetensors` (weights and quantizer parameters) and
    `qat.json` (scheme, NNCF's config) into `folder`, each to a temporary name first."""
    import nncf.torch
    from safetensors.torch import save_file

    from vpdsr.models.checkpoint import save_config
    from vpdsr.utils import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in qat.state_dict().items()}
    tmp = folder / f".{WEIGHTS_NAME}.tmp"
    save_file(state, str(tmp))
    tmp.replace(folder / WEIGHTS_NAME)
    save_config(qat.config, folder)
    record = {"scheme": scheme.to_dict(), "nncf_config": nncf.torch.get_config(qat), **(extra or {})}
    atomic_write_text(folder / QAT_NAME, json.dumps(record, indent=2, default=_json_default) + "\n")
    return folder


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def is_qat_folder(path: str | Path) -> bool:
    return (Path(path) / QAT_NAME).is_file()


def load(folder: str | Path) -> tuple[nn.Module, QatScheme, dict]:
    """A fake-quantized model saved by `save` (weights read with safetensors; NNCF modules only from `nncf.*`)."""
    import nncf.torch
    from safetensors.torch import load_file

    from vpdsr.errors import ArtifactError
    from vpdsr.models import build, load_config

    folder = Path(folder)
    try:
        record = json.loads((folder / QAT_NAME).read_text())
        scheme = QatScheme.from_dict(record["scheme"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{folder}: not a fake-quantized model folder ({QAT_NAME} unreadable: {e})") from None
    model = build(load_config(folder)).float().eval()
    set_form(model, scheme.tile)
    use_reference_functions()
    qat = nncf.torch.load_from_config(model, _nncf_config(record["nncf_config"]))
    state = load_file(str(folder / WEIGHTS_NAME))
    missing, unexpected = qat.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{folder / WEIGHTS_NAME}: does not match {QAT_NAME} (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    return _trainable(qat).eval(), scheme, record


def _nncf_config(cfg: dict) -> dict:
    """NNCF's config as JSON gave it back: scale shapes were tuples."""
    for command in cfg.get("compression_state", []):
        mc = command.get("module_config", {})
        if isinstance(mc.get("scale_shape"), list):
            mc["scale_shape"] = tuple(mc["scale_shape"])
    return cfg
