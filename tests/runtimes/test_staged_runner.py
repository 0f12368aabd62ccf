"""StagedRunner over split artifacts (encoder/denoiser/decoder graphs): the contract and per-stage times."""
from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.test_runner_contract import RunnerContract
from tests.runtimes.tiny_artifacts import inputs, onnx_artifact, tiny_model, torch_reference
from vpdsr.errors import ArtifactError
from vpdsr.runtimes import load
from vpdsr.runtimes.staged import StagedRunner
from vpdsr.runtimes.torch_runner import TorchRunner

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vpdsr[onnx]')")


class TestStagedOnnxRuntime(RunnerContract):
    psnr_floor = 60.0

    def make_artifact(self, folder):
        return onnx_artifact(folder / "onnx-split", stages="split")

    def make_runner(self, artifact):
        return load(artifact, threads=1)


class TestStagedOpenVINO(RunnerContract):
    psnr_floor = 60.0

    def skip_reason(self):
        import importlib.util

        return None if importlib.util.find_spec("openvino") else "openvino not installed"

    def make_artifact(self, folder):
        return onnx_artifact(folder / "onnx-split", stages="split")

    def make_runner(self, artifact):
        return load(artifact, backend="openvino", threads=1)


def test_split_artifact_reports_per_stage_times_and_matches_torch(tmp_path):
    feed = inputs(seed=51)
    with load(onnx_artifact(tmp_path / "onnx-split", stages="split")) as r:
        assert isinstance(r, StagedRunner)
        sr = r.infer(feed)["sr"]
        assert set(r.stage_times) == {"encoder", "denoiser", "decoder"}
        assert all(t > 0 for t in r.stage_times.values())
        assert r.last_inference_time() >= sum(r.stage_times.values())
    np.testing.assert_allclose(sr, torch_reference(feed), atol=1e-4)


def test_miswired_stages_are_refused_at_activate():
    full = TorchRunner(tiny_model())  # takes lr and noise: not an encoder
    with pytest.raises(ArtifactError, match="encoder must take one input `lr`"):
        StagedRunner(full, full, full).activate()
    assert not full.is_active  # stages activated before the failure are closed again
