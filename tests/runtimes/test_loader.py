"""`vpdsr.runtimes.load`: picks the runner, verifies hashes, refuses what it cannot run in one line."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from tests.conftest import SMALL
from tests.runtimes.tiny_artifacts import export_dir, inputs, onnx_artifact, tiny_model, torch_reference
from vpdsr.artifacts import ArtifactEntry, file_entries, read_entry, write_entry
from vpdsr.errors import ArtifactError, ConfigError, MissingDependencyError
from vpdsr.export.api import export
from vpdsr.runtimes import execution_precision, load

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vpdsr[onnx]')")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino not installed")
    return export_dir(tmp_path_factory.mktemp("export") / "artifacts")


def one_line_error(exc_type, fn, *args, **kw) -> str:
    with pytest.raises(exc_type) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_file_changed_after_export_fails_with_sha256_mismatch(tmp_path):
    folder = onnx_artifact(tmp_path / "onnx")
    with load(folder):
        pass  # loads before the change
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last initializer: still a loadable graph, other weights
    model.write_bytes(bytes(data))
    msg = one_line_error(ArtifactError, load, folder)
    assert "sha256 mismatch" in msg and "model.onnx" in msg


def test_missing_file_is_named(tmp_path):
    folder = onnx_artifact(tmp_path / "onnx")
    (folder / "model.onnx").unlink()
    assert "missing" in one_line_error(ArtifactError, load, folder)


def test_not_an_artifact_and_unknown_backends(tmp_path):
    assert "not an artifact folder" in one_line_error(ArtifactError, load, tmp_path, backend="onnxruntime")
    folder = onnx_artifact(tmp_path / "onnx")
    assert "unknown backend 'tvm'" in one_line_error(ArtifactError, load, folder, backend="tvm")
    assert "cannot run with backend 'torch'" in one_line_error(ArtifactError, load, folder, backend="torch")
    entry = dataclasses.replace(read_entry(folder), backend="coreml")
    write_entry(folder, entry)
    assert "unknown backend 'coreml'" in one_line_error(ArtifactError, load, folder)


def test_skipped_artifact_says_why(tmp_path):
    folder = tmp_path / "tensorrt-fp16"
    folder.mkdir()
    write_entry(folder, ArtifactEntry(name=folder.name, target="tensorrt-fp16", backend="tensorrt", precision="fp16",
                                      status="skipped", reason="tensorrt is not installed"))
    assert "skipped: tensorrt is not installed" in one_line_error(ArtifactError, load, folder)


def test_entry_and_folder_and_a_file_inside_load_the_same(tmp_path):
    folder = onnx_artifact(tmp_path / "onnx")
    feed = inputs(seed=41)
    outs = []
    for runner in (load(read_entry(folder), folder), load(folder / "model.onnx"), load(str(folder))):
        with runner:
            assert runner.entry.target == "onnx" and runner.artifact_dir == folder
            outs.append(runner.infer(feed)["sr"])
    assert all(np.array_equal(outs[0], o) for o in outs)
    assert "needs the folder" in one_line_error(ConfigError, load, read_entry(folder))


def test_export_folder_picks_by_target_or_backend(exported):
    with load(exported, target="onnx") as r:
        assert r.backend == "onnxruntime"
    with load(exported, backend="openvino") as r:
        assert r.backend == "openvino" and r.precision == "fp32"
    msg = one_line_error(ArtifactError, load, exported)
    assert "2 artifacts match" in msg and "onnx" in msg and "openvino-fp32" in msg
    assert "no artifact 'onnx-fp16'" in one_line_error(ArtifactError, load, exported, target="onnx-fp16")


def test_onnx_artifact_also_runs_in_openvino(exported):
    feed = inputs(seed=42)
    with load(exported / "onnx", backend="openvino", threads=1) as r:
        assert r.backend == "openvino" and r.path.suffix == ".onnx"
        assert r.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        np.testing.assert_allclose(r.infer(feed)["sr"], torch_reference(feed), atol=1e-4)


def test_onnxruntime_precision_cannot_be_overridden(tmp_path):
    folder = onnx_artifact(tmp_path / "onnx")
    assert "fixed at export (fp32)" in one_line_error(ConfigError, load, folder, precision="bf16")


def test_execution_precision_recorded_by_the_export_is_used():
    def entry(precision, **options):
        return ArtifactEntry(name="x", target="openvino", backend="openvino", precision=precision, options=options)

    assert execution_precision(entry("bf16")) == "bf16"
    assert execution_precision(entry("int8")) == "fp32"  # quantized: the float parts run f32 unless told
    assert execution_precision(entry("int8", inference_precision="bf16")) == "bf16"
    assert execution_precision(entry("fp32", execution_precision="f16")) == "fp16"
    with pytest.raises(ConfigError, match="inference_precision"):
        execution_precision(entry("fp32", inference_precision="int4"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_engine_artifact_without_tensorrt_is_one_line_error(tmp_path):
    folder = tmp_path / "tensorrt-fp16"
    folder.mkdir()
    (folder / "model.engine").write_bytes(b"\0" * 64)
    write_entry(folder, ArtifactEntry(name=folder.name, target="tensorrt-fp16", backend="tensorrt", precision="fp16",
                                      files=file_entries(folder), versions={"tensorrt": "10.3.0"}))
    runner = load(folder)
    assert runner.backend == "tensorrt" and runner.metadata["tensorrt_version"] == "10.3.0"
    assert "tensorrt" in one_line_error(MissingDependencyError, runner.activate)


def test_importing_runtimes_loads_no_optional_backend():
    import subprocess
    import sys

    code = ("import sys, vpdsr.runtimes, vpdsr.runtimes.loader; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino', 'nncf', 'tensorrt', 'modelopt') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_graphs_are_found_from_file_names_when_the_entry_does_not_list_them(tmp_path):
    for stages in ("fused", "split"):
        folder = onnx_artifact(tmp_path / stages, stages=stages)
        entry = read_entry(folder)
        entry.options.pop("graphs")
        write_entry(folder, entry)
        feed = inputs(seed=43)
        with load(folder) as r:
            np.testing.assert_allclose(r.infer(feed)["sr"], torch_reference(feed), atol=1e-4)


def test_graph_of_another_format_is_refused(exported):
    msg = one_line_error(ArtifactError, load, exported / "openvino-fp32", backend="onnxruntime")
    assert "model.xml, which backend onnxruntime cannot read" in msg


def test_artifact_from_the_export_stage_loads_and_matches_torch(tmp_path):
    export(tiny_model(), tmp_path / "artifacts", "onnx", tile=16, dynamic=True, validation=SMALL)
    feed = inputs(batch=2, h=8, w=12, seed=44)
    with load(tmp_path / "artifacts", target="onnx") as r:
        assert r.entry.validation  # the export recorded its own figures
        np.testing.assert_allclose(r.infer(feed)["sr"], torch_reference(feed), atol=1e-4)
