"""`load(...)`: from an exported artifact (or a model) to the Runner that runs it.

Accepted sources:
- an artifact folder (holding `artifact.json`), or a file inside one;
- an export output folder (holding `manifest.json`) plus `target=NAME`, or with exactly one
  artifact of the asked backend;
- an `ArtifactEntry` together with its folder: `load(entry, folder)`;
- a model directory or preset name, run by the torch runner: `load("tiny", backend="torch")`.

Loading verifies every file's sha256 against the entry, so an artifact changed after export is
refused in one line; the execution precision recorded by the export is passed on (OpenVINO
always pins it).
"""
from __future__ import annotations

from pathlib import Path

from vpdsr.artifacts import (
    ENTRY_NAME,
    MANIFEST_NAME,
    STAGES,
    ArtifactEntry,
    Manifest,
    entry_engine_metadata,
    graph_names,
    read_entry,
)
from vpdsr.errors import ArtifactError, ConfigError
from vpdsr.runtimes.base import Runner
from vpdsr.runtimes.common import canonical_precision

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
# file types each backend reads; OpenVINO also reads ONNX directly
MODEL_SUFFIXES = {"onnxruntime": (".onnx",), "openvino": (".xml", ".onnx"), "tensorrt": (".engine", ".plan")}


def load(source, folder: str | Path | None = None, backend: str | None = None, allow_failed: bool = False,
         **options) -> Runner:
    """Build the Runner for an artifact (not activated: use `with runner:` or `runner.activate()`).

    Args:
        source: artifact folder / file, export folder, ArtifactEntry, model directory or preset name.
        folder: the artifact's folder when `source` is an ArtifactEntry.
        backend: run with this backend (default: the artifact's own; "torch" for a model or preset).
            An ONNX artifact can also be run by "openvino".
        allow_failed: also load a failed artifact that `vpdsr export --keep-failed` kept (below its
            validation floor: to time it, as `vpdsr bench` does); any other failed one is still refused.
        **options: passed to the runner (e.g. providers=, threads= for onnxruntime; precision=,
            performance_hint=, streams= for openvino; precision= for torch). `device=` is mapped per
            backend ("cuda:N": onnxruntime's CUDA provider on GPU N, the TensorRT GPU; OpenVINO device
            names as they are). `target=` picks an artifact of an export folder.

    Raises:
        ArtifactError: not an artifact, a file missing or changed after export (sha256 mismatch), a
            backend that cannot run it, or a TensorRT engine built for another TensorRT/GPU.

    Example:
        >>> with load("artifacts/openvino-bf16") as runner:
        ...     sr = runner.infer({"lr": lr, "noise": noise})["sr"]
    """
    if backend is not None and backend not in BACKENDS:
        raise ArtifactError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if isinstance(source, ArtifactEntry):
        if folder is None:
            raise ConfigError("load(entry, folder): an ArtifactEntry needs the folder that holds its files")
        return _from_entry(source, Path(folder), backend, options, allow_failed)
    path = Path(source)
    if path.is_file() and (path.parent / ENTRY_NAME).is_file():
        path = path.parent  # a model file inside an artifact folder
    if (path / ENTRY_NAME).is_file():
        return _from_entry(read_entry(path), path, backend, options, allow_failed)
    if (path / MANIFEST_NAME).is_file():
        return _from_manifest(path, backend, options, allow_failed)
    if backend in (None, "torch"):
        from vpdsr.runtimes.torch_runner import TorchRunner

        _no_artifact_options(options)
        return TorchRunner.from_pretrained(str(source), **options)
    raise ArtifactError(f"{source}: not an artifact folder (no {ENTRY_NAME}) nor an export folder "
                        f"(no {MANIFEST_NAME}); run `vpdsr export` first")


def _no_artifact_options(options: dict) -> None:
    if "target" in options:
        raise ConfigError("`target` picks an artifact of an export folder; a model or preset has none")


def _from_manifest(directory: Path, backend: str | None, options: dict, allow_failed: bool) -> Runner:
    manifest = Manifest.read(directory)
    target = options.pop("target", None)
    if target is not None:
        entry = manifest.entry(target)
    else:
        ok = [a for a in manifest.artifacts if a.status == "ok" and (backend is None or a.backend == backend)]
        if len(ok) != 1:
            names = [a.name for a in manifest.artifacts if a.status == "ok"]
            raise ArtifactError(f"{directory}: {len(ok)} artifacts match backend {backend!r}; pick one with "
                                f"`target=` or pass its folder (artifacts: {', '.join(names) or 'none'})")
        entry = ok[0]
    return _from_entry(entry, directory / entry.name, backend, options, allow_failed)


def _from_entry(entry: ArtifactEntry, folder: Path, backend: str | None, options: dict,
                allow_failed: bool = False) -> Runner:
    entry.verify(folder, allow_failed)  # one-line ArtifactError for a missing file or a sha256 mismatch
    backend = backend or entry.backend
    if entry.backend not in MODEL_SUFFIXES:
        raise ArtifactError(f"{folder / ENTRY_NAME}: unknown backend {entry.backend!r} "
                            f"(this vpdsr runs {', '.join(MODEL_SUFFIXES)})")
    if backend not in MODEL_SUFFIXES:
        raise ArtifactError(f"{folder}: a {entry.backend} artifact cannot run with backend {backend!r}")
    # The runner's name says which backend runs the artifact when it is not the artifact's own.
    label = entry.name if backend == entry.backend else f"{entry.name}@{backend}"
    files = _graph_files(entry, folder, backend)
    if entry.stages == "split":
        from vpdsr.runtimes.staged import StagedRunner

        stage_precisions = entry.options.get("stage_precisions", {})
        runners = [_runner(backend, entry, files[s], dict(options), stage_precisions.get(s), f"{label}/{s}")
                   for s in STAGES]
        runner = StagedRunner(*runners, name=label)
    else:
        runner = _runner(backend, entry, files["model"], dict(options), None, label)
    runner.entry, runner.artifact_dir = entry, folder
    # The model's scale and size rule, as the export recorded them: tiling keeps to them (dynamic graphs too).
    runner.scale, runner.size_multiple = (_positive_option(entry, folder, k) for k in ("scale", "size_multiple"))
    return runner


def _positive_option(entry: ArtifactEntry, folder: Path, key: str) -> int:
    """`options[key]` as a positive int (4 for `scale`, 1 for `size_multiple` when an older entry lacks it)."""
    value = entry.options.get(key, {"scale": 4, "size_multiple": 1}[key])
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArtifactError(f"{folder / ENTRY_NAME}: options.{key} must be a positive integer, got {value!r}")
    return value


def _runner(backend: str, entry: ArtifactEntry, path: Path, options: dict, stage_precision: str | None,
            name: str) -> Runner:
    options.setdefault("name", name)
    device = options.pop("device", None)
    if backend in ("onnxruntime", "tensorrt") and options.get("precision") not in (None, entry.precision):
        raise ConfigError(f"{name}: a {backend} artifact's precision is fixed at export ({entry.precision}); "
                          "`precision` can be chosen for openvino and torch only")
    if backend == "onnxruntime":
        from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner

        if device and device.startswith("cuda"):  # cuda[:N] -> the CUDA (or TensorRT) provider on GPU N
            from vpdsr.runtimes.cuda import cuda_index

            index = cuda_index(device)
            options.setdefault("providers", "cuda")
            options.setdefault("provider_options", {"cuda": {"device_id": index}, "tensorrt": {"device_id": index}})
        options.setdefault("precision", entry.precision)
        options.setdefault("trt_tile", entry.tile or 64)  # the TensorRT EP's profile (64: the export default tile)
        return OnnxRuntimeRunner(path, **options)
    if backend == "openvino":
        from vpdsr.runtimes.openvino_runner import OpenVINORunner

        if device:
            options["device"] = device.upper()
        options.setdefault("precision", stage_precision or execution_precision(entry))
        return OpenVINORunner(path, **options)
    device = device or entry.options.get("device")  # default: the GPU the export built the engine on
    if device and not device.startswith("cuda"):
        raise ArtifactError(f"{path}: TensorRT engines run on CUDA devices only, not {device!r}")
    if device:
        options["device"] = device
    from vpdsr.runtimes.tensorrt_runner import TensorRTRunner

    meta = entry_engine_metadata(entry, path)
    _check_engine_early(meta, path, device or "cuda")
    options.setdefault("precision", entry.precision)
    return TensorRTRunner(path, metadata=meta, **options)


def execution_precision(entry: ArtifactEntry) -> str:
    """The precision OpenVINO must execute the artifact's non-quantized ops in.

    The export records it as `options["inference_precision"]` (or `execution_precision`); without
    it, a float target's own precision, and f32 for quantized targets (their float parts stay f32).
    """
    for key in ("inference_precision", "execution_precision"):
        if entry.options.get(key):
            return canonical_precision(entry.options[key], ("fp32", "bf16", "fp16"), f"options.{key}")
    return entry.precision if entry.precision in ("fp32", "bf16", "fp16") else "fp32"


def _graph_files(entry: ArtifactEntry, folder: Path, backend: str) -> dict[str, Path]:
    """{"model": path} for a fused artifact, {"encoder"|"denoiser"|"decoder": path} for a split one.

    The export names them in `options["graphs"]` (vpdsr/export/onnx_graph.py); older or hand-made
    entries without it are resolved from the file list (`model.*` / files named after the stages).
    """
    keys = graph_names(entry.stages)
    suffixes = MODEL_SUFFIXES[backend]
    graphs = entry.options.get("graphs") or {}
    out = {}
    for key in keys:
        name = graphs.get(key) or _find_graph(entry, folder, key, suffixes)
        if not name.endswith(suffixes):
            raise ArtifactError(f"{folder}: graph `{key}` is {name}, which backend {backend} cannot read "
                                f"(it reads {'/'.join(suffixes)})")
        out[key] = folder / name
    return out


def _find_graph(entry: ArtifactEntry, folder: Path, key: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:  # in order of preference: an IR before an ONNX for OpenVINO
        found = [f.path for f in entry.files if f.path.endswith(suffix)]
        if key != "model" or len(found) > 1:
            found = [p for p in found if Path(p).stem == key] or [p for p in found if key in Path(p).stem]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ArtifactError(f"{folder}: several {suffix} files for `{key}` ({', '.join(found)}); the entry's "
                                "`options.graphs` must say which one it is")
    raise ArtifactError(f"{folder}: no {'/'.join(suffixes)} file for `{key}` "
                        f"(files: {', '.join(f.path for f in entry.files)})")


def _check_engine_early(meta: dict, path: Path, device: str) -> None:
    """Where TensorRT and that GPU are present, refuse a foreign engine at load time, not only at activate."""
    try:
        import tensorrt as trt
        import torch
    except ImportError:
        return
    from vpdsr.runtimes.cuda import cuda_index

    index = cuda_index(device)
    if torch.cuda.is_available() and index < torch.cuda.device_count():
        from vpdsr.runtimes.tensorrt_runner import check_engine_compatibility

        check_engine_compatibility(meta, trt.__version__, torch.cuda.get_device_name(index),
                                   torch.cuda.get_device_capability(index), str(path))
