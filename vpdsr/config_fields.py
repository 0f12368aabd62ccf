"""Mappings (YAML, JSON) to typed config dataclasses: the one checker every config in vpdsr is read with.

Each value is checked against its field's annotation: `bool`, `int`, `float`, `str`, `dict`, `X | None`,
`int | str`, `tuple[X, ...]` / `tuple[X, Y]`, `list[X]` and nested config dataclasses. A wrong key or
a wrong type is a one-line ConfigError naming the dotted field (`denoiser.attention_levels`); callers
put the file's name in front.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Optim:
    ...     lr: float = 1e-3
    ...     betas: tuple[float, float] = (0.9, 0.99)
    >>> from_mapping(Optim, {"lr": "4e-4", "betas": [0.5, 0.9]})
    Optim(lr=0.0004, betas=(0.5, 0.9))
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from vpdsr.errors import ConfigError

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def from_mapping(cls, data: Any, where: str = "", base=None, source: str | None = None):
    """`cls` built from the mapping `data`. Keys left out keep `base`'s values (a `cls` instance, default:
    the dataclass defaults); a nested mapping overrides its field's default value key by key, so a partial
    `optim: {lr: ...}` keeps the other settings that field's default carries. `source` (a file's name)
    goes in front of any error, the dataclass's own validation included."""
    if source is not None:
        try:
            return from_mapping(cls, data, where, base)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"`{where or 'config'}` must be a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        names = ", ".join(f"`{where}.{k}`" if where else f"`{k}`" for k in unknown)
        raise ConfigError(f"unknown field{'s' if len(unknown) > 1 else ''} {names} "
                          f"(known: {', '.join(sorted(known))})")
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        default = getattr(base, key)
        if dataclasses.is_dataclass(hints[key]):  # a section left empty (`ema:`) keeps its default
            values[key] = from_mapping(hints[key], {} if value is None else value, name, base=default)
        else:
            values[key] = typed(hints[key], value, name)
    return dataclasses.replace(base, **values)


def typed(hint, value: Any, where: str):
    """`value` checked against the annotation `hint`: lists become tuples, integers floats, YAML 1.1's
    `4e-4` strings numbers, a lone string a one-item list; anything else is a ConfigError naming `where`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return typed(option, value, where)
            except ConfigError:
                if len(options) == 1:
                    raise
        kinds = " or ".join(_KINDS.get(o, getattr(o, "__name__", str(o))) for o in options)
        raise ConfigError(f"`{where}` must be {kinds}, got {value!r}")
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_mapping(hint, {} if value is None else value, where)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}` must be a list, got {value!r}")
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise ConfigError(f"`{where}` must be a list of {len(args)} values, got {list(value)!r}")
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        return tuple(typed(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(items, value)))
    if origin is list:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}` must be a list, got {value!r}")
        return [typed(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(hint, value, where)


def _scalar(hint, value: Any, where: str):
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 4e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint in (int, float):  # a bool is an int to Python, never to a config
        ok = isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    elif hint is dict:
        ok = isinstance(value, Mapping)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"`{where}` must be {_KINDS.get(hint, hint.__name__)}, got {value!r}")
    return float(value) if hint is float else dict(value) if hint is dict else value
