"""The machine's own measurements, which the tests only inject: matmul peaks, onnxruntime's int8 kernels
(u8 x s8 vs s8 x s8, the `ort-int8` format probe), the thread-count probe and auto tiling's trial calls.

    pytest benchmarks/test_bench_machine.py --threads 2        # --threads 0: torch's current count

Each result's `extra_info` holds the figures the library would use (the peaks table, GOP/s per kernel, the
chosen format and thread count, the chosen tiling), saved with `--benchmark-autosave`.
"""
from __future__ import annotations

import pytest


def _threads(opts) -> int:
    import torch

    return opts["threads"] or torch.get_num_threads()


def test_matmul_peaks(benchmark, opts):
    from vpdsr.bench.peak import measure_peaks

    peaks = benchmark.pedantic(measure_peaks, args=(_threads(opts),), rounds=1, iterations=1)
    benchmark.extra_info.update(threads=peaks["threads"], size=peaks["size"], peak=peaks["peak"],
                                figures=peaks["figures"])
    assert peaks["peak"]["fp32"]["gflops"] > 0


@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_ort_int8_kernel(benchmark, activations):
    pytest.importorskip("onnxruntime", reason="pip install 'vpdsr[onnx]'")
    from vpdsr.runtimes.int8_formats import _matmul_integer_rate, ort_int8_format

    gops = benchmark.pedantic(_matmul_integer_rate, args=(activations,), rounds=3, iterations=1)
    fmt = ort_int8_format()
    benchmark.extra_info.update(activations=activations, gops=round(gops, 1), chosen=fmt.activations,
                                reason=fmt.reason)
    assert gops > 0


def test_thread_probe(benchmark):
    from vpdsr.env import probe_threads

    result = benchmark.pedantic(probe_threads, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["threads"] in (1, result["max_threads"])


def test_auto_tiling_trials(benchmark, model, opts):
    import numpy as np

    from vpdsr.runtimes.autotile import AutoTileConfig, AutoTiler
    from vpdsr.runtimes.torch_runner import TorchRunner

    with TorchRunner(model, device=opts["device"]) as runner:
        def choose():
            tiler = AutoTiler(runner, AutoTileConfig(max_tile=128))
            return tiler, tiler.for_size(200, 150)

        tiler, tiles = benchmark.pedantic(choose, rounds=1, iterations=1)
    record = tiler.choices["200x150"]
    benchmark.extra_info.update(why=record["why"], candidates=record["candidates"])
    assert tiles.tile is None or tiles.tile > 0
    assert all(c["predicted_ms"] is None or np.isfinite(c["predicted_ms"]) for c in record["candidates"])
