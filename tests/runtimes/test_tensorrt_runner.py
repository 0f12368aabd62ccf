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


def build_engine(onnx_path, engine_path, fp16: bool = True) -> dict:
    """A TensorRT 10 engine with one dynamic profile covering the contract's shapes; returns its metadata."""
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), parser.get_error(0)
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    c = tiny_model().latent_channels
    for name, ch in (("lr", 3), ("noise", c)):
        profile.set_shape(name, (1, ch, 8, 8), (1, ch, SIZE, SIZE), (2, ch, SIZE, SIZE))
    config.add_optimization_profile(profile)
    engine_path.write_bytes(bytes(builder.build_serialized_network(network, config)))
    return {"tensorrt_version": trt.__version__, "gpu_name": torch.cuda.get_device_name(),
            "compute_capability": list(torch.cuda.get_device_capability())}


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
