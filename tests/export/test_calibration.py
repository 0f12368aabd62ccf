"""The calibration set: seeded, hashable, fed one sample at a time, from samples or a folder."""
from __future__ import annotations

import numpy as np
import pytest

from vpdsr.data.io import write_image
from vpdsr.errors import InputError
from vpdsr.export.calibration import CalibrationSet


def test_samples_are_tiles_with_seeded_noise():
    calib = CalibrationSet("samples:calib", count=5, tile=24, channels=6, seed=3)
    feeds = list(calib)
    assert len(feeds) == 5 == len(calib)
    assert all(f["lr"].shape == (1, 3, 24, 24) and f["noise"].shape == (1, 6, 24, 24) for f in feeds)
    assert all(f["lr"].dtype == np.float32 and 0 <= f["lr"].min() and f["lr"].max() <= 1 for f in feeds)
    assert calib.sha256() == CalibrationSet("samples:calib", count=5, tile=24, channels=6, seed=3).sha256()
    assert calib.sha256() != CalibrationSet("samples:calib", count=5, tile=24, channels=6, seed=4).sha256()
    assert calib.sha256() != CalibrationSet("samples:calib", count=4, tile=24, channels=6, seed=3).sha256()


def test_folder_source_small_images_are_padded(tmp_path):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", rng.random((10, 30, 3)).astype(np.float32))
    write_image(tmp_path / "b.png", rng.random((40, 40, 3)).astype(np.float32))
    calib = CalibrationSet(str(tmp_path), count=3, tile=16, channels=3)
    assert [f["lr"].shape for f in calib] == [(1, 3, 16, 16)] * 3
    reader = calib.reader()
    assert sum(1 for _ in iter(reader.get_next, None)) == 3
    reader.rewind()
    assert reader.get_next() is not None


def test_bad_count_and_source():
    with pytest.raises(InputError):
        CalibrationSet(count=0)
    with pytest.raises(InputError):
        CalibrationSet("/no/such/folder", count=2).feeds()
