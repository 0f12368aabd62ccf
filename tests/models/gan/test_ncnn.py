"""ncnn files made by the tests (real format): conversion, parity with the numpy reference forward, refusals."""
from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import torch

from tests.models.gan.conftest import tiny_rrdbnet, tiny_srvgg
from tests.models.gan.ncnn_files import FP16_TAG, write_ncnn
from tests.models.gan.ncnn_reference import NcnnNet
from vpdsr.errors import CheckpointError, InputError
from vpdsr.models.gan.convert import load_ncnn
from vpdsr.models.gan.ncnn import read_param, read_weights
from vpdsr.models.gan.ncnn_map import gan_from_ncnn


def _torch_raw(model, lr: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.raw(torch.from_numpy(lr)[None])[0].double().numpy()


@pytest.mark.parametrize("make", [tiny_rrdbnet, tiny_srvgg], ids=["rrdbnet", "srvgg"])
@pytest.mark.parametrize("fp16", [True, False], ids=["fp16", "fp32"])
def test_converted_model_matches_the_numpy_reference(tmp_path, make, fp16):
    model = make()
    param, _ = write_ncnn(model, tmp_path, fp16=fp16)
    converted = load_ncnn(param)
    assert converted.config.to_dict() == {**model.config.to_dict(), "preset": "custom"}
    lr = np.random.default_rng(0).random((3, 7, 9), dtype=np.float32)
    ref = NcnnNet.load(param).forward(lr)
    got = _torch_raw(converted, lr)
    assert got.shape == ref.shape == (3, 28, 36)
    assert np.abs(got - ref).max() < 1e-5
    # fp16 storage rounds the weights; fp32 storage reproduces the source model to float precision
    err = np.abs(_torch_raw(model, lr) - ref).max()
    assert (1e-6 < err < 5e-3) if fp16 else err < 1e-5


@pytest.mark.parametrize("act_type", ["relu", "leakyrelu"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "separate"])
def test_srvgg_relu_variants_fused_or_separate(tmp_path, act_type, fuse):
    model = tiny_srvgg(act_type)
    param, _ = write_ncnn(model, tmp_path, fuse=fuse)
    assert ("ReLU " in param.read_text()) is not fuse
    converted = load_ncnn(param)
    assert converted.config.act_type == act_type
    lr = np.random.default_rng(1).random((3, 6, 5), dtype=np.float32)
    assert np.abs(_torch_raw(converted, lr) - NcnnNet.load(param).forward(lr)).max() < 1e-5


def test_fp16_weights_are_widened_exactly(tmp_path):
    model = tiny_srvgg()
    param, _ = write_ncnn(model, tmp_path)
    _, state = gan_from_ncnn(param)
    want = model.body[2].weight.detach().half().float()
    assert torch.equal(state["body.2.weight"], want)
    assert torch.equal(state["body.2.bias"], model.body[2].bias.detach())  # biases stay fp32
    assert torch.equal(state["body.3.weight"], model.body[3].weight.detach())  # PReLU slopes: raw fp32


def test_reader_sees_every_layer_and_blob(tmp_path):
    param, bin_path = write_ncnn(tiny_rrdbnet(), tmp_path)
    graph = read_param(param)
    kinds = [layer.type for layer in graph.layers]
    assert kinds.count("Convolution") == 36 and kinds.count("Eltwise") == 8 and kinds.count("Concat") == 24
    conv1 = graph.of_type("Convolution")[1]
    assert conv1.params[9] == 2 and conv1.params[10] == (0.2,)  # fused LeakyReLU: an array parameter
    arrays = read_weights(graph, bin_path)
    assert [a.size for a in arrays[conv1.name]] == [4 * 8 * 9, 4]


def _rewrite(param, pattern: str, repl: str, count: int = 1):
    text = param.read_text()
    new, n = re.subn(pattern, repl, text, count=count)
    assert n, pattern
    param.write_text(new)


@pytest.fixture
def files(tmp_path):
    return write_ncnn(tiny_srvgg(), tmp_path)


def test_truncated_bin(files):
    param, bin_path = files
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError,
                       match=r"truncated: Convolution \S+ bias needs 192 bytes at offset \d+, the file has"):
        load_ncnn(param)
    bin_path.write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="truncated: Convolution .* weights needs"):
        load_ncnn(param)


def test_bytes_left_over_mean_another_param(files):
    param, bin_path = files
    bin_path.write_bytes(bin_path.read_bytes() + b"\0" * 8)
    with pytest.raises(CheckpointError, match="8 bytes left after the last layer's weights"):
        load_ncnn(param)


def test_unknown_weight_tag(files):
    param, bin_path = files
    data = bytearray(bin_path.read_bytes())
    assert struct.unpack("<I", data[:4])[0] == FP16_TAG
    data[:4] = struct.pack("<I", 0x000D4B38)  # ncnn's int8 tag
    bin_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"unknown weight tag 0x000D4B38 at offset 0 .*int8/quantized"):
        load_ncnn(param)


@pytest.mark.parametrize("pattern, repl, match", [
    (r"^7767517", "7767518", "not an ncnn .param file"),
    (r"\n(\d+) (\d+)\n", r"\n99 \2\n", "header says 99 layers, the file has 14"),
    (r"\n(\d+) (\d+)\n", r"\n\1 99\n", "header says 99 blobs"),
    (r" 6=576", " 6=577", r"weight count \(6=\) is 577, `body.2` expects 576"),
    (r" 0=8 1=3", " 0=8 1=1", r"kernel \(1=\) is 1, `body.0` expects 3"),
    (r" 4=1 5=1", " 4=0 5=1", r"padding \(4=\) is 0"),
    (r"PReLU( +\S+ +)1 1 (\S+) (\S+) 0=8", r"PReLU\g<1>1 1 \2 \3 0=7", r"expected 8 slopes \(0=\), got 7"),
    (r"0=1 1=4\.0+e\+00 2=4\.0+e\+00", "0=2 1=4.0 2=4.0", "expected a nearest x4 upsample"),
    (r"PixelShuffle( +\S+ +1 1 \S+ \S+) 0=4", r"PixelShuffle\1 0=4 1=1", "torch-order pixel shuffle"),
    (r"5=1 6=216", "5=1 6=216 9=1", r"fused activation \(9=, 10=\) is type 1"),
    (r"0=8 1=3", "0=8 1=x", "value 'x' is not a number"),
    (r"5=1 6=216", "5=1 6=216 -23310=2,0.1", "array '-23310=2,0.1' says 2 elements, has 1"),
    (r"Convolution( +\S+ +)1 1", r"Deconvolution\g<1>1 1", "this layer kind is not part of RRDBNet or SRVGGNetCompact"),
])
def test_odd_param_files_are_one_line(files, pattern, repl, match):
    param, _ = files
    _rewrite(param, pattern, repl)
    with pytest.raises(CheckpointError, match=match) as info:
        load_ncnn(param)
    assert "\n" not in str(info.value) and str(param) in str(info.value)


def test_rrdbnet_residual_coefficients_and_counts_are_checked(tmp_path):
    param, _ = write_ncnn(tiny_rrdbnet(), tmp_path)
    text = param.read_text()
    _rewrite(param, r"-23301=2,2\.000000e-01,1\.000000e\+00", "-23301=2,1.000000e+00,1.000000e+00")
    with pytest.raises(CheckpointError, match=r"expected a residual sum 0.2\*a \+ 1.0\*b"):
        load_ncnn(param)
    param.write_text(text.replace("-23310=1,2.000000e-01", "-23310=1,1.000000e-01", 1))
    with pytest.raises(CheckpointError, match="slope 0.1`?.* expects type 2 slope 0.2"):
        load_ncnn(param)


def test_a_resize_after_the_output_is_refused_with_the_reason(tmp_path):
    param, _ = write_ncnn(tiny_srvgg(), tmp_path)
    # the x2/x3 realesr-animevideov3 files append a bicubic downscale to the x4 network
    _rewrite(param, r"(BinaryOp +\S+ +2 1 \S+ \S+) output", r"\1 extra")
    resize = "Interp                   Resize_40                1 1 extra output 0=3 1=5.000000e-01 2=5.000000e-01"
    text = param.read_text().rstrip("\n") + "\n" + resize + "\n"
    n_layers, n_blobs = map(int, text.splitlines()[1].split())
    param.write_text(text.replace(f"\n{n_layers} {n_blobs}\n", f"\n{n_layers + 1} {n_blobs + 1}\n", 1))
    with pytest.raises(CheckpointError, match="has 1 Interp layer.*the file has 2.*use the x4 file"):
        load_ncnn(param)


def test_missing_files(tmp_path, files):
    with pytest.raises(InputError, match="file not found"):
        load_ncnn(tmp_path / "nope.param")
    param, bin_path = files
    bin_path.unlink()
    with pytest.raises(InputError, match="expected the ncnn .bin beside"):
        load_ncnn(param)
    param.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(CheckpointError, match="not an ncnn .param text file"):
        load_ncnn(param)
