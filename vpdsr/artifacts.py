"""The artifact contract: the export folder, its `manifest.json`, each artifact's `artifact.json`.

    ARTIFACTS/
      manifest.json              every entry below, plus the model it came from
      onnx/artifact.json         the entry of this artifact alone (so a folder loads by itself)
      onnx/model.onnx
      openvino-int8/artifact.json, model.xml, model.bin
      tensorrt-fp16/artifact.json, model.plan, engine.json (see `engine_record`)

An entry lists the artifact's target, precision, files with sha256, input shapes/profiles, the
calibration set (count and hash), tool versions and the validation figures against the torch
reference. This module sits below both `vpdsr.export` (the writer) and `vpdsr.runtimes` (the
reader), so neither imports the other for it.

Path rules (a manifest is input from anywhere): every path an entry names (`files[].path`, the
graphs of `options.graphs`) is relative, has no `..`, is listed in `files` with its sha256, and
stays inside the artifact folder once links are resolved. Reading checks every field's type and
these rules, and `verify` resolves links, before any listed file is opened; a violation is one
ArtifactError line (exit 2).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath, PureWindowsPath

from vpdsr.errors import ArtifactError
from vpdsr.utils import atomic_write_text, read_json, sha256_file

SCHEMA = 1
MANIFEST_NAME = "manifest.json"
ENTRY_NAME = "artifact.json"
ENGINE_META_NAME = "engine.json"
STATUSES = ("ok", "skipped", "failed")
# Graph keys of `options.graphs`: one fused graph `lr, noise -> sr`, or three stages run in this order.
FUSED = "model"
STAGES = ("encoder", "denoiser", "decoder")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NONE = type(None)


def graph_names(stages: str) -> tuple[str, ...]:
    """("model",) for a fused artifact, the three stage names for a split one."""
    return (FUSED,) if stages == "fused" else STAGES


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", _NONE: "null"}


def _kind(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expect(value, types: tuple, where: str, what: str):
    """Refuse `value` unless it is one of `types` (a bool is not an int here)."""
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ArtifactError(f"{where} must be {what}, got {_kind(value)} ({shown})")
    return value


def check_relative_path(path, where: str) -> str:
    """A path inside an artifact folder: a non-empty relative string without `..`, `\\` or a drive."""
    _expect(path, (str,), where, "a relative path (a string)")
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    if (not path or "\x00" in path or "\\" in path or posix.is_absolute() or windows.is_absolute()
            or windows.drive or ".." in posix.parts or path.strip() in (".", "")):
        raise ArtifactError(f"{where} is {path!r}: paths in an artifact must be relative, inside its folder, "
                            "without '..'")
    return path


def _plain_name(name, where: str) -> str:
    """An artifact's folder name: one path component (it is joined to the export folder)."""
    check_relative_path(name, where)
    if len(PurePosixPath(name).parts) != 1 or name.startswith("."):
        raise ArtifactError(f"{where} is {name!r}: an artifact name is one plain folder name")
    return name


@dataclass
class FileEntry:
    path: str  # relative to the artifact's folder
    sha256: str
    bytes: int

    @classmethod
    def from_dict(cls, d, where: str) -> FileEntry:
        _expect(d, (dict,), where, "an object {path, sha256, bytes}")
        unknown = sorted(set(d) - {"path", "sha256", "bytes"})
        missing = sorted({"path", "sha256", "bytes"} - set(d))
        if unknown or missing:
            raise ArtifactError(f"{where} must have exactly `path`, `sha256`, `bytes` "
                                f"({'unknown ' + ', '.join(unknown) if unknown else 'missing ' + ', '.join(missing)})")
        path = check_relative_path(d["path"], f"{where}.path")
        if not isinstance(d["sha256"], str) or not _SHA256.fullmatch(d["sha256"]):
            raise ArtifactError(f"{where}.sha256 must be 64 lowercase hex digits, got {d['sha256']!r:.80}")
        size = _expect(d["bytes"], (int,), f"{where}.bytes", "a byte count (an integer)")
        if size < 0:
            raise ArtifactError(f"{where}.bytes must be >= 0, got {size}")
        return cls(path=path, sha256=d["sha256"], bytes=size)


# The type(s) each entry field may hold in JSON (checked one by one when an entry is read).
_ENTRY_TYPES = {
    "name": (str,), "target": (str,), "backend": (str,), "precision": (str,), "status": (str,),
    "reason": (str, _NONE), "stages": (str,), "files": (list,), "inputs": (dict,), "outputs": (dict,),
    "tile": (int, _NONE), "dynamic": (bool,), "profiles": (list, _NONE), "calibration": (dict, _NONE),
    "versions": (dict,), "validation": (dict,), "options": (dict,), "cache_key": (str, _NONE), "created": (str,),
    "kept": (bool,),
}
_REQUIRED = ("name", "target", "backend", "precision")


@dataclass
class ArtifactEntry:
    """One exported artifact. `status` is ok / skipped / failed; skipped and failed ones carry `reason`.

    `kept`: a failed artifact whose folder `vpdsr export --keep-failed` kept (it built and loaded but
    failed validation); it loads only when asked for (`verify(..., allow_failed=True)`), so it can be
    timed, and it stays failed.
    """

    name: str  # folder name, e.g. "openvino-int8"
    target: str  # e.g. "openvino-int8", "onnx-fp16", "tensorrt-fp16"
    backend: str  # runner that loads it: onnxruntime, openvino, tensorrt
    precision: str  # fp32, fp16, bf16, int8, fp8
    status: str = "ok"
    reason: str | None = None
    stages: str = "fused"  # fused: one graph lr,noise -> sr; split: encoder/denoiser/decoder graphs
    files: list[FileEntry] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # name -> {"shape": [...], "dtype": "float32"}; str dims are dynamic
    outputs: dict = field(default_factory=dict)
    tile: int | None = None
    dynamic: bool = False
    profiles: list | None = None  # TensorRT-style [{"name": {"min","opt","max"}}]
    calibration: dict | None = None  # {"count", "sha256", "source", "tile"}
    versions: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)  # {"psnr_db", "max_abs", "n_inputs", "floor_db", ...}
    options: dict = field(default_factory=dict)  # target config: execution precision, fp32-kept stages, ...
    cache_key: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    kept: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.kept:  # only a kept failed artifact says so: every other entry reads as before
            del d["kept"]
        return d

    @classmethod
    def from_dict(cls, d, source: str = "artifact") -> ArtifactEntry:
        """Check every field (types, path rules) and build the entry; ArtifactError names the first bad one."""
        _expect(d, (dict,), source, "an artifact entry (a JSON object)")
        unknown = sorted(set(d) - set(_ENTRY_TYPES))
        if unknown:
            raise ArtifactError(f"{source}: not a vpdsr artifact entry (unknown field(s) {', '.join(unknown)})")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ArtifactError(f"{source}: not a vpdsr artifact entry (missing field(s) {', '.join(missing)})")
        for key, value in d.items():
            types = _ENTRY_TYPES[key]
            _expect(value, types, f"{source}: `{key}`", " or ".join(_TYPE_NAMES[t] for t in types))
        _plain_name(d["name"], f"{source}: `name`")
        if d.get("status", "ok") not in STATUSES:
            raise ArtifactError(f"{source}: `status` must be one of {', '.join(STATUSES)}, got {d['status']!r}")
        if d.get("kept") and d.get("status") != "failed":
            raise ArtifactError(f"{source}: `kept` is only for a failed artifact, this one is {d.get('status', 'ok')}")
        if d.get("stages", "fused") not in ("fused", "split"):
            raise ArtifactError(f"{source}: `stages` must be fused or split, got {d['stages']!r}")
        files = [FileEntry.from_dict(f, f"{source}: `files[{i}]`") for i, f in enumerate(d.get("files", []))]
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise ArtifactError(f"{source}: `files` lists a path twice")
        _check_graphs(d.get("options", {}), set(paths), source)
        return cls(**{**d, "files": files})

    def verify(self, folder: Path, allow_failed: bool = False) -> None:
        """Raise ArtifactError unless every listed file stays inside `folder` and has its recorded sha256.

        Every path is checked (links resolved) before the first file is opened for hashing. A failed
        artifact is refused, unless it is a kept one (`kept`) and `allow_failed` is set.
        """
        folder = Path(folder)
        if self.status != "ok" and not (allow_failed and self.kept):
            hint = " (kept by --keep-failed: load it with allow_failed=True to time it)" if self.kept else ""
            raise ArtifactError(f"{folder}: artifact {self.name!r} is {self.status}: {self.reason}{hint}")
        if not self.files:
            raise ArtifactError(f"{folder / ENTRY_NAME}: lists no files")
        resolved = [resolve_inside(folder, f.path, f"{folder / ENTRY_NAME}: file") for f in self.files]
        _check_graphs(self.options, {f.path for f in self.files}, str(folder / ENTRY_NAME))
        for f, p in zip(self.files, resolved):
            if not p.is_file():
                raise ArtifactError(f"{folder / f.path}: missing (listed in {folder / ENTRY_NAME})")
            digest = sha256_file(p)
            if digest != f.sha256:
                raise ArtifactError(f"{folder / f.path}: sha256 mismatch (file {digest[:12]}..., manifest "
                                    f"{f.sha256[:12]}...): changed after export")


def _check_graphs(options: dict, listed: set[str], source: str) -> None:
    """`options.graphs` maps graph keys to files, each of which must be listed in `files`."""
    graphs = options.get("graphs")
    if graphs is None:
        return
    _expect(graphs, (dict,), f"{source}: `options.graphs`", "an object {graph: file}")
    for key, path in graphs.items():
        check_relative_path(path, f"{source}: `options.graphs.{key}`")
        if path not in listed:
            raise ArtifactError(f"{source}: `options.graphs.{key}` is {path!r}, which `files` does not list "
                                "(every file an artifact uses carries its sha256)")


def resolve_inside(folder: Path, path: str, where: str = "path") -> Path:
    """`folder / path` with links resolved; ArtifactError if that leaves `folder` (nothing is opened)."""
    check_relative_path(path, where)
    root = Path(folder).resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ArtifactError(f"{where} {path!r} resolves to {target}, outside the artifact folder {root}")
    return target


def file_entries(folder: Path) -> list[FileEntry]:
    """Hash every file in an artifact folder except its own entry and hidden temporaries."""
    out = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name != ENTRY_NAME and not p.name.startswith("."):
            out.append(FileEntry(path=p.relative_to(folder).as_posix(), sha256=sha256_file(p), bytes=p.stat().st_size))
    return out


def write_entry(folder: Path, entry: ArtifactEntry) -> Path:
    return atomic_write_text(Path(folder) / ENTRY_NAME, json.dumps(entry.to_dict(), indent=2) + "\n")


def read_entry(folder: Path) -> ArtifactEntry:
    path = Path(folder) / ENTRY_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder}: not an artifact folder (no {ENTRY_NAME}); run `vpdsr export` to make one")
    return ArtifactEntry.from_dict(read_json(path, ArtifactError, "missing"), str(path))


@dataclass
class Manifest:
    model: dict  # {"source", "sha256", "preset", "config"}
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    schema: int = SCHEMA
    vpdsr_version: str = ""

    def entry(self, name: str) -> ArtifactEntry:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise ArtifactError(f"no artifact {name!r} in the manifest; it has {[a.name for a in self.artifacts]}")

    def upsert(self, entry: ArtifactEntry) -> None:
        self.artifacts = [a for a in self.artifacts if a.name != entry.name] + [entry]

    def to_dict(self) -> dict:
        return {"schema": self.schema, "vpdsr_version": self.vpdsr_version, "model": self.model,
                "artifacts": [a.to_dict() for a in self.artifacts]}

    def write(self, directory: Path) -> Path:
        return atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ArtifactError(f"{directory}: no {MANIFEST_NAME}; expected a `vpdsr export` output folder")
        d = read_json(path, ArtifactError, "missing")
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d, source: str = MANIFEST_NAME) -> Manifest:
        """Check every field (each entry as `ArtifactEntry.from_dict` does) and build the manifest."""
        _expect(d, (dict,), source, "a JSON object")
        if d.get("schema") != SCHEMA:
            raise ArtifactError(f"{source}: schema {d.get('schema')!r}, this vpdsr reads schema {SCHEMA}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArtifactError(f"{source}: unknown field(s) {', '.join(unknown)} "
                                f"(a manifest has {', '.join(sorted(known))})")
        model = _expect(d.get("model", {}), (dict,), f"{source}: `model`", "an object")
        version = _expect(d.get("vpdsr_version", ""), (str,), f"{source}: `vpdsr_version`", "a string")
        items = _expect(d.get("artifacts", []), (list,), f"{source}: `artifacts`", "a list of artifact entries")
        entries = [ArtifactEntry.from_dict(a, f"{source}: `artifacts[{i}]`") for i, a in enumerate(items)]
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ArtifactError(f"{source}: `artifacts` names an artifact twice")
        return cls(model=model, schema=d["schema"], vpdsr_version=version, artifacts=entries)


# -- TensorRT engine metadata: one writer (the export) and one reader (the runner) --------------------
ENGINE_KEYS = ("tensorrt_version", "gpu_name", "compute_capability", "hardware_compatibility",
               "version_compatible", "builder_optimization_level", "precision", "profiles", "strongly_typed")


def engine_record(tensorrt_version: str, gpu_name: str, compute_capability, **extra) -> dict:
    """What an engine was built for, in the keys `read_engine_metadata` and the compatibility check read.

    Args:
        tensorrt_version: `tensorrt.__version__` at build time.
        gpu_name, compute_capability: the build GPU (capability as (major, minor) or "8.9").
        **extra: the other ENGINE_KEYS (profiles, precision, builder_optimization_level, ...).
    """
    unknown = sorted(set(extra) - set(ENGINE_KEYS))
    if unknown:
        raise ValueError(f"unknown engine metadata key(s) {unknown}; expected {ENGINE_KEYS}")
    cc = compute_capability
    cc = ".".join(str(int(x)) for x in cc) if isinstance(cc, (list, tuple)) else str(cc)
    return {"tensorrt_version": str(tensorrt_version), "gpu_name": str(gpu_name), "compute_capability": cc, **extra}


def write_engine_metadata(folder: Path, record: dict) -> Path:
    """`folder/engine.json` (one file for every engine of the folder)."""
    return atomic_write_text(Path(folder) / ENGINE_META_NAME, json.dumps(record, indent=2) + "\n")


def read_engine_metadata(engine_path: Path) -> dict:
    """The metadata JSON beside an engine (`model.engine.json`, `model.json` or `engine.json`), {} if none."""
    engine_path = Path(engine_path)
    for candidate in (engine_path.with_name(engine_path.name + ".json"), engine_path.with_suffix(".json"),
                      engine_path.parent / ENGINE_META_NAME):
        if candidate.is_file():
            data = read_json(candidate, ArtifactError, "missing")
            return dict(_expect(data, (dict,), str(candidate), "an object of engine metadata"))
    return {}


def entry_engine_metadata(entry: ArtifactEntry, engine_path: Path) -> dict:
    """An engine's metadata: the file beside it, then what the entry recorded (`options.engine`, versions)."""
    meta = {**read_engine_metadata(engine_path), **_expect(entry.options.get("engine", {}), (dict,),
                                                           f"{entry.name}: `options.engine`", "an object")}
    if entry.versions.get("tensorrt"):
        meta.setdefault("tensorrt_version", entry.versions["tensorrt"])
    return meta
