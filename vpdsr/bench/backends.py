"""Which backends a benchmark runs, and how each one's Runner is opened.

A backend is either the torch model itself at some precision (``torch-fp32``, ``torch-fp16``,
``torch-bf16``: the reference is one of these) or one entry of an artifacts manifest (its
folder name, e.g. ``onnx-int8``). Its status before anything runs is the export's: an entry the
export *skipped* (cannot be built or run on that machine) is a skipped backend, one the export
*failed* (build error, validation below its floor) is a failed backend, each with its reason.
The harness then decides the rest: a runner that cannot start here (CapabilityError: a missing
package, no GPU, no bf16) is skipped; any other load or run error (a file changed after export,
a corrupt graph) is failed.
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
        status = entry.status  # ok, skipped or failed, as the export recorded it
        reason = None if status == "ok" else f"export {entry.status}: {entry.reason or 'no reason recorded'}"
        if status == "ok":  # a path that leaves its folder (a link too) is bad input: refused before anything runs
            from vpdsr.artifacts import MANIFEST_NAME, resolve_inside

            for f in entry.files:
                resolve_inside(Path(artifacts) / entry.name, f.path, f"{Path(artifacts) / MANIFEST_NAME}: "
                                                                     f"`{entry.name}` file")
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


def parse_names(text: str | None, flag: str) -> frozenset[str]:
    """`--require` / `--allow-failed`: a comma list of backend names (or ``all``), checked later."""
    if text is None:
        return frozenset()
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise InputError(f"`{flag}` is empty; expected a comma list of backend names, or all")
    return names


def resolve_names(names: frozenset[str], specs: list[BackendSpec], flag: str) -> frozenset[str]:
    """Backend names (a manifest entry's name or target, or ``all``) -> the names of this run's rows.

    Raises:
        InputError: a name that is not a backend of this run (a typo must not be a silent policy).
    """
    out, unknown = set(), []
    for name in names:
        if name == "all":
            out.update(s.name for s in specs)
            continue
        match = [s.name for s in specs if name in (s.name, s.target)]
        if not match:
            unknown.append(name)
        out.update(match)
    if unknown:
        raise InputError(f"`{flag}`: {', '.join(sorted(unknown))} is not a backend of this run "
                         f"(its backends: {', '.join(s.name for s in specs)}; or all)")
    return frozenset(out)


def _entry_device(entry) -> str:
    if entry.backend == "tensorrt":
        return "cuda"
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
