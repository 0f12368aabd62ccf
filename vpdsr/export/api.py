"""`export(model, out_dir, targets, ...) -> Manifest`: build, validate and record every target.

Each target is built in a hidden temporary folder beside its final place, validated on the engine
that will run it (`vpdsr.runtimes.load` on the folder, the held-out photos through the same
tiling path as `vpdsr bench`, see `vpdsr/export/validation.py`) against the torch fp32 reference,
its `artifact.json` written, and only then renamed into place: a killed or failed export leaves
no folder that loads. The manifest is rewritten after every target.

Status: `ok`; `skipped` when this machine cannot build or run the target (TensorRT
without a GPU, bf16 on a CPU without it), with the reason; `failed` when it should have worked
and did not (a build error, an artifact its runner cannot load, NaN, validation below the target's
floor): the entry then keeps its validation figures and no folder is left. With `keep_failed`
(`vpdsr export --keep-failed`), a target that built and loaded but failed validation (below its
floor, NaN/Inf) keeps its folder, renamed into place like an ok one, its files hashed and its
`artifact.json` saying `failed`, the reason, the figures and `kept: true`: `vpdsr bench` then times
it and reports it, still failed. Build errors leave nothing to keep.

Re-running with unchanged inputs reuses an artifact: its `cache_key` hashes the model (config and
tensors), the target's config (stages, tile, dynamic, options), the calibration set's hash
(calibrated targets only), the validation settings and the tool versions; if the folder's entry
has the same key and its files still match their sha256, nothing is rebuilt. A kept failed artifact
is reused (as failed, never ok) only under `keep_failed`; without it, it is rebuilt and, failing again,
its folder removed, as if it had never been kept.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vpdsr import __version__, env
from vpdsr.artifacts import ArtifactEntry, Manifest, file_entries, read_entry, write_entry
from vpdsr.errors import ArtifactError, CapabilityError, InputError, VpdsrError
from vpdsr.export.calibration import DEFAULT_CALIB, CalibrationSet
from vpdsr.export.mixed_precision import BudgetOptions, make_plan
from vpdsr.export.onnx_graph import EXPORTER, GRAPH_FORM, check_tile, graph_modules, model_sha256
from vpdsr.export.search import BudgetUnreachable
from vpdsr.export.targets import BuildContext, TargetSkipped, TargetSpec, parse_targets
from vpdsr.export.validation import ValidationConfig, ValidationFailed, upscale_all, validate
from vpdsr.utils import atomic_directory

log = logging.getLogger(__name__)
# The versions an entry records and its cache key hashes (keys of the `vpdsr.env` table).
TOOLS = ("torch", "onnx", "onnxruntime", "openvino", "nncf", "modelopt", "tensorrt", "onnxconverter_common")


class ExportIncomplete(VpdsrError):
    """`--strict`: a target was skipped, failed, fell below its quality floor, or met its `--int8-budget` only by
    giving back more than half of INT8's speed (exit 1)."""

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
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    calib_crop: int | None = None
    budget: BudgetOptions = field(default_factory=BudgetOptions)  # --int8-budget / --sensitivity

    def validate(self) -> ExportOptions:
        if self.stages not in ("fused", "split"):
            raise InputError(f"`--stages` must be fused or split, got {self.stages!r}")
        if self.tile < 8:
            raise InputError(f"`--tile` must be at least 8 LR pixels, got {self.tile}")
        if self.calib_count < 1:
            raise InputError(f"`--calib-count` must be at least 1, got {self.calib_count}")
        self.budget.validate(self.tile, self.stages)
        return self


def tool_versions() -> dict[str, str | None]:
    """Installed versions (from package metadata: nothing is imported)."""
    return {"vpdsr": __version__, **env.versions(TOOLS)}


def export(model, out_dir: str | Path, targets: str | list[str], *, stages: str = "fused", tile: int = 64,
           dynamic: bool = False, calib: str = DEFAULT_CALIB, calib_count: int = 8,
           validation: ValidationConfig | None = None, strict: bool = False, force: bool = False,
           progress: bool | None = False, calib_crop: int | None = None, calib_seed: int = 0,
           budget: BudgetOptions | None = None, device: str = "cuda", keep_failed: bool = False,
           quantized: tuple | None = None) -> Manifest:
    """Export `model` to every target in `targets` under `out_dir`.

    Progress and one summary line per target go to the `vpdsr.export` loggers (the CLI shows them).

    Args:
        model: a model of any family (an `SRModel`), a model directory or a preset name. Its graph inputs
            (`model.input_names`: no `noise` for a GAN), stages and size rule come from the model.
        out_dir: artifacts folder (one sub-folder per target + manifest.json).
        targets: "onnx,openvino-int8" or a list; aliases "cpu" and "all".
        stages: "fused" (one graph) or "split" (encoder/denoiser/decoder graphs; families with stages).
        tile: static LR tile size (also the calibration crop size and the validation tile); a multiple
            of the model's `size_multiple`.
        dynamic: dynamic H/W (the batch dimension is always dynamic).
        calib: calibration images (file, folder, or "samples[:subset]").
        calib_count: calibration crops.
        calib_crop: calibration crop side in LR pixels (default: the tile), cut into tile samples.
        calib_seed: picks the calibration crops and noise.
        budget: `--int8-budget` / `--sensitivity` and their validation tiles (`mixed_precision.BudgetOptions`).
        validation: the held-out images, noise seed and overlap/batch of validation (default: the three
            held-out photos whole, `vpdsr bench`'s seed and tiling at `tile`).
        strict: raise ExportIncomplete if any target is skipped, failed, below its floor, or slow (it met the
            INT8 budget only with float layers that give back more than half of INT8's speed; `qat_advice`).
        force: rebuild even when a cached artifact matches.
        progress: a progress bar over the targets (None: on a terminal only).
        device: the GPU TensorRT engines are built (and validated) on: "cuda" or "cuda:N".
        keep_failed: keep the folder of a target that built and loaded but failed validation (status
            stays failed, `kept` true), so that `vpdsr bench` can time it. Not part of the cache key.
        quantized: (fake-quantized model, QatScheme) that quantization-aware target specs build from
            (`vpdsr.export.qat_targets.qat_specs`, whose options carry its hash); `model` stays the float
            model every artifact is validated against.

    Returns:
        The manifest (also written to `out_dir/manifest.json`).

    Example:
        >>> manifest = export("tiny", "artifacts", "onnx,openvino-int8")  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from vpdsr.models import SRModel, from_pretrained
    from vpdsr.runtimes.cuda import cuda_index

    specs = parse_targets(targets)
    cuda_index(device)  # a `--device` that names no CUDA device is a user error before anything is built
    opts = ExportOptions(stages, tile, dynamic, str(calib), calib_count, calib_seed,
                         validation=validation or ValidationConfig(), calib_crop=calib_crop,
                         budget=budget or BudgetOptions()).validate()
    source = model if not isinstance(model, SRModel) else "<in-memory>"
    if not isinstance(model, SRModel):
        model = from_pretrained(model)
    model = model.float().eval()
    check_tile(model, opts.tile)  # the family's size rule and `--stages split` of a model without stages:
    if opts.stages == "split":  # user errors before anything is built
        graph_modules(model, "encoder")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"`--out` {out_dir} is a file; expected an artifacts folder (new or from `vpdsr export`)")
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    model_hash = model_sha256(model)
    manifest = _open_manifest(out_dir, model_hash, str(source), model)
    versions = tool_versions()
    calib_set = CalibrationSet(opts.calib, opts.calib_count, opts.tile, model.latent_channels, opts.calib_seed,
                               opts.calib_crop)
    work = out_dir / f".work-{model_hash[:12]}"
    ctx = BuildContext(model, work, opts.stages, opts.tile, opts.dynamic, calib_set, device=device, quantized=quantized)
    vcfg = opts.validation
    if any(s.calibrated for s in specs):
        calib_set.feeds()  # a bad --calib is a user error before anything is built
    if opts.budget.active and any(s.precision == "int8" for s in specs):
        ctx.int8 = make_plan(model, opts.budget, calib_set, opts.tile, (vcfg.source, vcfg.max_images))
    reference = _Reference(model, vcfg, opts.tile)
    try:
        for spec in tqdm(specs, desc="export", unit="target", disable=None if progress is None else not progress):
            key = _cache_key(spec, opts, model_hash, calib_set if spec.calibrated else None, versions,
                             ctx.int8 if spec.precision == "int8" else None)
            cached = None if force else _cached(out_dir / spec.name, key, keep_failed)
            if cached is not None:
                state = "" if cached.status == "ok" else f" (still failed, kept: {cached.reason})"
                log.info(f"{spec.name}: reused (cache_key {key[:12]} unchanged){state}")
                if cached.options.get("qat_advice"):  # a reused slow artifact says so as its build did
                    log.warning(cached.options["qat_advice"])
                manifest.upsert(cached)
                manifest.write(out_dir)
                continue
            entry = _build_one(ctx, spec, opts, key, versions, reference, out_dir, keep_failed, str(source))
            manifest.upsert(entry)
            manifest.write(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if strict:
        bad = [f"{a.name} ({a.status}: {a.reason or a.options.get('qat_advice')})" for a in manifest.artifacts
               if a.name in {s.name for s in specs} and (a.status != "ok" or a.options.get("qat_advice"))]
        if bad:
            raise ExportIncomplete(f"--strict: {len(bad)} target(s) not produced, below floor or slow: "
                                   f"{'; '.join(bad)}")
    return manifest


class _Reference:
    """The validation images and the torch fp32 outputs on them, made when the first target needs them."""

    def __init__(self, model, cfg: ValidationConfig, tile: int):
        self.model, self.cfg, self.tile = model, cfg, tile
        self._images: list | None = None
        self._outputs: list | None = None

    def get(self) -> tuple[list, list]:
        from vpdsr.runtimes.torch_runner import TorchRunner

        if self._outputs is None:
            self._images = self.cfg.images()
            log.debug(f"validation reference: torch fp32 on {len(self._images)} held-out image(s)")
            with TorchRunner(self.model, noise_channels=self.model.latent_channels or 0) as runner:
                self._outputs = upscale_all(runner, [lr for _, lr, _ in self._images], self.cfg, self.tile)
        return self._images, self._outputs


def _remove_leftovers(out_dir: Path) -> None:
    """Delete what a killed export left behind (hidden temp/old/work folders; none of them loads).

    One export at a time per folder is assumed, as the manifest itself needs.
    """
    for pattern in (".*.tmp-*", ".*.old-*", ".work-*"):
        for p in out_dir.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                log.info(f"removed {p.name} (left by an interrupted export)")


def _one_line(e: BaseException, limit: int = 300) -> str:
    return " ".join(str(e).split())[:limit]


def _build_one(ctx: BuildContext, spec: TargetSpec, opts: ExportOptions, key: str, versions: dict,
               reference: _Reference, out_dir: Path, keep_failed: bool = False, source: str = "MODEL") -> ArtifactEntry:
    entry = ArtifactEntry(name=spec.name, target=spec.name, backend=spec.backend, precision=spec.precision,
                          stages=opts.stages, tile=opts.tile, dynamic=opts.dynamic, versions=versions,
                          options={**spec.options, "exporter": EXPORTER, **model_io(ctx.model)}, cache_key=key)
    if spec.calibrated:
        entry.calibration = ctx.calib.describe()
    log.debug(f"{spec.name}: building")
    try:
        with atomic_directory(out_dir / spec.name) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
            result = spec.build_fn()(ctx, spec, tmp)
            entry.options.update(result.options)
            _advise_qat(entry, source, out_dir)  # a budget met only by giving back INT8's speed says so
            for k, v in result.extra.items():
                setattr(entry, k, v)
            entry.inputs, entry.outputs = ctx.io("model")  # fused or split, the chain maps lr, noise -> sr
            entry.files = file_entries(tmp)
            # on the artifact's own runner, exactly as `vpdsr bench` will load it
            images, refs = reference.get()
            entry.validation = validate(entry, tmp, images, refs, opts.validation, opts.tile, spec.floor_db)
            if not entry.validation["passed"]:
                v = entry.validation
                why = "NaN/Inf in its output" if not v["finite"] else f"PSNR {v['psnr_db']} dB vs torch fp32"
                failure = ValidationFailed(f"validation below its floor: {why} < {spec.floor_db} dB")
                if not keep_failed:
                    raise failure
                # --keep-failed: it built and loads, so keep it (marked) for `vpdsr bench` to time
                entry.status, entry.reason, entry.kept = "failed", _one_line(failure), True
            write_entry(tmp, entry)
    except (TargetSkipped, CapabilityError) as e:
        entry.status, entry.reason = "skipped", _one_line(e, 400)
        log.info(f"{spec.name}: skipped: {entry.reason}")
        return entry
    except ValidationFailed as e:
        entry.status, entry.reason = "failed", _one_line(e)
        log.warning(f"{spec.name}: FAILED: {entry.reason}")
        if isinstance(e, BudgetUnreachable):
            _advise_qat(entry, source, out_dir, unreachable=True)
        _drop_kept(out_dir / spec.name)
        return entry
    except (KeyboardInterrupt, SystemExit, InputError):  # interrupts and the user's own input stop the export
        raise
    except Exception as e:  # a failing target must not stop the others; the manifest records it
        entry.status, entry.reason = "failed", f"{type(e).__name__}: {_one_line(e)}"
        log.warning(f"{spec.name}: FAILED: {entry.reason}")
        _drop_kept(out_dir / spec.name)
        return entry
    if entry.kept:
        log.warning(f"{spec.name}: FAILED: {entry.reason}; kept in {out_dir / spec.name} (--keep-failed)")
        return entry
    v = entry.validation
    log.info(f"{spec.name}: ok, PSNR vs torch fp32 {v['psnr_db']:.2f} dB worst / {v['psnr_db_mean']:.2f} dB mean "
             f"over {v['n_inputs']} held-out image(s) (floor {spec.floor_db:g}, max abs {v['max_abs']:.2g})")
    return entry


def _advise_qat(entry: ArtifactEntry, source: str, out_dir: Path, unreachable: bool = False) -> None:
    """The one line (and the entry's `options.qat_advice`) of `budget.qat_advice`, where it applies."""
    from vpdsr.export.budget import qat_advice

    model = source if source and not source.startswith("<") else "MODEL"
    advice = qat_advice(entry.name, entry.options.get("accuracy_control"), model, f"{out_dir}-qat", unreachable)
    if advice:
        log.warning(advice)
        entry.options["qat_advice"] = advice


def model_io(model) -> dict:
    """What a runner of the artifact must know about the model: its scale and size rule (LR sides a
    multiple of `size_multiple`), recorded in the entry's options for dynamic-shape artifacts."""
    return {"scale": int(model.scale), "size_multiple": int(model.size_multiple)}


def _cache_key(spec: TargetSpec, opts: ExportOptions, model_hash: str, calib: CalibrationSet | None,
               versions: dict, int8=None) -> str:
    payload = {"target": spec.name, "backend": spec.backend, "precision": spec.precision, "options": spec.options,
               "stages": opts.stages, "tile": opts.tile, "dynamic": opts.dynamic, "model": model_hash,
               "calibration": calib.describe() if calib else None, "versions": versions, "exporter": EXPORTER,
               "graph_form": GRAPH_FORM,
               "validation": asdict(opts.validation), "int8": int8.describe() if int8 is not None else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cached(folder: Path, key: str, keep_failed: bool = False) -> ArtifactEntry | None:
    """The entry of `folder` if its key is `key` and its files match; a kept failed one (only under
    `keep_failed`) comes back as it is: failed, never promoted to ok."""
    if not (folder / "artifact.json").is_file():
        return None
    try:
        entry = read_entry(folder)
        if entry.cache_key != key or (entry.kept and not keep_failed):
            return None
        entry.verify(folder, allow_failed=keep_failed)
    except ArtifactError:
        return None
    return entry


def _drop_kept(folder: Path) -> None:
    """A target failed and kept nothing: a folder an earlier --keep-failed kept goes (it is not this build)."""
    try:
        kept = read_entry(folder).kept
    except ArtifactError:
        return
    if kept:
        shutil.rmtree(folder, ignore_errors=True)
        log.info(f"{folder.name}: removed the failed artifact an earlier --keep-failed kept")


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
