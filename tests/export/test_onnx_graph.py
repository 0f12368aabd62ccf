"""fp32 ONNX graphs: dynamic H/W at any size (the denoiser's padding stays in the graph); split == fused."""
from __future__ import annotations

import numpy as np
import torch

from tests.export.conftest import tiny_model
from vpdsr.artifacts import STAGES
from vpdsr.export.onnx_graph import export_graph
from vpdsr.runtimes.onnxruntime_runner import OnnxRuntimeRunner


def ort_fn(path):
    """`fn(env) -> outputs` of one graph on the onnxruntime runner; inputs read by name from `env`."""
    runner = OnnxRuntimeRunner(path).activate()
    return lambda env: runner.infer({k: env[k] for k in runner.get_input_metadata()})


def run_chain(fns, feed):
    env = dict(feed)
    for fn in fns:
        env.update(fn(env))
    return env


def test_dynamic_graph_runs_sizes_that_are_not_multiples(tmp_path):
    model = tiny_model()
    fn = ort_fn(export_graph(model, "model", tmp_path / "m.onnx", 16, dynamic=True))
    for b, h, w in [(1, 16, 16), (2, 15, 9), (1, 7, 20)]:
        lr = np.random.default_rng(0).random((b, 3, h, w), dtype=np.float32)
        noise = np.random.default_rng(1).standard_normal((b, 48, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(lr), torch.from_numpy(noise)).numpy()
        got = fn({"lr": lr, "noise": noise})["sr"]
        assert got.shape == (b, 3, 4 * h, 4 * w)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_split_stages_chain_to_the_fused_output(tmp_path):
    model = tiny_model()
    fused = ort_fn(export_graph(model, "model", tmp_path / "model.onnx", 16, dynamic=False))
    chain = [ort_fn(export_graph(model, s, tmp_path / f"{s}.onnx", 16, dynamic=False)) for s in STAGES]
    feed = {"lr": np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32),
            "noise": np.random.default_rng(1).standard_normal((2, 48, 16, 16), dtype=np.float32)}
    env = run_chain(chain, feed)
    assert set(env) >= {"y", "x0", "sr"}
    np.testing.assert_allclose(env["sr"], fused(feed)["sr"], atol=1e-5)
