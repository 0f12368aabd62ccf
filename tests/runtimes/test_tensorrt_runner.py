"""TensorRTRunner: the contract where TensorRT and a CUDA GPU exist (skipped with the reason elsewhere),
and the engine compatibility check, which is plain Python and runs everywhere."""
from __future__ import annotations

import json

import pytest

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import SIZE, export_fused_onnx, tiny_model
from vpdsr.artifacts import ArtifactEntry, file_entries, write_entry
from vpdsr.errors import ArtifactError
from vpdsr.runtimes import load
from vpdsr.runtimes.tensorrt_runner import check_engine_compatibility, read_engine_metadata


def tensorrt_skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"tensorrt cannot be imported here ({e}); TensorRT runs only on CUDA machines"
    import torch

    return None if torch.cuda.is_available() else "no CUDA device"


def build_engine(onnx_path, engine_path) -> dict:
    """A strongly typed engine of the fp16 graph (the export's own builder), one profile covering the
    contract's shapes; returns its metadata."""
    from vpdsr.export.fp16 import convert_fp16
    from vpdsr.export.tensorrt_engine import build_engine as build

    half = convert_fp16(onnx_path, onnx_path.with_name("model-fp16.onnx"))
    c = tiny_model().latent_channels
    shapes = {name: {"min": [1, ch, 8, 8], "opt": [1, ch, SIZE, SIZE], "max": [2, ch, SIZE, SIZE]}
              for name, ch in (("lr", 3), ("noise", c))}
    return build(half, engine_path, shapes, device="cuda")


class TestTensorRTFp16(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return tensorrt_skip_reason()

    def make_artifact(self, folder):
        folder = folder / "tensorrt-fp16"
        folder.mkdir()
        meta = build_engine(export_fused_onnx(folder.parent / "model.onnx"), folder / "model.engine")
        (folder / "model.engine.json").write_text(json.dumps(meta))
        write_entry(folder, ArtifactEntry(name=folder.name, target="tensorrt-fp16", backend="tensorrt",
                                          precision="fp16", files=file_entries(folder)))
        return folder

    def make_runner(self, artifact):
        return load(artifact)


META = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA L4", "compute_capability": [8, 9]}


def test_versions_are_compared_as_numbers():
    built = {**META, "tensorrt_version": "10.12.0.36", "version_compatible": True}
    check_engine_compatibility(built, "10.12.0", "NVIDIA L4", (8, 9))  # only the build number differs
    check_engine_compatibility(built, "10.13.1", "NVIDIA L4", (8, 9))  # a later 10.x runs a version-compatible engine
    with pytest.raises(ArtifactError, match="built with TensorRT 10.12.0.36, this machine has TensorRT 10.9.0"):
        check_engine_compatibility(built, "10.9.0", "NVIDIA L4", (8, 9))  # "10.9" > "10.12" as strings: older here
    # an ampere+ engine runs on compute capability 10.0 ("10.0" < "8.0" as text)
    check_engine_compatibility({**META, "hardware_compatibility": "ampere+"}, "10.3.0", "NVIDIA B200", (10, 0))


def test_same_tensorrt_and_gpu_are_accepted():
    check_engine_compatibility(META, "10.3.0.26", "NVIDIA L4", (8, 9))
    check_engine_compatibility({}, "10.3.0", "any", (9, 0))  # nothing recorded: TensorRT itself decides


def test_other_tensorrt_version_is_refused_in_one_line():
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0, this machine has TensorRT 10.7.0") as e:
        check_engine_compatibility(META, "10.7.0", "NVIDIA L4", (8, 9), "a/model.engine")
    assert "\n" not in str(e.value) and "a/model.engine" in str(e.value)
    # version-compatible engines run on later TensorRT 10 releases, not earlier ones or 11
    compatible = {**META, "version_compatible": True}
    check_engine_compatibility(compatible, "10.7.0", "NVIDIA L4", (8, 9))
    with pytest.raises(ArtifactError):
        check_engine_compatibility(compatible, "10.1.0", "NVIDIA L4", (8, 9))


def test_other_gpu_architecture_is_refused_unless_hardware_compatible():
    with pytest.raises(ArtifactError, match=r"built for NVIDIA L4 \(compute capability 8.9\), this GPU is NVIDIA H100"):
        check_engine_compatibility(META, "10.3.0", "NVIDIA H100", (9, 0))
    check_engine_compatibility({**META, "hardware_compatibility": "ampere+"}, "10.3.0", "NVIDIA H100", (9, 0))
    with pytest.raises(ArtifactError):  # ampere+ does not reach back to Turing
        check_engine_compatibility({**META, "hardware_compatibility": "ampere+"}, "10.3.0", "T4", (7, 5))


def test_metadata_is_read_from_beside_the_engine(tmp_path):
    engine = tmp_path / "model.engine"
    assert read_engine_metadata(engine) == {}
    (tmp_path / "model.engine.json").write_text(json.dumps(META))
    assert read_engine_metadata(engine) == META
    (tmp_path / "model.engine.json").write_text("{oops")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_engine_metadata(engine)


def test_engine_metadata_round_trip_from_the_export_writer_to_the_runner(tmp_path):
    """What the export writes (`engine_record` -> engine.json and `options.engine`) is what the runner reads."""
    import importlib.util

    from vpdsr.artifacts import ENGINE_KEYS, engine_record, entry_engine_metadata, read_entry, write_engine_metadata

    folder = tmp_path / "tensorrt-fp16"
    folder.mkdir()
    (folder / "model.plan").write_bytes(b"\0" * 64)
    record = engine_record("10.3.0.26", "NVIDIA L4", (8, 9), builder_optimization_level=3, precision="fp16")
    profiles = {"model": {"lr": {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}}}
    write_engine_metadata(folder, {**record, "profiles": profiles})
    write_entry(folder, ArtifactEntry(name=folder.name, target="tensorrt-fp16", backend="tensorrt", precision="fp16",
                                      files=file_entries(folder), versions={"tensorrt": "10.3.0.26"},
                                      options={"graphs": {"model": "model.plan"}, "engine": record}))
    beside = read_engine_metadata(folder / "model.plan")
    assert beside == {**record, "profiles": profiles} and set(beside) <= set(ENGINE_KEYS)
    meta = entry_engine_metadata(read_entry(folder), folder / "model.plan")  # what `load` hands the runner
    assert meta["tensorrt_version"] == "10.3.0.26" and meta["gpu_name"] == "NVIDIA L4"
    assert meta["compute_capability"] == "8.9" and meta["profiles"] == profiles
    check_engine_compatibility(meta, "10.3.0", "NVIDIA L4", (8, 9))  # the same machine accepts it
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0.26, this machine has TensorRT 10.7.0"):
        check_engine_compatibility(meta, "10.7.0", "NVIDIA L4", (8, 9))
    with pytest.raises(ArtifactError, match=r"built for NVIDIA L4 \(compute capability 8.9\)"):
        check_engine_compatibility(meta, "10.3.0", "NVIDIA H100", (9, 0))
    if importlib.util.find_spec("tensorrt") is None:  # with TensorRT present, load checks this machine at once
        assert load(folder).metadata == meta
