"""Which backends a benchmark runs, and how each one's Runner is opened.

A backend is either the torch model itself at some precision (``torch-fp32``, ``torch-fp16``,
``torch-bf16``, ``torch-fp8``: the reference is one of these) or one entry of an artifacts manifest (its
folder name, e.g. ``onnx-int8``). Its status before anything runs is the export's: an entry the
export *skipped* (cannot be built or run on that machine) is a skipped backend, one the export
*failed* (build error, validation below its floor) is a failed backend, each with its reason.
The harness then decides the rest: a runner that cannot start here (CapabilityError: a missing
package, no GPU, no bf16) is skipped; any other load or run error (a file changed after export,
a corrupt graph) is failed.

A failed entry whose folder `vpdsr export --keep-failed` kept (`kept`: it built and loaded, but
fell below its validation floor or gave NaN/Inf) is run like an ok one (latency, quality, roofline)
and its row stays failed, with the export's reason next to the figures: it fails the run unless
`--allow-failed` names it, exactly as any failed backend.

GPU variants, in the name so that every report row says what ran: ``torch-fp16-compiled``
(torch.compile, mode from ``--torch-compile``, default "default"), ``torch-fp16-graphs`` (CUDA graphs),
``torch-bf16-compiled-graphs``; ``onnx@cuda`` / ``onnx-fp16@tensorrt-ep`` run an ONNX artifact on
ONNX Runtime's CUDA or TensorRT provider (on ``--device``'s GPU).

``<entry>@untuned`` runs a CPU artifact (ONNX Runtime or OpenVINO) with the settings this project had
before its CPU tuning, beside the tuned row in the same process: the engine's own defaults (ONNX
Runtime's spinning threads, OpenVINO's LATENCY hint for tile batches too), the library's thread
count, fixed 64-pixel tiles (overlap 8, batch 4) and noise drawn afresh for every tile (no block
cache). The pair shows what the tuning is worth on this machine.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

from vpdsr.errors import ConfigError, InputError, VpdsrError

TORCH_PRECISIONS = ("fp32", "fp16", "bf16", "fp8")
THREADED_BACKENDS = ("onnxruntime", "openvino")
TORCH_SUFFIXES = ("compiled", "graphs")  # torch.compile, CUDA graphs (in this order in a name)
ORT_GPU_PROVIDERS = {"cuda": ["cuda"], "tensorrt-ep": ["tensorrt", "cuda"]}  # `<entry>@<key>`
UNTUNED = "untuned"  # `<entry>@untuned`: the engine defaults and tiling from before the CPU tuning
# The runner options of `@untuned` rows: ONNX Runtime's own session defaults (spinning intra-op threads,
# no dynamic block scheduling), OpenVINO's LATENCY hint for every call (tile batches included).
UNTUNED_OPTIONS = {"onnxruntime": {"session_config": {"session.intra_op.allow_spinning": "1",
                                                      "session.dynamic_block_base": "0"}},
                   "openvino": {"performance_hint": "LATENCY"}}
UNTUNED_TILING = (64, 8, 4)  # tile, overlap, batch of `@untuned` rows (the bench's fixed default before)


@dataclass(frozen=True)
class BackendSpec:
    """One row of the report before it runs (frozen: a variant is a new spec, see `dataclasses.replace`)."""

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
    kept: bool = False  # a failed export artifact kept by --keep-failed: run anyway, reported failed

    @property
    def runs(self) -> bool:
        """Whether the harness runs it: ok, or failed but kept (measured, still failed)."""
        return self.status == "ok" or (self.status == "failed" and self.kept)


def torch_spec(name: str, model: str, device: str, compile_mode: str | None = None) -> BackendSpec:
    """`torch-<precision>[-compiled][-graphs]` -> its spec (`extra` holds the TorchRunner options)."""
    parts = name.split("-")
    precision = parts[1] if len(parts) > 1 else "fp32"
    suffixes = parts[2:]
    if parts[0] != "torch" or precision not in TORCH_PRECISIONS or \
            [s for s in TORCH_SUFFIXES if s in suffixes] != suffixes:
        raise InputError(f"unknown torch backend {name!r}; expected torch-<{'|'.join(TORCH_PRECISIONS)}> with "
                         "optional -compiled and -graphs (e.g. torch-fp16-compiled-graphs)")
    extra = {}
    if "compiled" in suffixes:
        extra["compile"] = compile_mode or "default"
    if "graphs" in suffixes:
        from vpdsr.runtimes.cuda import is_cuda

        if not is_cuda(device):
            raise InputError(f"backend {name!r}: CUDA graphs need `--device cuda[:N]`, got {device!r}")
        extra["cuda_graphs"] = True
    return BackendSpec(name=name, target=name, backend="torch", precision=precision, device=device, model=model,
                       extra=extra)


def with_torch_options(name: str, reference: str, torch_compile: str | None, cuda_graphs: bool) -> str:
    """`--torch-compile` / `--cuda-graphs` turn every torch backend but the reference into its
    -compiled/-graphs variant."""
    if not name.startswith("torch") or name == reference:
        return name
    parts = name.split("-")
    suffixes = [s for s in TORCH_SUFFIXES if s in parts[2:] or (s == "compiled" and torch_compile)
                or (s == "graphs" and cuda_graphs)]
    return "-".join(parts[:2] + suffixes)


def resolve_backends(model: str, artifacts: str | Path | None, names: list[str] | None, reference: str,
                     device: str = "cpu", torch_compile: str | None = None, cuda_graphs: bool = False
                     ) -> list[BackendSpec]:
    """The reference first, then the asked-for backends (default: every manifest entry).

    Args:
        model: model directory or preset (torch backends).
        artifacts: a `vpdsr export` folder with manifest.json, or None.
        names: backend names (torch-<precision> or manifest entry names/targets); None or
            ["all"] for every manifest entry.
        reference: name of the reference backend.
        device: torch device of the torch backends and of `<entry>@cuda` ("cpu", "cuda", "cuda:N").
        torch_compile: torch.compile mode of the -compiled torch backends; with it, every torch backend but
            the reference is compiled.
        cuda_graphs: every torch backend but the reference replays CUDA graphs.

    Raises:
        InputError: a name is neither a torch backend nor in the manifest.
        ArtifactError: the artifacts folder has no readable manifest.
    """
    entries, folders = {}, {}
    for label, folder, manifest in artifact_folders(artifacts):
        for e in manifest.artifacts:
            name = f"{label}/{e.name}" if label else e.name  # several folders: rows named by folder
            entries[name], folders[name] = e, folder

    def spec(name: str) -> BackendSpec:
        if name.startswith("torch"):
            return torch_spec(with_torch_options(name, reference, torch_compile, cuda_graphs), model, device,
                              torch_compile)
        name, _, provider = name.partition("@")
        key = name if name in entries else next((k for k, e in entries.items() if e.target == name), None)
        entry = entries.get(key) if key else None
        if entry is None:
            known = ["torch-fp32", "torch-fp16", "torch-bf16", *entries]
            where = f"the manifest in {artifacts}" if artifacts else "no --artifacts given"
            raise InputError(f"unknown backend {name!r} ({where}); expected one of {', '.join(known)}")
        status = entry.status  # ok, skipped or failed, as the export recorded it
        reason = None if status == "ok" else f"export {entry.status}: {entry.reason or 'no reason recorded'}"
        kept = status == "failed" and entry.kept
        # a path that leaves its folder (a link too) is bad input: refused before anything runs
        root = folders[key]
        if status == "ok" or kept:
            from vpdsr.artifacts import MANIFEST_NAME, resolve_inside

            for f in entry.files:
                resolve_inside(root / entry.name, f.path, f"{root / MANIFEST_NAME}: `{entry.name}` file")
        folder = root / entry.name
        usable = isinstance(entry.options, dict) and (status == "ok" or kept)
        sens = entry.options.get("sensitivity") if usable else None
        extra = {"sensitivity": {k: str((folder / sens[k]).resolve()) for k in ("plot", "table")}} if sens else {}
        out = BackendSpec(name=key, target=entry.target, backend=entry.backend, precision=entry.precision,
                          device=_entry_device(entry), stages=entry.stages, status=status, reason=reason,
                          artifact=folder, extra=extra, kept=kept)
        if provider == UNTUNED:
            return _untuned(out)
        return _on_gpu_provider(out, provider, device) if provider else out

    wanted = list(entries) if not names or list(names) == ["all"] else [n for n in names if n != reference]
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


def artifact_folders(artifacts: str | Path | None) -> list[tuple[str | None, Path, object]]:
    """(label, folder, manifest) of each `--artifacts` folder.

    One folder (the usual case): label None, rows keep the entry names. A comma list, each `DIR` or
    `LABEL=DIR` (`--artifacts ptq=art,qat=art-qat`): rows are `LABEL/entry`, the label defaulting to the
    folder's name, so post-training and quantization-aware artifacts of one model run side by side.
    Every folder must come from the same model (the manifests' model sha256): their rows are all scored
    against one torch fp32 reference.

    Raises:
        InputError: an empty item, two folders with one label, folders of different models.
        ArtifactError: a folder without a readable manifest.
    """
    from vpdsr.artifacts import Manifest

    if artifacts is None:
        return []
    if isinstance(artifacts, Path) or "," not in str(artifacts) and "=" not in str(artifacts):
        return [(None, Path(artifacts), Manifest.read(Path(artifacts)))]
    out, models = [], {}
    for item in str(artifacts).split(","):
        label, sep, folder = item.strip().rpartition("=")
        if not folder:
            raise InputError(f"`--artifacts` {artifacts!r}: an empty item; expected DIR or LABEL=DIR, comma-separated")
        path = Path(folder)
        label = label if sep else path.name
        if not label or "/" in label or label in {o[0] for o in out}:
            raise InputError(f"`--artifacts`: the label {label!r} of {folder} is empty, has a '/' or is used twice; "
                             "name the folders with LABEL=DIR")
        manifest = Manifest.read(path)
        models[label] = (manifest.model or {}).get("sha256")
        out.append((label, path, manifest))
    if len(set(models.values())) > 1:
        detail = ", ".join(f"{k}: {str(v)[:12]}" for k, v in models.items())
        raise InputError(f"`--artifacts`: the folders were exported from different models ({detail}); side by side "
                         "needs artifacts of one model, scored against its one torch fp32 reference")
    return out


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


def _on_gpu_provider(spec: BackendSpec, provider: str, device: str) -> BackendSpec:
    """`<entry>@cuda` / `<entry>@tensorrt-ep`: an ONNX artifact on ONNX Runtime's GPU providers."""
    from vpdsr.runtimes.cuda import is_cuda

    if spec.backend != "onnxruntime" or provider not in ORT_GPU_PROVIDERS:
        raise InputError(f"backend {spec.name}@{provider}: expected an ONNX artifact with @"
                         f"{' or @'.join(ORT_GPU_PROVIDERS)}")
    return replace(spec, name=f"{spec.name}@{provider}", device=device if is_cuda(device) else "cuda",
                   extra={**spec.extra, "providers": ORT_GPU_PROVIDERS[provider]})


def with_untuned(artifacts: str | Path) -> list[str]:
    """Every entry of an export folder, each CPU ONNX Runtime / OpenVINO one followed by its `@untuned` twin."""
    from vpdsr.artifacts import Manifest

    names = []
    for e in Manifest.read(Path(artifacts)).artifacts:
        names.append(e.name)
        if ((e.status == "ok" or e.kept) and e.backend in UNTUNED_OPTIONS and _entry_device(e).lower() == "cpu"
                and e.stages != "split"):
            names.append(f"{e.name}@{UNTUNED}")
    return names


def _untuned(spec: BackendSpec) -> BackendSpec:
    """`<entry>@untuned`: a CPU artifact with the engine defaults from before the tuning (module docstring)."""
    if spec.backend not in UNTUNED_OPTIONS or spec.device.lower() != "cpu":
        raise InputError(f"backend {spec.name}@{UNTUNED}: expected a CPU artifact of "
                         f"{' or '.join(UNTUNED_OPTIONS)}, got a {spec.backend} one on {spec.device}")
    return replace(spec, name=f"{spec.name}@{UNTUNED}", extra={**spec.extra, UNTUNED: True})


def _entry_device(entry) -> str:
    if entry.backend == "tensorrt":
        return str(entry.options.get("device") or "cuda")
    return str(entry.options.get("device", "cpu")) if isinstance(entry.options, dict) else "cpu"


def open_runner(spec: BackendSpec, threads: int | None = None, model=None):
    """An inactive Runner for ``spec``; a backend that cannot be built here raises VpdsrError.

    Args:
        spec: the backend.
        threads: CPU threads of an ONNX Runtime / OpenVINO engine (None: the engine's default).
        model: torch backends: the loaded model, which the runner gets a copy of (each row its own: a
            row that breaks half-way cannot leave it changed for the next); None: loaded from `spec.model`.
    """
    if spec.backend == "torch":
        from vpdsr.runtimes.torch_runner import TorchRunner

        if model is None:
            runner = TorchRunner.from_pretrained(spec.model, device=spec.device, precision=spec.precision, **spec.extra)
        else:
            runner = TorchRunner(copy.deepcopy(model), device=spec.device, precision=spec.precision, **spec.extra)
        runner.name = spec.name
        return runner
    from vpdsr.runtimes import load

    # CPU backends take a thread count; TensorRT (GPU) has none to set
    opts = {"threads": threads} if threads is not None and spec.backend in THREADED_BACKENDS else {}
    if spec.extra.get(UNTUNED):  # the library's thread count and the engine's own defaults
        opts = dict(UNTUNED_OPTIONS[spec.backend])
    if "providers" in spec.extra:  # an ONNX artifact on ONNX Runtime's CUDA/TensorRT provider
        opts.update(providers=spec.extra["providers"], device=spec.device)
    runner = load(spec.artifact, allow_failed=spec.kept, **opts)
    runner.name = spec.name
    return runner


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
