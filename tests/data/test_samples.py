"""Bundled sample photos: all load offline, subsets are consistent, specs resolve."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from vpdsr.data.io import read_image, write_image
from vpdsr.data.samples import (
    SAMPLE_NAMES,
    SUBSET_NAMES,
    ImageSource,
    export_samples,
    load_sample,
    resolve_images,
    sample_path,
    sample_set,
)
from vpdsr.errors import InputError

GRAY = {"camera", "brick", "grass", "gravel"}
KNOWN_SHAPES = {"astronaut": (512, 512, 3), "chelsea": (300, 451, 3), "china": (427, 640, 3)}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket fails, as on a machine without network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.usefixtures("no_network")
def test_every_sample_loads_offline_as_float_rgb() -> None:
    for name in SAMPLE_NAMES:
        image = load_sample(name)
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3, name
        assert min(image.shape[:2]) >= 256, name
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02, name
        channels_equal = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
            image[..., 1], image[..., 2]
        )
        assert channels_equal == (name in GRAY), name
        if name in KNOWN_SHAPES:
            assert image.shape == KNOWN_SHAPES[name]


def test_samples_are_files_inside_installed_packages() -> None:
    assert len(SAMPLE_NAMES) == 15 and len(set(SAMPLE_NAMES)) == 15
    for name in SAMPLE_NAMES:
        path = sample_path(name)
        assert path.is_file(), name
        assert "site-packages" in path.parts or "dist-packages" in path.parts, path
        assert path.parts[-3:-1] in (("skimage", "data"), ("datasets", "images")), path


def test_subsets() -> None:
    everything = set(sample_set())
    train, holdout = set(sample_set("train")), set(sample_set("holdout"))
    assert everything == set(SAMPLE_NAMES) == set(sample_set("all"))
    assert not train & holdout and train | holdout == everything
    assert 2 <= len(holdout) <= 3 and not holdout & GRAY
    assert set(sample_set("calib")) <= train and 2 <= len(sample_set("calib")) <= 6
    assert sample_set("demo") == ["astronaut"] and set(sample_set("demo")) <= holdout
    val = set(sample_set("val"))
    assert val <= train and not val & set(sample_set("calib")) and "motorcycle_right" not in val
    assert set(SUBSET_NAMES) == {"all", "train", "holdout", "calib", "val", "demo"}


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(InputError, match="astronaut.*gravel") as info:
        load_sample("lena")
    assert "lena" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="'validation'.*holdout"):
        sample_set("validation")
    with pytest.raises(InputError, match="'nope'"):
        resolve_images("samples:nope")


def test_resolve_sample_specs() -> None:
    demo = resolve_images("samples:demo")
    assert demo == [ImageSource("astronaut", sample_path("astronaut"))]
    assert [s.name for s in resolve_images("samples")] == list(SAMPLE_NAMES)
    assert [s.name for s in resolve_images("samples:holdout")] == sample_set("holdout")
    assert np.array_equal(demo[0].load(), load_sample("astronaut"))


def test_resolve_folder_and_file(tmp_path: Path) -> None:
    image = np.zeros((4, 5, 3), np.float32)
    for name in ["b.png", "a.png", "a.jpg"]:
        write_image(tmp_path / name, image)
    sources = resolve_images(tmp_path)
    assert [s.name for s in sources] == ["a.jpg", "a.png", "b"]  # colliding stems keep extensions
    assert [s.path for s in sources] == [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "b.png"]
    assert sources[2].load().shape == (4, 5, 3)
    assert resolve_images(str(tmp_path / "b.png")) == [ImageSource("b", tmp_path / "b.png")]


def test_samples_keyword_wins_over_a_folder_but_paths_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "samples" / "mine.png", np.zeros((2, 2, 3), np.float32))
    assert len(resolve_images("samples")) == len(SAMPLE_NAMES)
    assert [s.name for s in resolve_images("./samples")] == ["mine"]
    assert [s.name for s in resolve_images(Path("samples"))] == ["mine"]


def test_resolve_empty_folder_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=tmp_path.name):
        resolve_images(tmp_path)


def test_export_samples_writes_exact_pngs(tmp_path: Path) -> None:
    paths = export_samples(tmp_path / "out", "demo")
    assert paths == [tmp_path / "out" / "astronaut.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.png"]
    assert np.array_equal(read_image(paths[0]), load_sample("astronaut"))
