"""The degradation's config: `DegradationConfig` (plain bicubic or Real-ESRGAN's second order) and
its per-order `OrderConfig`, read from YAML/JSON dicts and checked field by field.

Kept apart from `vpdsr.data.degrade` (which applies them) so that `vpdsr.data.kernels` can take
the configs without importing the module that imports it.
"""
from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from vpdsr.config_fields import from_mapping, typed
from vpdsr.errors import ConfigError

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MODES = ("bicubic", "realesrgan")
_ODD_SIZES = tuple(range(7, 22, 2))


@dataclass
class OrderConfig:
    """Probabilities and ranges of one degradation order (Real-ESRGAN's first-order defaults).

    Ranges are ``(low, high)``, drawn uniformly. ``resize_prob`` is (up, down, keep).
    Noise sigma is in 8-bit levels. ``jpeg_*`` of the second order drive the final JPEG.
    """

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, ...] = _ODD_SIZES
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, ...] = (0.2, 3.0)
    betag_range: tuple[float, ...] = (0.5, 4.0)
    betap_range: tuple[float, ...] = (1.0, 2.0)
    resize_prob: tuple[float, ...] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, ...] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, ...] = (1.0, 30.0)
    poisson_scale_range: tuple[float, ...] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[float, ...] = (30.0, 95.0)


def second_order_defaults() -> OrderConfig:
    """Real-ESRGAN's second-order settings (``*2`` keys of ``train_realesrgan_x4plus.yml``)."""
    return OrderConfig(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3),
                       resize_range=(0.3, 1.2), noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5))


@dataclass
class DegradationConfig:
    """How LR inputs are made from HR crops; lives in the ``degradation:`` section of a config.

    ``enabled: false`` or ``mode: bicubic`` gives the clean case: an antialiased bicubic
    downscale by ``scale``. ``mode: realesrgan`` runs the second-order pipeline with the
    ``first`` / ``second`` order settings and the final-step fields below.
    """

    enabled: bool = True
    mode: str = "realesrgan"
    scale: int = 4
    first: OrderConfig = field(default_factory=OrderConfig)
    second: OrderConfig = field(default_factory=second_order_defaults)
    final_sinc_prob: float = 0.8
    final_kernel_sizes: tuple[int, ...] = _ODD_SIZES
    resize_before_jpeg_prob: float = 0.5  # final [resize + sinc] then JPEG, else JPEG first
    resize_modes: tuple[str, ...] = RESIZE_MODES
    rotation_range: tuple[float, ...] = (-math.pi, math.pi)
    sinc_cutoff_range: tuple[float, ...] = (math.pi / 3, math.pi)
    # Real-ESRGAN lets large sinc kernels cut lower: fewer taps would truncate the ringing badly.
    sinc_cutoff_range_large_kernel: tuple[float, ...] = (math.pi / 5, math.pi)
    sinc_large_kernel_size: int = 13

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(DegradationConfig)
        for f in fields(self):
            value, where = getattr(self, f.name), f"degradation.{f.name}"
            if f.name in ("first", "second") and isinstance(value, Mapping):  # partial: over that order's defaults
                base = OrderConfig() if f.name == "first" else second_order_defaults()
                value = from_mapping(OrderConfig, value, where, base=base)
            setattr(self, f.name, typed(hints[f.name], value, where))
        for name in ("first", "second"):
            _checked_order(getattr(self, name), f"degradation.{name}")
        self._validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DegradationConfig:
        """Build from a YAML section; missing keys keep Real-ESRGAN's defaults (per order)."""
        return from_mapping(cls, data or {}, "degradation")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of lists and numbers that ``from_dict`` reads back unchanged."""
        return _listify(asdict(self))

    def _validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"degradation.mode: expected one of {list(MODES)}, got {self.mode!r}")
        if self.scale < 1:
            raise ConfigError(f"degradation.scale: expected a positive integer, got {self.scale}")
        for name in ("final_sinc_prob", "resize_before_jpeg_prob"):
            _check_prob(f"degradation.{name}", getattr(self, name))
        _check_kernel_sizes("degradation.final_kernel_sizes", self.final_kernel_sizes)
        if not self.resize_modes or set(self.resize_modes) - set(RESIZE_MODES):
            raise ConfigError(f"degradation.resize_modes: expected a non-empty subset of {list(RESIZE_MODES)}, "
                              f"got {list(self.resize_modes)}")
        _check_range("degradation.rotation_range", self.rotation_range, -math.inf)
        for name in ("sinc_cutoff_range", "sinc_cutoff_range_large_kernel"):
            _check_range(f"degradation.{name}", getattr(self, name), 1e-6, math.pi + 1e-6)


# ---------------------------------------------------------------- config helpers

def _checked_order(order: OrderConfig, where: str) -> OrderConfig:
    hints = typing.get_type_hints(OrderConfig)
    for f in fields(order):
        setattr(order, f.name, typed(hints[f.name], getattr(order, f.name), f"{where}.{f.name}"))
    for name in ("blur_prob", "sinc_prob", "noise_prob", "gaussian_noise_prob", "gray_noise_prob", "jpeg_prob"):
        _check_prob(f"{where}.{name}", getattr(order, name))
    _check_kernel_sizes(f"{where}.kernel_sizes", order.kernel_sizes)
    if not order.kernel_list or set(order.kernel_list) - set(KERNEL_TYPES):
        raise ConfigError(f"{where}.kernel_list: expected a non-empty subset of {list(KERNEL_TYPES)}, "
                          f"got {list(order.kernel_list)}")
    _check_weights(f"{where}.kernel_prob", order.kernel_prob, len(order.kernel_list))
    _check_weights(f"{where}.resize_prob", order.resize_prob, 3)
    for name in ("blur_sigma", "betag_range", "betap_range", "resize_range"):
        _check_range(f"{where}.{name}", getattr(order, name), 1e-3)
    if not order.resize_range[0] <= 1.0 <= order.resize_range[1]:
        raise ConfigError(f"{where}.resize_range: expected [low <= 1, high >= 1], got {list(order.resize_range)}")
    for name in ("noise_range", "poisson_scale_range"):
        _check_range(f"{where}.{name}", getattr(order, name), 0.0)
    _check_range(f"{where}.jpeg_range", order.jpeg_range, 1.0, 100.0)
    return order


def _check_prob(where: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}: expected a probability in [0, 1], got {p}")


def _check_range(where: str, rng: tuple[float, ...], low: float, high: float = math.inf) -> None:
    if len(rng) != 2 or not low <= rng[0] <= rng[1] <= high:
        raise ConfigError(f"{where}: expected [low, high] with {low:g} <= low <= high <= {high:g}, got {list(rng)}")


def _check_weights(where: str, weights: tuple[float, ...], count: int) -> None:
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"{where}: expected {count} non-negative weights with a positive sum, got {list(weights)}")


def _check_kernel_sizes(where: str, sizes: tuple[int, ...]) -> None:
    if not sizes or any(s < 1 or s % 2 == 0 for s in sizes):
        raise ConfigError(f"{where}: expected a non-empty list of positive odd sizes, got {list(sizes)}")


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_listify(v) for v in value]
    return value


# ---------------------------------------------------------------- random draws
