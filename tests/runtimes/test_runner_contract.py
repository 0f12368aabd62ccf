"""The Runner contract, written once (NNCF's template-test pattern).

Each backend's test module subclasses :class:`RunnerContract` and fills in the hooks:
`make_artifact(folder)` (builds the backend's artifact in `folder` once per class and returns its
path), `make_runner(artifact)` (a fresh, not yet active runner over it), `skip_reason()` (why
this backend cannot run here, or None), `psnr_floor` (dB against torch fp32) and `dynamic` (False
for static-shape engines, which then get `static_shape` inputs).
The class is not collected by itself (its name does not start with Test).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.runtimes.tiny_artifacts import SIZE, inputs, psnr, tiny_model, torch_reference
from vpdsr.errors import InputError, VpdsrError
from vpdsr.runtimes import tiling
from vpdsr.runtimes.base import Runner


class RunnerContract:
    psnr_floor: float = 60.0
    dynamic: bool = True  # False: the runner takes only `static_shape`
    static_shape: tuple[int, int, int] = (1, SIZE, SIZE)  # (batch, h, w) for static engines

    # -- hooks ------------------------------------------------------------------------------------
    def make_artifact(self, folder: Path) -> Path:
        return folder  # runners over an in-memory model need no artifact

    def make_runner(self, artifact: Path) -> Runner:
        raise NotImplementedError

    def skip_reason(self) -> str | None:
        return None

    # -- fixtures ---------------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _skip_if_unavailable(self):
        reason = self.skip_reason()
        if reason:
            pytest.skip(reason)

    @pytest.fixture(scope="class")
    def artifact(self, tmp_path_factory) -> Path:
        """The class's artifact, built once (exports and conversions are the slow part)."""
        if self.skip_reason():
            pytest.skip(self.skip_reason())
        return self.make_artifact(tmp_path_factory.mktemp(type(self).__name__))

    @pytest.fixture(scope="class")
    def runner(self, artifact):
        """One active runner shared by the class's tests."""
        with self.make_runner(artifact) as r:
            yield r

    def feed(self, batch: int = 1, h: int = SIZE, w: int = SIZE, seed: int = 0) -> dict[str, np.ndarray]:
        if not self.dynamic:
            batch, h, w = self.static_shape
        return inputs(batch, h, w, seed)

    # -- the contract -----------------------------------------------------------------------------
    def test_context_manager_activates_and_deactivates(self, artifact):
        r = self.make_runner(artifact)
        assert not r.is_active
        with r as active:
            assert active is r and r.is_active
            assert r.infer(self.feed())["sr"].shape[1] == 3
        assert not r.is_active
        with r:  # a runner can be activated again after it was closed
            assert r.is_active

    def test_infer_before_activate_raises(self, artifact):
        r = self.make_runner(artifact)
        with pytest.raises(VpdsrError, match="not active"):
            r.infer(self.feed())

    def test_input_metadata_names_and_dtypes(self, runner):
        meta = runner.get_input_metadata()
        assert set(meta) == {"lr", "noise"}
        assert meta["lr"][0] == meta["noise"][0] == "float32"
        assert meta["lr"][1][1] == 3
        assert runner.noise_channels == tiny_model().latent_channels

    def test_wrong_input_names_give_input_error(self, runner):
        feed = self.feed()
        with pytest.raises(InputError, match="noise"):
            runner.infer({"lr": feed["lr"]})
        with pytest.raises(InputError, match="image"):
            runner.infer({**feed, "image": feed["lr"]})

    def test_wrong_dtype_gives_input_error(self, runner):
        feed = self.feed()
        with pytest.raises(InputError, match="float64"):
            runner.infer({**feed, "lr": feed["lr"].astype(np.float64)})
        with pytest.raises(InputError, match="numpy"):
            runner.infer({**feed, "lr": feed["lr"].tolist()})

    def test_wrong_shape_gives_input_error(self, runner):
        feed = self.feed()
        with pytest.raises(InputError, match="`noise` has shape"):
            runner.infer({**feed, "noise": feed["noise"][:, :5]})
        with pytest.raises(InputError, match="`lr` has shape"):
            runner.infer({**feed, "lr": feed["lr"][0]})

    def test_output_shape_dtype_and_range(self, runner):
        feed = self.feed(batch=2, h=8, w=12)
        sr = runner.infer(feed)["sr"]
        b, _, h, w = feed["lr"].shape
        assert sr.shape == (b, 3, 4 * h, 4 * w)
        assert sr.dtype == np.float32
        assert np.isfinite(sr).all() and sr.min() >= 0.0 and sr.max() <= 1.0
        assert sr.std() > 0.01  # a real image, not a constant

    def test_timing_is_recorded_and_positive(self, artifact):
        r = self.make_runner(artifact)
        with r:
            assert r.last_inference_time() is None
            r.infer(self.feed())
            first = r.last_inference_time()
            r.infer(self.feed(seed=1))
            assert first is not None and first > 0 and r.last_inference_time() > 0

    def test_same_input_same_output(self, runner):
        feed = self.feed(seed=3)
        a = runner.infer(feed)["sr"]
        b = runner.infer({k: v.copy() for k, v in feed.items()})["sr"]
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, runner.infer(self.feed(seed=4))["sr"])

    def test_parity_with_torch_fp32(self, runner, record_property):
        feed = self.feed(batch=2, seed=5)
        value = psnr(runner.infer(feed)["sr"], torch_reference(feed))
        record_property("psnr_db", round(value, 2))
        print(f"\n{runner.name}: PSNR vs torch fp32 = {value:.2f} dB (floor {self.psnr_floor})")
        assert value >= self.psnr_floor, f"{runner.name}: {value:.2f} dB < {self.psnr_floor} dB"

    def test_tiled_pipeline_matches_untiled_call(self, runner):
        from vpdsr.runtimes.noise import NoiseField

        _, h, w = (1, SIZE, SIZE) if self.dynamic else self.static_shape
        lr = inputs(1, h, w, seed=6)["lr"][0]
        field = NoiseField(seed=7, channels=runner.noise_channels)
        direct = runner.infer({"lr": lr[None], "noise": field.crop(0, 0, h, w)[None]})["sr"][0]
        cfg = tiling.TileConfig(tile=h if not self.dynamic else None, overlap=0, batch=1, pad_batch=not self.dynamic)
        tiled = tiling.upscale_tiled(runner.as_tile_fn(), lr, field, cfg)
        np.testing.assert_allclose(tiled, direct, atol=1e-6)
