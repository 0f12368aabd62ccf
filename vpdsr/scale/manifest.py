"""`upscale.json`: the run folder's manifest, what makes `vpdsr upscale` resumable and idempotent.

One file per output folder, written only by the process that drives the job (never by workers), always
atomically (temporary name, then rename), at most every `flush_s` seconds while the job runs and at the
end. It holds:
- `model`: what ran the images (artifact files' or model tensors' sha256), `settings`: what the output
  bytes depend on, and `key`, the hash of both;
- `images`: one record per input (its sha256, the output file and its sha256, the noise seed, seconds,
  the worker, process and node that made it, attempts);
- `failures`: inputs that could not be made, with the one-line reason (tried again by the next run);
- `runs`: one entry per invocation (engine, workers, counts, images/s, per-node counts, lost workers).

A rerun skips an input whose record is done with the same input sha256 and key and whose output file is
still there with the recorded sha256; everything else (new, changed, failed, output missing or edited,
other model or settings) is made again. An output written after the last flush (the driver was killed)
has no record and is made again: records are what count, never files alone.

Example:
    >>> m = RunManifest.load_or_new(Path("runs/up"), key="...", model={...}, settings={...})  # doctest: +SKIP
    >>> m.is_done(task)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from vpdsr.errors import InputError
from vpdsr.utils import atomic_write_text, sha256_file

NAME = "upscale.json"
SCHEMA = 1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunManifest:
    """The manifest of one output folder (see the module docstring)."""

    def __init__(self, folder: Path, data: dict):
        self.folder = Path(folder)
        self.path = self.folder / NAME
        self.data = data
        self._images: dict[str, dict] = {r["input"]: r for r in data.get("images", [])}
        self._failures: dict[str, dict] = {r["input"]: r for r in data.get("failures", [])}
        self._last_flush = 0.0

    @classmethod
    def load_or_new(cls, folder: Path, key: str, model: dict, settings: dict) -> RunManifest:
        """The folder's manifest (a new one if absent); its key, model and settings become the current ones.

        Raises:
            InputError: upscale.json exists but is not a manifest this version reads.
        """
        path = Path(folder) / NAME
        data = {"schema": SCHEMA, "images": [], "failures": [], "runs": []}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InputError(f"{path}: not a readable run manifest ({e}); move it away to start afresh") from e
            schema = data.get("schema") if isinstance(data, dict) else None
            if schema != SCHEMA:
                raise InputError(f"{path}: not a run manifest of schema {SCHEMA} (schema {schema}); "
                                 "move it away to start afresh")
        data.update(key=key, model=model, settings=settings)
        return cls(folder, data)

    # -- what is done ------------------------------------------------------------------------------
    def record(self, input_path: str) -> dict | None:
        return self._images.get(input_path)

    def is_done(self, input_path: str, sha256: str) -> bool:
        """The input's output exists as recorded, made from these input bytes with the current key."""
        r = self._images.get(input_path)
        if not r or r.get("status") != "done" or r.get("sha256") != sha256 or r.get("key") != self.data["key"]:
            return False
        out = self.folder / r["output"]
        try:
            return out.stat().st_size == r.get("output_bytes") and sha256_file(out) == r.get("output_sha256")
        except OSError:
            return False

    def stale_output(self, input_path: str, new_output: str) -> Path | None:
        """An earlier output of this input under another name (its replacement is being made), to remove."""
        r = self._images.get(input_path)
        if r and r.get("output") and r["output"] != new_output:
            return self.folder / r["output"]
        return None

    # -- updates -------------------------------------------------------------------------------------
    def add_done(self, record: dict) -> None:
        self._failures.pop(record["input"], None)
        self._images[record["input"]] = {**record, "key": self.data["key"], "finished": _now()}

    def add_failure(self, input_path: str, reason: str, **extra) -> None:
        self._images.pop(input_path, None)
        self._failures[input_path] = {"input": input_path, "reason": reason, **extra, "when": _now()}

    def keep_failures_of(self, inputs: set[str]) -> None:
        """Forget failures of inputs this run does not name (`failures` are the current inputs')."""
        self._failures = {k: v for k, v in self._failures.items() if k in inputs}

    def start_run(self, run: dict) -> dict:
        run = {"started": _now(), **run}
        self.data.setdefault("runs", []).append(run)
        return run

    @property
    def failures(self) -> list[dict]:
        return list(self._failures.values())

    @property
    def images(self) -> list[dict]:
        return list(self._images.values())

    def flush(self, force: bool = False, every_s: float = 1.0) -> None:
        """Write upscale.json atomically (at most every `every_s` seconds unless `force`)."""
        now = time.monotonic()
        if not force and now - self._last_flush < every_s:
            return
        self.data["images"] = sorted(self._images.values(), key=lambda r: r["input"])
        self.data["failures"] = sorted(self._failures.values(), key=lambda r: r["input"])
        self.data["updated"] = _now()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")
        self._last_flush = now


def relative_output(folder: Path, output: Path) -> str:
    """How a record names its output: relative to the run folder (the folder can be moved)."""
    return os.path.relpath(output, folder)
