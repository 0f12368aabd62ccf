"""The one mapping-to-dataclass checker behind every config: types, unknown keys, partial sections."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vpdsr.config_fields import from_mapping, typed
from vpdsr.distill.config import load_config
from vpdsr.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Section:
    threads: int | str = "auto"
    images: list[str] = field(default_factory=lambda: ["samples:train"])
    sizes: tuple[int, ...] = (7, 9)
    name: str | None = None
    optim: Optim = field(default_factory=lambda: Optim(lr=2e-4, betas=(0.5, 0.99)))


def test_values_are_normalised_to_their_annotations():
    s = from_mapping(Section, {"threads": 2, "images": "photos/", "sizes": [3], "optim": {"lr": "4e-4"}})
    assert s.threads == 2 and s.images == ["photos/"] and s.sizes == (3,)
    assert s.optim.lr == 4e-4 and isinstance(s.optim.lr, float)


def test_a_partial_section_keeps_its_fields_default_not_the_class_default():
    s = from_mapping(Section, {"optim": {"lr": 1e-4}})
    assert s.optim == Optim(lr=1e-4, betas=(0.5, 0.99))  # Optim() alone would say (0.9, 0.99)
    cfg = load_config({"discriminator": {"optim": {"lr": 1e-4}}})
    assert cfg.discriminator.optim.betas == (0.5, 0.99) and cfg.discriminator.optim.schedule == "constant"


@pytest.mark.parametrize("data, message", [
    ({"threadz": 1}, "unknown field `s.threadz` (known: images, name, optim, sizes, threads)"),
    ({"optim": {"lr": 1, "momentum": 0.9}}, "unknown field `s.optim.momentum`"),
    ({"threads": True}, "`s.threads` must be an integer or a string, got True"),
    ({"sizes": "7"}, "`s.sizes` must be a list, got '7'"),
    ({"sizes": [7, 8.5]}, "`s.sizes[1]` must be an integer, got 8.5"),
    ({"optim": {"betas": [0.5]}}, "`s.optim.betas` must be a list of 2 values, got [0.5]"),
    ({"optim": "fast"}, "`s.optim` must be a mapping, got 'fast'"),
    ({"name": 3}, "`s.name` must be a string, got 3"),
])
def test_errors_are_one_line_and_name_the_dotted_field(data, message):
    with pytest.raises(ConfigError) as info:
        from_mapping(Section, data, "s")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_none_is_only_taken_where_the_annotation_allows_it():
    assert typed(str | None, None, "x") is None
    with pytest.raises(ConfigError, match="`x` must be a number, got None"):
        typed(float, None, "x")
