"""`export(model, out_dir, targets, ...) -> Manifest`: build, validate and record every target.

Each target is built in a hidden temporary folder beside its final place, validated against the
torch fp32 reference on held-out inputs (the bundled holdout photos, never used for calibration),
its `artifact.json` written, and only then renamed into place: a killed or failed export leaves
no folder that loads. The manifest is rewritten after every target.

Re-running with unchanged inputs reuses an artifact: its `cache_key` hashes the model (config and
tensors), the target's config (stages, tile, dynamic, options), the calibration set's hash
(calibrated targets only) and the tool versions; if the folder's entry has the same key and its
files still match their sha256, nothing is rebuilt.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vpdsr import __version__
from vpdsr.artifacts import ArtifactEntry, Manifest, file_entries, read_entry, write_entry
from vpdsr.errors import ArtifactError, InputError, MissingDependencyError, VpdsrError
from vpdsr.export.calibration import DEFAULT_CALIB, HOLDOUT, CalibrationSet
from vpdsr.export.evaluate import compare, folder_outputs, torch_reference
from vpdsr.export.onnx_graph import EXPORTER, model_sha256
from vpdsr.export.targets import BuildContext, TargetSkipped, TargetSpec, parse_targets
from vpdsr.utils import atomic_directory

TOOLS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino", "nncf": "nncf",
         "modelopt": "nvidia-modelopt", "tensorrt": "tensorrt", "onnxconverter_common": "onnxconverter-common"}
VALIDATION_COUNT = 2  # held-out tiles per target
VALIDATION_SEED = 1234


class ExportIncomplete(VpdsrError):
    """`--strict`: a target was skipped, failed, or fell below its quality floor (exit 1)."""

    exit_code = 1


@dataclass
class ExportOptions:
    """Target config shared by every target of one export (all of it enters the cache key)."""

    stages: str = "fused"
    tile: int = 64
    dynamic: bool = False
    calib: str = DEFAULT_CALIB
    calib_count: int = 8
    calib_seed: int = 0

    def validate(self) -> "ExportOptions":
        if self.stages not in ("fused", "split"):
            raise InputError(f"`--stages` must be fused or split, got {self.stages!r}")
        if self.tile < 8:
            raise InputError(f"`--tile` must be at least 8 LR pixels, got {self.tile}")
        if self.calib_count < 1:
            raise InputError(f"`--calib-count` must be at least 1, got {self.calib_count}")
        return self


def tool_versions() -> dict[str, str | None]:
    """Installed versions (from package metadata: nothing is imported)."""
    out = {"vpdsr": __version__}
    for key, dist in TOOLS.items():
        try:
            out[key] = md.version(dist)
        except md.PackageNotFoundError:
            out[key] = None
    return out


def export(model, out_dir: str | Path, targets: str | list[str], *, stages: str = "fused", tile: int = 64,
           dynamic: bool = False, calib: str = DEFAULT_CALIB, calib_count: int = 8, strict: bool = False,
           force: bool = False, log: Callable[[str], None] = print) -> Manifest:
    """Export `model` to every target in `targets` under `out_dir`.

    Args:
        model: a VPDSR module, a model directory or a preset name.
        out_dir: artifacts folder (one sub-folder per target + manifest.json).
        targets: "onnx,openvino-int8" or a list; aliases "cpu" and "all".
        stages: "fused" (one graph) or "split" (encoder/denoiser/decoder graphs).
        tile: static LR tile size (also the calibration crop size and the validation size).
        dynamic: dynamic H/W (the batch dimension is always dynamic).
        calib: calibration images (file, folder, or "samples[:subset]").
        calib_count: calibration samples.
        strict: raise ExportIncomplete if any target is skipped, failed or below its floor.
        force: rebuild even when a cached artifact matches.
        log: progress printer.

    Returns:
        The manifest (also written to `out_dir/manifest.json`).

    Example:
        >>> manifest = export("tiny", "artifacts", "onnx,openvino-int8")  # doctest: +SKIP
    """
    from vpdsr.models import VPDSR, from_pretrained

    specs = parse_targets(targets)
    opts = ExportOptions(stages, tile, dynamic, str(calib), calib_count).validate()
    source = model if not isinstance(model, VPDSR) else "<in-memory>"
    if not isinstance(model, VPDSR):
        model = from_pretrained(model)
    model = model.float().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir, log)
    model_hash = model_sha256(model)
    manifest = _open_manifest(out_dir, model_hash, str(source), model)
    versions = tool_versions()
    calib_set = CalibrationSet(opts.calib, opts.calib_count, opts.tile, model.latent_channels, opts.calib_seed)
    work = out_dir / f".work-{model_hash[:12]}"
    ctx = BuildContext(model, work, opts.stages, opts.tile, opts.dynamic, calib_set, log)
    held_out = CalibrationSet(HOLDOUT, VALIDATION_COUNT, opts.tile, model.latent_channels, VALIDATION_SEED)
    if any(s.calibrated for s in specs):
        calib_set.feeds()  # a bad --calib is a user error before anything is built
    refs = None
    try:
        for spec in specs:
            key = _cache_key(spec, opts, model_hash, calib_set if spec.calibrated else None, versions)
            cached = None if force else _cached(out_dir / spec.name, key)
            if cached is not None:
                log(f"{spec.name}: reused (cache_key {key[:12]} unchanged)")
                manifest.upsert(cached)
                manifest.write(out_dir)
                continue
            if refs is None:
                refs = torch_reference(model, held_out.feeds())
            entry = _build_one(ctx, spec, opts, key, versions, held_out, refs, out_dir)
            manifest.upsert(entry)
            manifest.write(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if strict:
        bad = [f"{a.name} ({a.status}: {a.reason})" if a.status != "ok" else f"{a.name} (below {a.validation.get('floor_db')} dB)"
               for a in manifest.artifacts if a.name in {s.name for s in specs}
               and (a.status != "ok" or not a.validation.get("passed", True))]
        if bad:
            raise ExportIncomplete(f"--strict: {len(bad)} target(s) not produced or below floor: {'; '.join(bad)}")
    return manifest


def _remove_leftovers(out_dir: Path, log) -> None:
    """Delete what a killed export left behind (hidden temp/old/work folders; none of them loads).

    One export at a time per folder is assumed, as the manifest itself needs.
    """
    for pattern in (".*.tmp-*", ".*.old-*", ".work-*"):
        for p in out_dir.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                log(f"removed {p.name} (left by an interrupted export)")


def _build_one(ctx: BuildContext, spec: TargetSpec, opts: ExportOptions, key: str, versions: dict,
               held_out: CalibrationSet, refs: list, out_dir: Path) -> ArtifactEntry:
    entry = ArtifactEntry(name=spec.name, target=spec.name, backend=spec.backend, precision=spec.precision,
                          stages=opts.stages, tile=opts.tile, dynamic=opts.dynamic, versions=versions,
                          options={**spec.options, "exporter": EXPORTER}, cache_key=key)
    if spec.calibrated:
        entry.calibration = ctx.calib.describe()
    ctx.log(f"{spec.name}: building")
    try:
        with atomic_directory(out_dir / spec.name) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
            result = spec.build_fn()(ctx, spec, tmp)
            entry.options.update(result.options)
            for k, v in result.extra.items():
                setattr(entry, k, v)
            entry.inputs, entry.outputs = _io(ctx, result.options["graphs"])
            outputs = folder_outputs(result.fns, held_out.feeds())
            entry.validation = compare(outputs, refs, spec.floor_db)
            entry.validation["inputs"] = {"source": HOLDOUT, "seed": VALIDATION_SEED, "tile": opts.tile}
            del result, outputs  # close sessions before the folder is hashed and moved
            entry.files = file_entries(tmp)
            write_entry(tmp, entry)
    except (TargetSkipped, MissingDependencyError) as e:
        entry.status, entry.reason = "skipped", " ".join(str(e).split())
        ctx.log(f"{spec.name}: skipped: {entry.reason}")
        return entry
    except (KeyboardInterrupt, SystemExit, VpdsrError):  # interrupts and user errors stop the export
        raise
    except Exception as e:  # a failing target must not stop the others; the manifest records it
        entry.status, entry.reason = "failed", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        ctx.log(f"{spec.name}: FAILED: {entry.reason}")
        return entry
    v = entry.validation
    verdict = "ok" if v.get("passed") else f"BELOW the {spec.floor_db} dB floor"
    ctx.log(f"{spec.name}: {verdict}, PSNR vs torch fp32 {v['psnr_db']} dB (max abs {v['max_abs']})")
    return entry


def _io(ctx: BuildContext, graphs: dict[str, str]) -> tuple[dict, dict]:
    """The artifact's external inputs/outputs: fused or split, the chain maps `lr`, `noise` -> `sr`."""
    return ctx.io("model")


def _cache_key(spec: TargetSpec, opts: ExportOptions, model_hash: str, calib: CalibrationSet | None,
               versions: dict) -> str:
    payload = {"target": spec.name, "backend": spec.backend, "precision": spec.precision, "options": spec.options,
               "stages": opts.stages, "tile": opts.tile, "dynamic": opts.dynamic, "model": model_hash,
               "calibration": calib.describe() if calib else None, "versions": versions, "exporter": EXPORTER}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cached(folder: Path, key: str) -> ArtifactEntry | None:
    if not (folder / "artifact.json").is_file():
        return None
    try:
        entry = read_entry(folder)
        if entry.cache_key != key:
            return None
        entry.verify(folder)
    except ArtifactError:
        return None
    return entry


def _open_manifest(out_dir: Path, model_hash: str, source: str, model) -> Manifest:
    info = {"source": source, "sha256": model_hash, "preset": model.config.preset,
            "config": model.config.to_dict(), "parameters": model.num_parameters()}
    try:
        old = Manifest.read(out_dir)
        if old.model.get("sha256") == model_hash:
            old.model = info
            return old
    except ArtifactError:
        pass
    return Manifest(model=info, vpdsr_version=__version__)
