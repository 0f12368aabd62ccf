"""`onnx-fp16`: fp16 graphs with precision-sensitive ops kept in fp32, checked stage by stage.

Each stage graph (encoder, denoiser, decoder) is converted with onnxconverter-common
(`keep_io_types=True`, so stages exchange fp32 and can be mixed). Kept in fp32: normalisations
(GroupNorm exports as InstanceNormalization; its variance overflows fp16 on large activations),
Softmax/Exp/Pow/Sqrt/ReduceMean (attention and norm statistics), the VQ codebook lookup
(distances + ArgMin pick a code: a flipped pick is a visible error), the timestep embedding
(Sin/Cos), and the autoencoder decoder's
last layers (straight to pixels). `benchmarks/fp16_sensitivity.py` measures what each choice costs.

Then the fallback: the chain runs on the calibration images with one stage in fp16 and the
others in fp32 (a family without stages, GANSR, is one graph, checked as a whole); a stage whose
output has NaN/Inf or falls below the quality floor is kept in fp32, and the entry's options say
which and why. A fused artifact is the chosen stage graphs
merged back into one graph (`onnx.compose`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from vpdsr.artifacts import FUSED, STAGES
from vpdsr.export.onnx_graph import OPSET, save_onnx
from vpdsr.export.onnx_targets import matching_nodes
from vpdsr.export.targets import BuildContext, BuildResult, TargetSpec, float_patterns
from vpdsr.export.validation import compare

log = logging.getLogger(__name__)

FP32_OPS = ("InstanceNormalization", "GroupNormalization", "LayerNormalization", "Softmax", "Exp", "Pow", "Sqrt",
            "ReduceMean", "ArgMin", "Sin", "Cos")
FP32_NODES = float_patterns("fp16")
CHECK_SAMPLES = 4  # calibration images the per-stage check runs on


def convert_fp16(src: Path, dst: Path, fp32_ops=FP32_OPS, fp32_nodes=FP32_NODES) -> Path:
    """fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs; `fp32_ops` types and `fp32_nodes` regexes stay fp32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    blocked_nodes = matching_nodes(src, fp32_nodes)
    half = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False,
                                            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(fp32_ops),
                                            node_block_list=blocked_nodes)
    _fix_casts(half.graph)
    return save_onnx(half, dst)


def _fix_casts(graph) -> None:
    """The converter retypes a Cast's output to fp16 but keeps its `to=float`: make them agree.

    (Blocking Cast instead makes the converter loop forever, inserting casts around its own casts.)
    """
    from onnx import TensorProto

    half = {v.name for v in list(graph.value_info) + list(graph.output)
            if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in half:
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16


def merge_stages(paths: list[Path], dst: Path) -> Path:
    """Chain stage graphs (encoder -> denoiser -> decoder) into one graph; IO names are kept."""
    import onnx
    from onnx import compose

    models = []
    for i, p in enumerate(paths):
        m = onnx.load(str(p))
        # Each stage's inferred shapes name unknown dims "unk__N" independently: merged, equal names
        # would claim equal sizes. The types are settled by now; onnxruntime re-infers the shapes.
        del m.graph.value_info[:]
        models.append(compose.add_prefix(m, f"s{i}_", rename_inputs=False, rename_outputs=False))
    merged = models[0]
    for nxt in models[1:]:
        outs = {o.name for o in merged.graph.output}
        io_map = [(i.name, i.name) for i in nxt.graph.input if i.name in outs]
        merged = compose.merge_models(merged, nxt, io_map=io_map)
        # the intermediate output consumed by the next stage is no longer a graph output
        keep = [o for o in merged.graph.output if o.name not in {a for a, _ in io_map}]
        del merged.graph.output[:]
        merged.graph.output.extend(keep)
    return save_onnx(merged, dst)


def _chain_outputs(paths: dict[str, Path], feeds: list[dict]) -> list:
    """`sr` of the stage graphs chained (or of the one fused graph) on the onnxruntime runner, as (H, W, 3) images."""
    from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner
    from vpdsr.runtimes.staged import StagedRunner

    runner = (OnnxRuntimeRunner(paths[FUSED], name=FUSED) if FUSED in paths
              else StagedRunner(*(OnnxRuntimeRunner(paths[s], name=s) for s in STAGES)))
    with runner as chain:
        return [chain.infer(f)["sr"][0].transpose(1, 2, 0) for f in feeds]


def build_onnx_fp16(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    # A family without stages (GANSR) is one graph: converted and checked as a whole.
    parts = STAGES if ctx.model.stage_modules() is not None else (FUSED,)
    fp32 = {s: ctx.fp32_graph(s) for s in parts}
    fp32_nodes = ctx.keep_float("fp16")  # FP32_NODES + the model family's own
    half = {s: convert_fp16(fp32[s], ctx.work / "fp16" / f"{s}.onnx", fp32_nodes=fp32_nodes) for s in parts}
    feeds = ctx.calib.feeds()[:CHECK_SAMPLES]
    ref = _chain_outputs(fp32, feeds)
    chosen, checks, kept = {}, {}, {}
    for stage in parts:
        check = compare(_chain_outputs({**fp32, stage: half[stage]}, feeds), ref, spec.floor_db)
        checks[stage] = {k: check[k] for k in ("psnr_db", "finite", "passed")}
        if check["passed"]:
            chosen[stage] = half[stage]
        else:
            chosen[stage] = fp32[stage]
            kept[stage] = "NaN/Inf in fp16" if not check["finite"] else \
                f"{check['psnr_db']} dB < {spec.floor_db} dB floor in fp16"
            log.debug(f"onnx-fp16: {stage} kept in fp32 ({kept[stage]})")
    if ctx.stages == "fused" and parts != (FUSED,):
        merge_stages([chosen[s] for s in STAGES], folder / f"{FUSED}.onnx")
        graphs = {FUSED: f"{FUSED}.onnx"}
    else:
        graphs = {}
        for s in parts:
            save_onnx(_load(chosen[s]), folder / f"{s}.onnx")
            graphs[s] = f"{s}.onnx"
    options = {"graphs": graphs, "opset": OPSET, "fp16_stages": [s for s in parts if s not in kept],
               "fp32_stages": kept, "stage_checks": checks, "fp32_ops": list(FP32_OPS),
               "fp32_node_patterns": list(fp32_nodes), "check_samples": len(feeds)}
    return BuildResult(options=options)


def _load(path: Path):
    import onnx

    return onnx.load(str(path))
