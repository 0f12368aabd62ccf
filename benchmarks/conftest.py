"""pytest-benchmark suites, one per backend: one engine call on a fixed batch of tiles.

Options (see benchmarks/README.md): --preset tiny|base (default tiny), --tile, --batch, --threads,
--device (torch), --rounds, --warmup-rounds. Artifacts are exported once per preset/tile into
pytest's cache folder (`.pytest_cache/d/vpdsr-artifacts`) and reused while the model and the
export settings are unchanged (the export's cache key decides).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def pytest_addoption(parser):
    group = parser.getgroup("vpdsr benchmarks")
    group.addoption("--preset", default="tiny", help="model preset or directory (default tiny; base = ResShift scale)")
    group.addoption("--tile", type=int, default=64, help="LR tile size of every call (default 64)")
    group.addoption("--batch", type=int, default=1, help="tiles per call (default 1)")
    group.addoption("--threads", type=int, default=0, help="CPU threads (0: the library default)")
    group.addoption("--device", default="cpu", help="torch device for the torch suite (cpu, cuda)")
    group.addoption("--rounds", type=int, default=10, help="timed rounds per benchmark (default 10)")
    group.addoption("--warmup-rounds", type=int, default=2, help="untimed rounds first (default 2)")


@pytest.fixture(scope="session")
def opts(request) -> dict:
    get = request.config.getoption
    return {k: get(k) for k in ("preset", "tile", "batch", "threads", "device", "rounds", "warmup_rounds")}


@pytest.fixture(scope="session")
def model(opts):
    from vpdsr.models import from_pretrained

    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    return from_pretrained(opts["preset"])


@pytest.fixture(scope="session")
def feed(opts, model) -> dict[str, np.ndarray]:
    """The same inputs for every backend: photo tiles and the noise field's crops (seed 0)."""
    from vpdsr.data.samples import load_sample
    from vpdsr.runtimes.noise import NoiseField

    t, b = opts["tile"], opts["batch"]
    photo = load_sample("astronaut")
    lr = np.stack([photo[i * t : (i + 1) * t, i * t : (i + 1) * t].transpose(2, 0, 1) for i in range(b)])
    field = NoiseField(0, model.latent_channels)
    noise = np.stack([field.crop(i * t, i * t, t, t) for i in range(b)])
    return {"lr": np.ascontiguousarray(lr, dtype=np.float32), "noise": noise.astype(np.float32)}


@pytest.fixture(scope="session")
def artifacts_dir(request, opts, tmp_path_factory) -> Path:
    safe = str(opts["preset"]).replace("/", "_").strip("._") or "model"
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    root = Path(cache.mkdir("vpdsr-artifacts")) if cache is not None else tmp_path_factory.mktemp("artifacts")
    return root / f"{safe}-tile{opts['tile']}"


@pytest.fixture(scope="session")
def artifact_runner(opts, model, artifacts_dir):
    """`artifact_runner(target)` -> an inactive Runner for that export target, or pytest.skip with the reason."""
    from vpdsr.errors import VpdsrError

    def make(target: str):
        from vpdsr.export.api import export
        from vpdsr.runtimes import load

        manifest = export(model, artifacts_dir, target, tile=opts["tile"])
        entry = manifest.entry(target)
        if entry.status != "ok":
            pytest.skip(f"{target}: export {entry.status}: {entry.reason}")
        kwargs = {"threads": opts["threads"]} if opts["threads"] and entry.backend != "tensorrt" else {}
        try:
            return load(artifacts_dir / entry.name, **kwargs)
        except VpdsrError as e:
            pytest.skip(f"{target}: {e}")

    return make


def run_benchmark(benchmark, runner, feed: dict, opts: dict) -> None:
    """Time `runner.infer(feed)` with pytest-benchmark; a runner that cannot start here is skipped."""
    from vpdsr.errors import VpdsrError

    try:
        runner.activate()
    except VpdsrError as e:
        pytest.skip(f"{runner.name}: {e}")
    try:
        benchmark.extra_info.update(backend=runner.backend, precision=runner.precision, device=str(runner.device),
                                    preset=str(opts["preset"]), tile=opts["tile"], batch=opts["batch"])
        out = benchmark.pedantic(runner.infer, args=(feed,), rounds=opts["rounds"],
                                 warmup_rounds=opts["warmup_rounds"], iterations=1)
        assert out["sr"].shape == (opts["batch"], 3, 4 * opts["tile"], 4 * opts["tile"])
        assert np.isfinite(out["sr"]).all()
    finally:
        runner.deactivate()
