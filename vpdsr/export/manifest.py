"""The artifacts directory contract: one folder per target plus `manifest.json`.

    ARTIFACTS/
      manifest.json              every entry below, plus the model it came from
      onnx/artifact.json         the entry of this artifact alone (so a folder loads by itself)
      onnx/model.onnx
      openvino-int8/artifact.json, model.xml, model.bin
      ...

An entry lists the artifact's target, precision, files with sha256, input shapes/profiles, the
calibration set (count and hash), tool versions and the validation figures against the torch
reference. Loading verifies the hashes, so a file changed after export is refused in one line.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vpdsr.errors import ArtifactError
from vpdsr.utils import atomic_write_text, read_json, sha256_file

SCHEMA = 1
MANIFEST_NAME = "manifest.json"
ENTRY_NAME = "artifact.json"


@dataclass
class FileEntry:
    path: str  # relative to the artifact's folder
    sha256: str
    bytes: int


@dataclass
class ArtifactEntry:
    """One exported artifact. `status` is ok / skipped / failed; skipped and failed ones carry `reason`."""

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "artifact") -> "ArtifactEntry":
        try:
            d = dict(d)
            d["files"] = [FileEntry(**f) for f in d.get("files", [])]
            return cls(**d)
        except TypeError as e:
            raise ArtifactError(f"{source}: not a vpdsr artifact entry ({e})") from None

    def verify(self, folder: Path) -> None:
        """Raise ArtifactError unless every listed file exists with the recorded sha256."""
        if self.status != "ok":
            raise ArtifactError(f"{folder}: artifact {self.name!r} is {self.status}: {self.reason}")
        if not self.files:
            raise ArtifactError(f"{folder / ENTRY_NAME}: lists no files")
        for f in self.files:
            p = folder / f.path
            if not p.is_file():
                raise ArtifactError(f"{p}: missing (listed in {folder / ENTRY_NAME})")
            digest = sha256_file(p)
            if digest != f.sha256:
                raise ArtifactError(
                    f"{p}: sha256 mismatch (file {digest[:12]}..., manifest {f.sha256[:12]}...): changed after export"
                )


def file_entries(folder: Path) -> list[FileEntry]:
    """Hash every file in an artifact folder except its own entry and hidden temporaries."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ENTRY_NAME and not p.name.startswith("."):
            out.append(FileEntry(path=str(p.relative_to(folder)), sha256=sha256_file(p), bytes=p.stat().st_size))
    return out


def write_entry(folder: Path, entry: ArtifactEntry) -> Path:
    return atomic_write_text(Path(folder) / ENTRY_NAME, json.dumps(entry.to_dict(), indent=2) + "\n")


def read_entry(folder: Path) -> ArtifactEntry:
    path = Path(folder) / ENTRY_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder}: not an artifact folder (no {ENTRY_NAME}); run `vpdsr export` to make one")
    data = read_json(path, ArtifactError, "missing")
    return ArtifactEntry.from_dict(data, str(path))


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
    def read(cls, directory: Path) -> "Manifest":
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ArtifactError(f"{directory}: no {MANIFEST_NAME}; expected a `vpdsr export` output folder")
        d = read_json(path, ArtifactError, "missing")
        if not isinstance(d, dict):
            raise ArtifactError(f"{path}: expected a JSON object")
        if d.get("schema") != SCHEMA:
            raise ArtifactError(f"{path}: schema {d.get('schema')!r}, this vpdsr reads schema {SCHEMA}")
        return cls(model=d.get("model", {}), schema=d["schema"], vpdsr_version=d.get("vpdsr_version", ""),
                   artifacts=[ArtifactEntry.from_dict(a, str(path)) for a in d.get("artifacts", [])])
