"""Foreign .pth reading: weights_only, unwrapping, prefix stripping, one-line refusals."""
from __future__ import annotations

import collections

import pytest
import torch

from vpdsr.errors import CheckpointError, InputError
from vpdsr.models.foreign import check_keys, read_state_dict, source_record


class NotATensor:  # a custom class: weights_only=True must refuse to unpickle it
    pass


def test_unwraps_and_strips_prefixes(tmp_path):
    state = collections.OrderedDict({"module._orig_mod.conv.weight": torch.ones(2), "module.conv.bias": torch.zeros(2)})
    path = tmp_path / "a.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    out = read_state_dict(path)
    assert sorted(out) == ["conv.bias", "conv.weight"]
    assert torch.equal(out["conv.weight"], torch.ones(2))


def test_unwrap_order_params_ema_first(tmp_path):
    path = tmp_path / "b.pth"
    torch.save({"params": {"w": torch.zeros(1)}, "params_ema": {"w": torch.ones(1)}}, path)
    assert read_state_dict(path, unwrap=("params_ema", "params"))["w"].item() == 1.0


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"w": torch.ones(1), "obj": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="refused: it needs more than tensors"):
        read_state_dict(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_state_dict(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="bad.pth: not a readable torch checkpoint"):
        read_state_dict(bad)


def test_check_keys_names_first_few_and_counts():
    check_keys({"a", "b"}, {"b", "a"}, "x.pth")
    with pytest.raises(CheckpointError, match=r"2 missing \(e.g. a, b\); 1 unexpected \(e.g. z\)"):
        check_keys({"a", "b", "c"}, {"c", "z"}, "x.pth")


def test_source_record_hashes(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    rec = source_record(unet=f, autoencoder=None)
    assert list(rec) == ["unet"]
    assert rec["unet"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
