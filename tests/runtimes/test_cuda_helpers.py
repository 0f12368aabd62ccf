"""CUDA device names and capability text: plain Python, checked on every machine."""
from __future__ import annotations

import pytest
import torch

from vpdsr.errors import CapabilityError, ConfigError
from vpdsr.runtimes.cuda import capability_text, cuda_index, is_cuda, require_cuda


def test_cuda_device_names_parse_to_an_index():
    assert cuda_index("cuda") == 0 and cuda_index("cuda:0") == 0 and cuda_index("cuda:3") == 3
    assert cuda_index(" CUDA:1 ") == 1
    assert is_cuda("cuda:2") and is_cuda("cuda") and not is_cuda("cpu") and not is_cuda(None)


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0:1", "cuda0", "cpu"])
def test_other_device_names_are_refused_in_one_line(bad):
    with pytest.raises(ConfigError, match="cuda or cuda:N") as e:
        cuda_index(bad)
    assert "\n" not in str(e.value) and repr(bad) in str(e.value)


def test_a_gpu_this_machine_lacks_is_a_capability_error():
    expected = "torch sees no CUDA device" if not torch.cuda.is_available() else "this machine has"
    with pytest.raises(CapabilityError, match=expected):
        require_cuda("cuda:99", "test")


def test_capability_text():
    assert capability_text((8, 9)) == "8.9" and capability_text([9, 0]) == "9.0" and capability_text("8.6") == "8.6"
