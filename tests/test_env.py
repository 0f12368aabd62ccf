"""vpdsr.env.cache_dir: $VPDSR_CACHE first, else the platform's user cache folder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vpdsr import env
from vpdsr.models.gan.presets import cache_root as preset_cache
from vpdsr.runtimes.tensorrt_common import cache_root as engine_cache

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG folders are Linux's convention")


def test_vpdsr_cache_comes_first(tmp_path, monkeypatch):
    monkeypatch.setenv("VPDSR_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert env.cache_dir() == tmp_path / "mine"


@linux_only
def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("VPDSR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert env.cache_dir() == tmp_path / "xdg" / "vpdsr"


@linux_only
def test_default_is_home_dot_cache(tmp_path, monkeypatch):
    for var in ("VPDSR_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert env.cache_dir() == Path(tmp_path) / ".cache" / "vpdsr"


def test_presets_and_engines_share_the_one_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("VPDSR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert preset_cache() == engine_cache() == env.cache_dir()
