"""OpenVINORunner: the contract in f32 and bf16, and the execution precision always pinned."""
from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import export_fused_onnx, openvino_artifact
from vpdsr.errors import CapabilityError, ConfigError
from vpdsr.runtimes import load
from vpdsr.runtimes.openvino_runner import OpenVINORunner

ov = pytest.importorskip("openvino", reason="openvino not installed (pip install 'vpdsr[openvino]')")
CAPS = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class TestOpenVINOF32(RunnerContract):
    psnr_floor = 60.0

    def make_artifact(self, folder):
        return openvino_artifact(folder / "openvino-fp32", "fp32")

    def make_runner(self, artifact):
        return load(artifact, threads=1)


class TestOpenVINOBf16(RunnerContract):
    psnr_floor = 40.0

    def skip_reason(self):
        return None if "BF16" in CAPS else f"this CPU cannot execute bf16 in OpenVINO (capabilities {sorted(CAPS)})"

    def make_artifact(self, folder):
        return openvino_artifact(folder / "openvino-bf16", "bf16")

    def make_runner(self, artifact):
        return load(artifact, threads=1)


@pytest.fixture(scope="module")
def f32_artifact(tmp_path_factory):
    return openvino_artifact(tmp_path_factory.mktemp("ov") / "openvino-fp32", "fp32")


def test_precision_is_pinned_even_where_the_cpu_default_differs(f32_artifact):
    """On AMX/AVX512-BF16 CPUs OpenVINO executes bf16 unless told otherwise; the f32 artifact must run f32."""
    folder = f32_artifact
    with load(folder) as r:
        assert r.config()["INFERENCE_PRECISION_HINT"] == "f32"
        assert r.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    if "BF16" in CAPS:
        with load(folder, precision="bf16") as r:  # an explicit override is honoured, and pinned too
            assert r.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"


def test_onnx_file_runs_in_openvino_with_performance_hint_and_streams(tmp_path):
    from tests.runtimes.tiny_artifacts import inputs, psnr, torch_reference

    feed = inputs(seed=31)
    with OpenVINORunner(export_fused_onnx(tmp_path / "m.onnx"), performance_hint="THROUGHPUT", streams=1,
                        threads=1) as r:
        assert r.compiled.get_property("NUM_STREAMS") == 1
        assert psnr(r.infer(feed)["sr"], torch_reference(feed)) >= 60.0


@pytest.mark.skipif("FP16" in CAPS, reason="this CPU executes f16")
def test_f16_on_a_cpu_without_it_is_refused_in_one_line(tmp_path):
    r = OpenVINORunner(export_fused_onnx(tmp_path / "m.onnx"), precision="f16")
    with pytest.raises(CapabilityError, match="cannot execute in f16") as e:  # a skip, not a broken artifact
        r.activate()
    assert "\n" not in str(e.value)


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="performance_hint"):
        OpenVINORunner(tmp_path / "m.xml", performance_hint="FAST")
    with pytest.raises(ConfigError, match="precision"):
        OpenVINORunner(tmp_path / "m.xml", precision="int8")


def test_auto_hint_runs_tile_batches_on_throughput_streams(f32_artifact):
    from tests.runtimes.tiny_artifacts import inputs

    feed = inputs(batch=3, seed=7)
    with load(f32_artifact) as r:
        assert r.performance_hint == "AUTO" and r.config()["PERFORMANCE_HINT"] == "LATENCY"
        singles = [r.infer({k: v[i : i + 1] for k, v in feed.items()})["sr"] for i in range(3)]
        assert r._throughput is None  # batch 1 runs on the LATENCY compile only
        batch = r.infer(feed)["sr"]
        compiled, _ = r._throughput
        assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"
        layers = r.kernel_summary()["layers"]
    np.testing.assert_allclose(batch, np.concatenate(singles), atol=1e-5)
    assert layers.get("Convolution f32", 0) > 0
