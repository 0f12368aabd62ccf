"""Which layers stay in float: one table for every conversion, and the layer groups a budget search tries.

The table is keyed by the ONNX node-name prefix the exporter scopes a layer with (the legacy
exporter names a node by its module path, `/denoiser/unet/conv_out/Conv`; OpenVINO keeps those
names as friendly names after `convert_model`, so the same prefixes serve NNCF's ignored scope).
A prefix that matches nothing in a graph (another model family) is harmless. Every INT8 backend
(onnxruntime, modelopt, NNCF) starts from the same `int8` list; the budget search
(`vpdsr/export/search.py`) adds to it, and the entry records both apart.

Layer groups: the quantizable nodes of a graph grouped by module path, coarse first (one group per
top-level module), then the largest group split into its sub-modules until `max_groups` is reached.
Nodes at the top level (no module: the encoder's Resize, the final Clip) form groups of consecutive
nodes in graph order, so what runs before the network and what runs after it stay apart.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# prefix -> why it is kept in float (measured figures where we have them)
FLOAT_LAYERS = {
    "/decoder/conv_norm_out/": "the normalisation before the decoder's last convolution",
    "/decoder/conv_out/": "the autoencoder decoder's last convolution: it maps straight to pixels",
    "/quantize/": "the VQ codebook lookup: distances + ArgMin must pick the code fp32 picks",
    "/denoiser/unet/conv_out/": "the denoiser's output convolution: its residual reaches the image unattenuated",
    "/upsample/": "the encoder's bicubic x4 as a fixed convolution (vpdsr.models.upsample): it reads the 8-bit "
                  "LR image, whose 256 levels int8 would halve; as the Resize it replaced, float",
    "/Resize": "the encoder's bicubic x4 of the LR image (NNCF INT8 there: 17-29 dB on held-out photos, "
               "43 kept float); int8 also halves the 256 levels of an 8-bit input",
}
KEEP_FLOAT = {  # which of them each conversion keeps
    "fp16": ("/decoder/conv_norm_out/", "/decoder/conv_out/", "/quantize/"),
    # every INT8 backend: onnxruntime and modelopt Q/DQ, NNCF's ignored scope
    "int8": ("/decoder/conv_out/", "/quantize/", "/denoiser/unet/conv_out/", "/upsample/", "/Resize"),
}
# Layers of one family's graphs only (by the model's class name), on top of KEEP_FLOAT: names that
# other families' graphs also have (a top-level "/Add") must not change those families' artifacts.
FAMILY_FLOAT_LAYERS = {
    "SRVGGNetCompact": {
        "/body.0/": "SRVGG's first convolution: it reads the LR image itself (NNCF INT8 there and on the "
                    "last Add: 25.1 dB worst on realesr-animevideov3's held-out photos, both float: 35.2)",
        "/Add": "SRVGG's last Add: the nearest-upsampled LR image plus the network's residual, straight to pixels",
    },
    "ResShiftSR": {
        "/unet/out/": "the Swin-UNet's output layers (GroupNorm, SiLU, conv): x0 goes straight to the codebook "
                      "lookup, where a small error picks another code",
    },
}
FAMILY_KEEP_FLOAT = {
    "SRVGGNetCompact": {"int8": ("/body.0/", "/Add")},
    # the codebook lookup (/quantize/) and the VQ decoder's last conv are in KEEP_FLOAT already
    "ResShiftSR": {"int8": ("/unet/out/",)},
}
QUANTIZE_OPS = ("QuantizeLinear", "DequantizeLinear", "FakeQuantize", "FakeConvert")


def float_patterns(kind: str, fullmatch: bool = False, family: str | None = None) -> tuple[str, ...]:
    """Regexes of the layers `kind` keeps in float: prefix searches, or full matches (NNCF's ignored scope).

    Args:
        kind: fp16 or int8 (every INT8 backend).
        fullmatch: NNCF's ignored-scope form instead of prefix searches.
        family: the model's class name (`type(model).__name__`); adds that family's own entries.
    """
    prefixes = KEEP_FLOAT[kind] + FAMILY_KEEP_FLOAT.get(family or "", {}).get(kind, ())
    return tuple(re.escape(p) + ".*" if fullmatch else "^" + re.escape(p) for p in prefixes)


def matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names (in their order) that any regex in `patterns` finds."""
    rx = [re.compile(p) for p in patterns]
    return [n for n in names if any(r.search(n) for r in rx)]


@dataclass
class LayerGroup:
    """A set of quantizable nodes the budget search keeps in float or quantizes together.

    Attributes:
        name: the module path ("/denoiser/unet/down_blocks.0") or, for top-level nodes,
            "top-level: /first .. /last".
        nodes: node names, in graph order.
        macs: multiply-accumulates of its Conv/Gemm/MatMul nodes per sample (0 where unknown).
    """

    name: str
    nodes: list[str]
    macs: int = 0
    _scope: tuple = field(default=(), repr=False)


def scope_of(node_name: str) -> tuple[str, ...]:
    """'/denoiser/unet/conv_in/Conv' -> ('denoiser', 'unet', 'conv_in'); a top-level node -> ().

    OpenVINO's '/a/conv/Conv/WithoutBiases' (a Convolution split from its bias Add) is scoped as '/a/conv/Conv'.
    """
    if not node_name.startswith("/"):
        return ()
    parts = [p for p in node_name.split("/")[1:] if p]
    if len(parts) > 1 and parts[-1] == "WithoutBiases":
        parts = parts[:-1]
    return tuple(parts[:-1])


def layer_groups(nodes: Sequence[str], max_groups: int = 24, macs: dict[str, int] | None = None) -> list[LayerGroup]:
    """Group `nodes` (quantizable node names in graph order) by module path; see the module docstring.

    Returns the groups in graph order (of their first node). `max_groups` <= 0 gives one group per node.
    """
    macs = macs or {}
    if max_groups <= 0:
        return [LayerGroup(n, [n], macs.get(n, 0)) for n in nodes]
    order = {n: i for i, n in enumerate(nodes)}
    groups = _top_level_runs(nodes)
    scoped: dict[str, list[str]] = {}
    for n in nodes:
        s = scope_of(n)
        if s:
            scoped.setdefault(s[0], []).append(n)
    groups += [LayerGroup("/" + k, v, _scope=(k,)) for k, v in scoped.items()]
    while True:  # split the biggest group whose parts still fit in max_groups
        fitting = [(g, parts) for g in sorted(groups, key=lambda g: -len(g.nodes))
                   if 1 < len(parts := split_group(g)) <= max_groups - len(groups) + 1]
        if not fitting:
            break
        group, parts = fitting[0]
        groups.remove(group)
        groups += parts
    for g in groups:
        g.macs = sum(macs.get(n, 0) for n in g.nodes)
    return sorted(groups, key=lambda g: order[g.nodes[0]])


def _top_level_runs(nodes: Sequence[str]) -> list[LayerGroup]:
    runs, current = [], []
    for n in nodes:
        if scope_of(n):
            if current:
                runs.append(current)
            current = []
        else:
            current.append(n)
    if current:
        runs.append(current)
    return [LayerGroup(r[0] if len(r) == 1 else f"top-level: {r[0]} .. {r[-1]}", r) for r in runs]


def split_group(group: LayerGroup) -> list[LayerGroup]:
    """The next level of `group`'s module path: one group per child module, plus the group's own nodes."""
    if not group._scope:
        return [group]
    depth = len(group._scope)
    own, children = [], {}
    for n in group.nodes:
        s = scope_of(n)
        if len(s) > depth:
            children.setdefault(s[depth], []).append(n)
        else:
            own.append(n)
    parts = [LayerGroup("/" + "/".join((*group._scope, k)), v, _scope=(*group._scope, k))
             for k, v in children.items()]
    if own:
        parts.append(LayerGroup("/" + "/".join(group._scope) + " (own nodes)", own))
    if len(parts) == 1 and parts[0]._scope:  # a single child: descend without counting a split
        return split_group(parts[0])
    return parts


def quantized_nodes(path) -> list[str]:
    """Nodes of a Q/DQ ONNX graph that run on quantized data: a DequantizeLinear feeds one of their float inputs.

    Weight-only DQ feeds (per-channel weights) count too: the node is quantized either way.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    from_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in graph.node
            if n.op_type not in QUANTIZE_OPS and any(i in from_dq for i in n.input)]


def module_macs(model, feed: dict) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv/Linear module of `model` on `feed` (forward hooks).

    Keys are module paths ("denoiser.unet.conv_in"); a module called twice counts twice.
    """
    import math

    import torch

    out: dict[str, int] = {}

    def hook(name):
        def fn(module, args, result):
            per_out = module.weight[0].numel() if isinstance(module, torch.nn.modules.conv._ConvNd) \
                else module.in_features
            if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):  # each input element spreads
                out[name] = out.get(name, 0) + math.prod(args[0].shape[1:]) * module.weight[0].numel()
            else:
                out[name] = out.get(name, 0) + math.prod(result.shape[1:]) * per_out
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]
    try:
        with torch.no_grad():
            names = getattr(model, "input_names", tuple(feed))
            model(*[torch.from_numpy(feed[k][:1]) for k in names])
    finally:
        for h in handles:
            h.remove()
    return out


def node_macs(nodes: Iterable[str], macs_by_module: dict[str, int]) -> dict[str, int]:
    """MACs of the Conv/Gemm/MatMul nodes among `nodes`, from their module's figure (`module_macs`)."""
    found = {}
    for n in nodes:
        leaf = n.removesuffix("/WithoutBiases").rsplit("/", 1)[-1].split("_")[0]
        if leaf in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            m = macs_by_module.get(".".join(scope_of(n)))
            if m:
                found[n] = m
    return found
