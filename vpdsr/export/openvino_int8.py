"""`openvino-int8`: NNCF INT8 of the OpenVINO IR, plain or within an accuracy budget.

Plain: `nncf.quantize` with the shared calibration set, the performance preset (symmetric) and an
ignored scope keeping the float policy's layers (`float_policy.KEEP_FLOAT["int8"]`) in float.
NNCF's own log and progress bars go to the run's log file.

`--int8-budget`: `nncf.quantize_with_accuracy_control` with our metric as its validation function
(against the cached torch fp32 outputs of the validation tiles, `mixed_precision.Int8Plan`). NNCF
measures a drop from the float model's own score, so the float IR is scored first (`m_fp32`, ~145
dB PSNR for f32 execution) and `max_drop = m_fp32 - budget` (a lower-is-better metric is negated).
Its cost is sized: the ranking runs on the validation tiles, one worker, at most
`MAX_ITERATIONS` layers reverted (unbounded, a tight budget took 275 s on 2 cores). The
layers it reverted are the quantized ops of the plain result that the final one no longer quantizes.

`--sensitivity`: the table of `search.py`, each configuration an `nncf.quantize` with the group added
to (or, for "only this group INT8", everything else in) the ignored scope.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from vpdsr.export.float_policy import float_patterns, matching
from vpdsr.export.targets import BuildContext, BuildResult, TargetSpec

log = logging.getLogger(__name__)
NNCF_IGNORED = float_patterns("int8", fullmatch=True)
MAX_ITERATIONS = 24
THREADS = 1  # latency figures: one thread, interleaved (the machine is shared)


def build_openvino_int8(ctx: BuildContext, spec: TargetSpec, folder: Path) -> BuildResult:
    import nncf  # noqa: F401  (imported before adopt: it installs its own handler)
    import openvino as ov

    from vpdsr.logs import adopt

    adopt("nncf")  # NNCF prints to stdout by itself: into the log file instead, under a CLI session
    precision = spec.options["inference_precision"]
    graphs, ignored, extra = {}, {}, {}
    feeds = ctx.calib_feeds()
    patterns = ctx.keep_float("int8", fullmatch=True)  # NNCF_IGNORED + the model family's own
    for name in ctx.names():
        model = ov.convert_model(str(ctx.fp32_graph(name)))
        names = [op.get_friendly_name() for op in model.get_ops()]
        ignored[name] = matching(names, ctx.keep_float("int8"))
        log.debug(f"openvino-int8: NNCF INT8 of {name!r} on {len(feeds[name])} samples "
                  f"({len(ignored[name])} ops ignored)")
        quantized = nncf_quantize(model, feeds[name], patterns=patterns)
        if ctx.int8 is not None:
            quantized, extra = _with_plan(ctx, spec, model, quantized, feeds[name], folder)
        ov.save_model(quantized, str(folder / f"{name}.xml"), compress_to_fp16=False)
        graphs[name] = f"{name}.xml"
    options = {"graphs": graphs, "inference_precision": precision, "device": "CPU", "nncf_preset": "performance",
               "ignored_patterns": list(patterns), "ignored_ops": ignored, **extra}
    return BuildResult(options=options)


def range_parameters():
    """NNCF's advanced parameters with activation ranges from the global min/max over the calibration set.

    NNCF's default averages each sample's min/max (MEAN_MINMAX): on a few calibration crops that clips the
    outliers of realesrgan-x4plus's residual trunk, 20.2 / 32.5 / 20.8 dB vs fp32 on the three held-out
    crops, against 28.2 / 30.0 / 33.2 with MINMAX (the statistic onnxruntime's MinMax calibrator and
    modelopt's max calibrator use, so every INT8 backend now calibrates alike).
    """
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)


def nncf_quantize(model, feeds: list[dict], extra_ignored: list[str] = (), patterns: tuple[str, ...] = NNCF_IGNORED):
    """Plain NNCF INT8 (performance preset, MINMAX ranges) with the float policy (`patterns`, + `extra_ignored`
    op names) ignored."""
    import nncf

    from vpdsr.logs import stdout_to_log

    scope = nncf.IgnoredScope(patterns=list(patterns), names=list(extra_ignored), validate=False)
    with stdout_to_log("nncf"):  # its rich progress bars
        return nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                             preset=nncf.QuantizationPreset.PERFORMANCE, ignored_scope=scope,
                             advanced_parameters=range_parameters())


def quantized_ops(model) -> list[str]:
    """Friendly names of the ops with a FakeQuantize on one of their inputs (what runs in INT8), in order."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("FakeQuantize", "Convert"):
            continue
        if any(_through_convert(i.get_source_output().get_node()).get_type_name() == "FakeQuantize"
               for i in op.inputs()):
            out.append(op.get_friendly_name())
    return out


def _through_convert(node):
    while node.get_type_name() == "Convert" and node.inputs():  # compressed weights: FQ -> Convert
        node = node.input(0).get_source_output().get_node()
    return node


def outputs(compiled, feeds: list[dict]) -> list:
    """`sr` of a compiled model on each feed, as HxWx3 arrays."""
    port = compiled.outputs[0]
    return [compiled(f)[port][0].transpose(1, 2, 0).copy() for f in feeds]


def compile_f32(model):
    """Compiled on CPU with f32 execution pinned (as the runner pins it for this target)."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS,
                                                  "PERFORMANCE_HINT": "LATENCY"})


def _with_plan(ctx: BuildContext, spec: TargetSpec, model, quantized, calib: list[dict], folder: Path):
    from vpdsr.export.mixed_precision import choose_kept

    patterns = ctx.keep_float("int8", fullmatch=True)
    plan = ctx.int8
    options: dict = {}
    if plan.options.sensitivity:
        candidates = quantized_ops(quantized)  # the policy's ops are ignored, hence not among them

        def run(kept: list[str]) -> list:
            return outputs(compile_f32(nncf_quantize(model, calib, kept, patterns)), plan.feeds)

        _, options = choose_kept(plan, spec.name, candidates, run, folder, search=False)
    if plan.budget is None:
        return quantized, options
    final, control = accuracy_control(model, quantized, calib, plan, spec.name, patterns)
    control["latency_ms"] = _latency({"fp32": model, "all_int8": quantized, "final": final}, plan.feeds[0])
    return final, {**options, "accuracy_control": control}


def accuracy_control(model, quantized, calib: list[dict], plan, label: str,
                     patterns: tuple[str, ...] = NNCF_IGNORED):
    """`nncf.quantize_with_accuracy_control` within `plan.budget`; returns (model, the entry's figures)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from vpdsr.export.search import BudgetUnreachable
    from vpdsr.logs import stdout_to_log

    budget = plan.budget
    sign = 1.0 if budget.higher_is_better else -1.0
    scorer = budget.scorer(plan.refs)
    calls = {"n": 0}

    def score_outputs(outs) -> tuple[float, list[float]]:
        values = [float(v) for v in scorer(outs)]
        return budget.aggregate(values), values

    def validation_fn(compiled, items) -> tuple[float, list[float]]:
        items = list(items)
        calls["n"] += 1
        outs = outputs(compiled, [f for _, f in items])
        per = [float(v) for v in budget.scorer([plan.refs[i] for i, _ in items])(outs)]
        return sign * budget.aggregate(per), [sign * v for v in per]

    started = time.perf_counter()
    m_fp32, _ = score_outputs(outputs(compile_f32(model), plan.feeds))
    m_int8, _ = score_outputs(outputs(compile_f32(quantized), plan.feeds))
    figures = {"method": "nncf.quantize_with_accuracy_control", "budget": str(budget), "metric_fp32": _r(m_fp32),
               "metric_all_int8": _r(m_int8), "max_iterations": MAX_ITERATIONS, "validation": plan.validation}
    if budget.holds(m_int8):
        log.info(f"{label}: all-INT8 {budget.metric} {m_int8:.4g} meets {budget}: nothing added")
        final, m_final = quantized, m_int8
    elif not budget.holds(m_fp32):
        raise BudgetUnreachable(f"budget {budget} unreachable: the float IR itself gives {m_fp32:.4g}")
    else:
        max_drop = sign * m_fp32 - sign * budget.value
        log.info(f"{label}: all-INT8 {budget.metric} {m_int8:.4g} misses {budget}: NNCF accuracy control "
                 f"(max drop {max_drop:.4g} from the float IR's {m_fp32:.4g}, at most {MAX_ITERATIONS} layers)")
        params = AdvancedAccuracyRestorerParameters(max_num_iterations=MAX_ITERATIONS, num_ranking_workers=1,
                                                    ranking_subset_size=len(plan.feeds))
        scope = nncf.IgnoredScope(patterns=list(patterns), validate=False)
        with stdout_to_log("nncf"):
            final = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(calib), nncf.Dataset(list(enumerate(plan.feeds)), lambda item: item[1]),
                validation_fn, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calib), ignored_scope=scope,
                advanced_quantization_parameters=range_parameters(), advanced_accuracy_restorer_parameters=params)
        m_final, _ = score_outputs(outputs(compile_f32(final), plan.feeds))
    before, after = quantized_ops(quantized), set(quantized_ops(final))
    figures.update({"holds": budget.holds(m_final), "metric_final": _r(m_final),
                    "kept_float_added": [n for n in before if n not in after], "evaluations": calls["n"],
                    "seconds": round(time.perf_counter() - started, 1)})
    if not figures["holds"]:
        raise BudgetUnreachable(f"budget {budget} not reached: NNCF accuracy control stopped at {m_final:.4g} "
                                f"after at most {MAX_ITERATIONS} layers reverted (all-INT8 {m_int8:.4g})")
    return final, figures


def _latency(models: dict, feed: dict) -> dict:
    from vpdsr.export.search import side_by_side_ms

    compiled = {k: compile_f32(m) for k, m in models.items()}
    ms = side_by_side_ms({k: (lambda c=c: c(feed)) for k, c in compiled.items()})
    return {**ms, "threads": THREADS}


def _r(v: float) -> float:
    return round(float(v), 4) if math.isfinite(v) else v
