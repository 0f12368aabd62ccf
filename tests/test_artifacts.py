"""The artifact contract: path rules and field-by-field checks of manifest.json / artifact.json,
refused in one line (exit 2 through the CLI) before any listed file is opened."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vpdsr.artifacts import ArtifactEntry, Manifest, file_entries, read_entry, resolve_inside, write_entry
from vpdsr.cli import main
from vpdsr.errors import ArtifactError
from vpdsr.runtimes import load
from vpdsr.utils import sha256_file

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(Path(args[0] if not isinstance(args[0], bytes) else args[0].decode()).resolve()))


sys.addaudithook(_audit)  # Python's own audit events: every open() the process makes


@contextlib.contextmanager
def opened_files():
    """Record the resolved path of every file opened inside the block."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


@pytest.fixture
def layout(tmp_path):
    """An export folder with one artifact `onnx/` (a dummy graph file) and a secret file beside it."""
    root = tmp_path / "artifacts"
    folder = root / "onnx"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"graph bytes")
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"not yours to read")
    entry = ArtifactEntry(name="onnx", target="onnx", backend="onnxruntime", precision="fp32",
                          files=file_entries(folder), options={"graphs": {"model": "model.onnx"}})
    write_entry(folder, entry)
    Manifest(model={"source": "tests"}, artifacts=[entry]).write(root)
    return root, folder, secret


def rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("bad", ["../secret.onnx", "{secret}", "sub/../../secret.onnx", "C:\\secret.onnx", ""])
def test_climbing_or_absolute_path_is_refused_before_anything_is_opened(layout, bad):
    root, folder, secret = layout
    bad = bad.format(secret=secret)

    def climb(d):
        d["files"] = [{"path": bad, "sha256": sha256_file(secret), "bytes": secret.stat().st_size}]
        d["options"]["graphs"]["model"] = bad

    rewrite(folder / "artifact.json", climb)
    with opened_files() as opened, pytest.raises(ArtifactError) as e:
        load(folder)
    assert "relative" in one_line(e)
    assert str((folder / "artifact.json").resolve()) in opened  # the hook sees what is opened
    assert str(secret.resolve()) not in opened


def test_link_that_leaves_the_folder_is_refused_before_hashing(layout):
    root, folder, secret = layout
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(secret)
    rewrite(folder / "artifact.json",
            lambda d: d["files"][0].update(sha256=sha256_file(secret), bytes=secret.stat().st_size))
    with opened_files() as opened, pytest.raises(ArtifactError) as e:
        load(folder)
    assert "outside the artifact folder" in one_line(e) and "model.onnx" in str(e.value)
    assert str(secret.resolve()) not in opened


def test_link_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "real.bin").write_bytes(b"x")
    (tmp_path / "link.bin").symlink_to(tmp_path / "real.bin")
    assert resolve_inside(tmp_path, "link.bin") == (tmp_path / "real.bin").resolve()


def test_graph_not_listed_in_files_is_refused(layout):
    root, folder, secret = layout
    (folder / "other.onnx").write_bytes(b"unlisted")
    rewrite(folder / "artifact.json", lambda d: d["options"]["graphs"].update(model="other.onnx"))
    with pytest.raises(ArtifactError) as e:
        read_entry(folder)
    assert "`options.graphs.model` is 'other.onnx', which `files` does not list" in one_line(e)


def _entry0(change):
    return lambda d: change(d["artifacts"][0])


MANIFEST_CASES = {
    "artifacts a string": (lambda d: d.update(artifacts="abc"), "`artifacts` must be a list"),
    "artifacts a number": (lambda d: d.update(artifacts=5), "`artifacts` must be a list"),
    "whole manifest a list": (lambda d: (d.clear(), d.update(schema=1, model=[])), "`model` must be an object"),
    "options a string": (_entry0(lambda e: e.update(options="abc")), "`artifacts[0]`: `options` must be an object"),
    "path a number": (_entry0(lambda e: e["files"][0].update(path=5)), "`files[0]`.path must be a relative path"),
    "files a string": (_entry0(lambda e: e.update(files="abc")), "`files` must be a list"),
    "tile a string": (_entry0(lambda e: e.update(tile="64")), "`tile` must be an integer or null"),
    "dynamic a string": (_entry0(lambda e: e.update(dynamic="yes")), "`dynamic` must be a boolean"),
    "bad sha256": (_entry0(lambda e: e["files"][0].update(sha256="zz")), "sha256 must be 64 lowercase hex"),
    "negative bytes": (_entry0(lambda e: e["files"][0].update(bytes=-1)), "bytes must be >= 0"),
    "climbing name": (_entry0(lambda e: e.update(name="../onnx")), "`name` is '../onnx'"),
    "nested name": (_entry0(lambda e: e.update(name="a/onnx")), "one plain folder name"),
    "missing name": (_entry0(lambda e: e.pop("name")), "missing field(s) name"),
    "unknown field": (_entry0(lambda e: e.update(extra=1)), "unknown field(s) extra"),
    "unknown status": (_entry0(lambda e: e.update(status="done")), "`status` must be one of ok, skipped, failed"),
    "entry a string": (lambda d: d.update(artifacts=["abc"]), "`artifacts[0]` must be an artifact entry"),
    "two entries one name": (lambda d: d["artifacts"].append(d["artifacts"][0]), "names an artifact twice"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_malformed_manifest_is_one_line_exit_2(layout, case, tmp_path, capsys):
    root, folder, secret = layout
    change, needle = MANIFEST_CASES[case]
    rewrite(root / "manifest.json", change)
    with pytest.raises(ArtifactError) as e:
        Manifest.read(root)
    assert needle in one_line(e)
    image = tmp_path / "in.png"
    from vpdsr.data.io import write_image

    write_image(image, np.zeros((8, 8, 3), np.float32))
    assert main(["upscale", str(image), "--artifact", str(root), "--target", "onnx", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_written_entry_reads_back_equal(layout):
    root, folder, _ = layout
    assert read_entry(folder) == Manifest.read(root).artifacts[0]
