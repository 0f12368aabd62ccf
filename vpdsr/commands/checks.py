"""Checks every command runs on its arguments before any work starts (one-line InputErrors, exit 2).

Example:
    >>> out = output_folder(args.out)  # a file there is refused before the model is loaded
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vpdsr.errors import InputError


def output_folder(path: str | os.PathLike, flag: str = "--out", inside: Iterable[str] = ()) -> Path:
    """An output folder that can be created or written: not a file, not below a file.

    Args:
        path: the folder the command writes (it may not exist yet).
        flag: how the message names the argument.
        inside: sub-folders the command writes into `path` (each must not be a file either).

    Raises:
        InputError: `path`, one of its parents or one of `inside` exists as something other than a folder.
    """
    folder = Path(path)
    for p in (folder, *(folder / name for name in inside)):
        if p.exists() and not p.is_dir():
            what = "" if p == folder else f" (the command writes the folder {p})"
            raise InputError(f"`{flag} {folder}`: {p} is a file, expected a folder{what}; "
                             "choose another path or move the file")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"`{flag} {folder}`: {parent} is a file, not a folder")
    return folder


def distinct_outputs(pairs: Iterable[tuple[Path, Path]], flag: str = "--out") -> None:
    """(input, output) pairs: refuse two inputs that would write the same output file.

    Raises:
        InputError: naming the output and both inputs, or an output that exists as a folder.
    """
    seen: dict[Path, Path] = {}
    for src, out in pairs:
        key = Path(os.path.normcase(os.path.abspath(out)))
        if key in seen and Path(os.path.abspath(seen[key])) != Path(os.path.abspath(src)):
            raise InputError(f"{seen[key]} and {src} would both be written to {out} (same file stem); "
                             f"rename one or upscale them into different `{flag}` folders")
        seen[key] = src
        if Path(out).is_dir():
            raise InputError(f"{out} is a folder; the output of {src} would be written there: move it")
