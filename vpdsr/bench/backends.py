"""Which backends a benchmark runs, and how each one's Runner is opened.

A backend is either the torch model itself at some precision (``torch-fp32``, ``torch-fp16``,
``torch-bf16``: the reference is one of these) or one entry of an artifacts manifest (its
folder name, e.g. ``onnx-int8``). An entry the export skipped or failed, or a runner that
cannot start here (a missing package, no GPU), becomes a *skipped* backend with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vpdsr.errors import ConfigError, InputError, VpdsrError

TORCH_PRECISIONS = ("fp32", "fp16", "bf16")
THREADED_BACKENDS = ("onnxruntime", "openvino")


@dataclass
class BackendSpec:
    """One row of the report before it runs."""

    name: str
    target: str
    backend: str
    precision: str
    device: str = "cpu"
    stages: str = "fused"
    status: str = "ok"
    reason: str | None = None
    artifact: Path | None = None
    model: str | None = None  # torch backends: model directory or preset
    extra: dict = field(default_factory=dict)


def torch_spec(name: str, model: str, device: str) -> BackendSpec:
    precision = name.split("-", 1)[1] if "-" in name else "fp32"
    if precision not in TORCH_PRECISIONS:
        raise InputError(f"unknown torch backend {name!r}; expected torch-fp32, torch-fp16 or torch-bf16")
    return BackendSpec(name=name, target=name, backend="torch", precision=precision, device=device, model=model)


def resolve_backends(model: str, artifacts: str | Path | None, names: list[str] | None, reference: str,
                     device: str = "cpu") -> list[BackendSpec]:
    """The reference first, then the asked-for backends (default: every manifest entry).

    Args:
        model: model directory or preset (torch backends).
        artifacts: a `vpdsr export` folder with manifest.json, or None.
        names: backend names (torch-<precision> or manifest entry names/targets); None or
            ["all"] for every manifest entry.
        reference: name of the reference backend.
        device: torch device of the torch backends ("cpu", "cuda").

    Raises:
        InputError: a name is neither a torch backend nor in the manifest.
        ArtifactError: the artifacts folder has no readable manifest.
    """
    entries = {}
    if artifacts is not None:
        from vpdsr.artifacts import Manifest

        manifest = Manifest.read(Path(artifacts))
        for e in manifest.artifacts:
            entries[e.name] = e

    def spec(name: str) -> BackendSpec:
        if name.startswith("torch"):
            return torch_spec(name, model, device)
        entry = entries.get(name) or next((e for e in entries.values() if e.target == name), None)
        if entry is None:
            known = ["torch-fp32", "torch-fp16", "torch-bf16", *entries]
            where = f"the manifest in {artifacts}" if artifacts else "no --artifacts given"
            raise InputError(f"unknown backend {name!r} ({where}); expected one of {', '.join(known)}")
        status = "ok" if entry.status == "ok" else "skipped"
        reason = None if status == "ok" else f"export {entry.status}: {entry.reason or 'no reason recorded'}"
        return BackendSpec(name=entry.name, target=entry.target, backend=entry.backend, precision=entry.precision,
                           device=_entry_device(entry), stages=entry.stages, status=status, reason=reason,
                           artifact=Path(artifacts) / entry.name)

    wanted = list(entries) if not names or names == ["all"] else [n for n in names if n != reference]
    specs = [spec(reference)]
    seen = {specs[0].name}
    for name in wanted:
        s = spec(name)
        if s.name not in seen:
            specs.append(s)
            seen.add(s.name)
    if specs[0].status != "ok":
        raise InputError(f"the reference backend {reference!r} cannot run: {specs[0].reason}")
    return specs


def _entry_device(entry) -> str:
    if entry.backend == "tensorrt":
        return str(entry.options.get("device") or "cuda")
    return str(entry.options.get("device", "cpu")) if isinstance(entry.options, dict) else "cpu"


def open_runner(spec: BackendSpec, threads: int | None = None):
    """An inactive Runner for ``spec``; a backend that cannot be built here raises VpdsrError."""
    if spec.backend == "torch":
        from vpdsr.runtimes.torch_runner import TorchRunner

        runner = TorchRunner.from_pretrained(spec.model, device=spec.device, precision=spec.precision)
        runner.name = spec.name
        return runner
    from vpdsr.runtimes import load

    # CPU backends take a thread count; TensorRT (GPU) has none to set
    opts = {"threads": threads} if threads is not None and spec.backend in THREADED_BACKENDS else {}
    return load(spec.artifact, **opts)


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (the torch backends and the metrics use them)."""
    if threads is None:
        return
    import torch

    if threads < 1:
        raise ConfigError(f"`--threads` must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def one_line(exc: BaseException) -> str:
    """An exception as one short line for the report."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, VpdsrError):
        text = f"{type(exc).__name__}: {text}"
    return text[:400]
