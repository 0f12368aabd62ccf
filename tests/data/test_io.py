"""Image IO: formats, modes, orientation, bad files and atomic writes, on tiny real files."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from vpdsr.data.io import (
    apply_orientation,
    list_images,
    read_image,
    read_image_size,
    readable_extensions,
    rgb_to_y,
    to_numpy,
    to_tensor,
    write_image,
)
from vpdsr.errors import InputError

RNG = np.random.default_rng(0)


def random_u8(h: int = 5, w: int = 7) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def random_u16(h: int = 5, w: int = 7) -> np.ndarray:
    return RNG.integers(0, 65536, (h, w, 3), dtype=np.uint16)


def smooth_image(h: int = 32, w: int = 48) -> np.ndarray:
    """A gradient: lossy codecs keep it within a few levels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / w, y / h, (x + y) / (h + w)], axis=2)


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_lossless_8bit_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    pixels = random_u8()
    write_image(tmp_path / f"a{suffix}", pixels.astype(np.float32) / 255)
    assert np.array_equal(read_image(tmp_path / f"a{suffix}"), pixels.astype(np.float32) / 255)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip_is_close(tmp_path: Path, suffix: str) -> None:
    image = smooth_image()
    write_image(tmp_path / f"a{suffix}", image)
    back = read_image(tmp_path / f"a{suffix}")
    assert back.shape == image.shape and back.dtype == np.float32
    assert np.abs(back - image).mean() < 0.01


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    pixels = random_u16()
    write_image(tmp_path / f"a{suffix}", pixels, bit_depth=16)
    assert np.array_equal(read_image(tmp_path / f"a{suffix}"), pixels.astype(np.float32) / 65535)


def test_16bit_files_really_hold_16_bit_rgb(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", random_u16(), bit_depth=16)
    width, height, depth, colour = struct.unpack(">IIBB", (tmp_path / "a.png").read_bytes()[16:26])
    assert (width, height, depth, colour) == (7, 5, 16, 2)
    write_image(tmp_path / "a.tif", random_u16(), bit_depth=16)
    with Image.open(tmp_path / "a.tif") as im:
        assert im.tag_v2[258] == (16, 16, 16) and im.size == (7, 5)


def test_float_to_16bit_keeps_more_than_8_bits(tmp_path: Path) -> None:
    image = np.full((2, 3, 3), 0.3000, np.float32)
    write_image(tmp_path / "a.png", image, bit_depth=16)
    back = read_image(tmp_path / "a.png")
    assert np.abs(back - image).max() <= 0.5 / 65535 + 1e-7
    assert np.abs(back - image).max() < np.abs(np.round(0.3 * 255) / 255 - 0.3)


def test_write_clips_floats_and_rescales_integers(tmp_path: Path) -> None:
    image = np.array([[[-0.5, 0.5, 1.5]]], np.float32)
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(read_image(tmp_path / "a.png")[0, 0], np.array([0, 128, 255], np.float32) / 255)
    write_image(tmp_path / "b.png", np.array([[[0, 32896, 65535]]], np.uint16))  # 16 -> 8 bits
    assert np.array_equal(read_image(tmp_path / "b.png")[0, 0], np.array([0, 128, 255], np.float32) / 255)


# --- modes --------------------------------------------------------------------------------


def save_and_read(tmp_path: Path, im: Image.Image, name: str, expected_mode: str) -> np.ndarray:
    im.save(tmp_path / name)
    with Image.open(tmp_path / name) as check:
        assert check.mode == expected_mode  # the file really exercises that mode
    return read_image(tmp_path / name)


def test_gray_8bit_becomes_equal_rgb(tmp_path: Path) -> None:
    out = save_and_read(tmp_path, Image.fromarray(np.array([[0, 128, 255]], np.uint8)), "g.png", "L")
    assert out.shape == (1, 3, 3)
    assert np.array_equal(out[0, 1], np.full(3, 128 / 255, np.float32))
    assert np.array_equal(out[0, :, 0], np.array([0, 128, 255], np.float32) / 255)


def test_bilevel_becomes_black_and_white(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0, 255, 0]], np.uint8)).convert("1")
    out = save_and_read(tmp_path, im, "b.png", "1")
    assert np.array_equal(out[0, :, 1], np.array([0, 1, 0], np.float32))


def test_gray_alpha_drops_alpha(tmp_path: Path) -> None:
    pixels = np.array([[[100, 0], [200, 255]]], np.uint8)
    out = save_and_read(tmp_path, Image.fromarray(pixels), "la.png", "LA")
    assert np.array_equal(out[0], np.array([[100] * 3, [200] * 3], np.float32) / 255)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    pixels = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], np.uint8)
    out = save_and_read(tmp_path, Image.fromarray(pixels), "rgba.png", "RGBA")
    assert np.array_equal(out[0], pixels[0, :, :3].astype(np.float32) / 255)


def test_palette_with_transparency_gives_palette_colours(tmp_path: Path) -> None:
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30] + [0] * (768 - 9))
    for x, index in enumerate([0, 1, 2]):
        im.putpixel((x, 0), index)
    im.info["transparency"] = bytes([255, 0, 128])  # per-entry alpha (a PNG tRNS chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns when such an image is converted badly
        out = save_and_read(tmp_path, im, "p.png", "P")
    expected = np.array([[255, 0, 0], [0, 0, 255], [10, 200, 30]], np.float32) / 255
    assert np.array_equal(out[0], expected)


def test_cmyk_converts_to_rgb(tmp_path: Path) -> None:
    im = Image.new("CMYK", (2, 1))
    im.putpixel((0, 0), (255, 0, 0, 0))  # full cyan
    im.putpixel((1, 0), (0, 0, 0, 255))  # full black
    out = save_and_read(tmp_path, im, "c.tif", "CMYK")
    assert np.array_equal(out[0], np.array([[0, 1, 1], [0, 0, 0]], np.float32))


def test_gray_16bit_png_scales_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], np.uint16)
    out = save_and_read(tmp_path, Image.fromarray(values), "g16.png", "I;16")
    assert np.array_equal(out[0, :, 2], values[0].astype(np.float32) / 65535)


def test_gray_16bit_big_endian_tiff(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    values = np.array([[7, 40000, 65535]], np.uint16)
    tifffile.imwrite(tmp_path / "be.tif", values, byteorder=">")
    with Image.open(tmp_path / "be.tif") as im:
        assert im.mode == "I;16B"
    assert np.array_equal(read_image(tmp_path / "be.tif")[0, :, 0], values[0].astype(np.float32) / 65535)


def test_int32_image_is_read_as_16_bit_and_clipped(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[-5, 32768, 70000]], np.int32))
    out = save_and_read(tmp_path, im, "i.tif", "I")
    assert np.array_equal(out[0, :, 0], np.array([0, 32768 / 65535, 1], np.float32))


def test_float_image_is_taken_as_unit_range(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0.25, 1.5, -1.0]], np.float32))
    out = save_and_read(tmp_path, im, "f.tif", "F")
    assert np.array_equal(out[0, :, 1], np.array([0.25, 1.0, 0.0], np.float32))


def test_rgb_16bit_tiff_keeps_full_precision(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    pixels = random_u16()
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(pixels, 2, 0), photometric="rgb", planarconfig="separate"
    )
    assert np.array_equal(read_image(tmp_path / "planar.tif"), pixels.astype(np.float32) / 65535)


def test_rgb_16bit_lzw_tiff_keeps_full_precision(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    pixels = random_u16(6, 8)
    cv2.imwrite(str(tmp_path / "lzw.tif"), pixels[..., ::-1])  # OpenCV writes LZW-compressed TIFF
    with Image.open(tmp_path / "lzw.tif") as im:
        assert im.tag_v2[259] == 5 and im.tag_v2[258] == (16, 16, 16)
    assert np.array_equal(read_image(tmp_path / "lzw.tif"), pixels.astype(np.float32) / 65535)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_files_read_back_by_opencv_and_tifffile(tmp_path: Path, suffix: str) -> None:
    cv2 = pytest.importorskip("cv2")
    tifffile = pytest.importorskip("tifffile")
    pixels = random_u16(9, 11)
    write_image(tmp_path / f"a{suffix}", pixels, bit_depth=16)
    assert np.array_equal(cv2.imread(str(tmp_path / f"a{suffix}"), cv2.IMREAD_UNCHANGED)[..., ::-1], pixels)
    if suffix == ".tif":
        assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), pixels)


def png16_bytes(pixels: np.ndarray, colour: int, filters: list[int]) -> bytes:
    """A 16-bit PNG whose rows use ``filters`` in turn (forward filters of the PNG spec)."""
    height = pixels.shape[0]
    bpp = 2 * (pixels.shape[2] if pixels.ndim == 3 else 1)
    raw = pixels.astype(">u2").view(np.uint8).reshape(height, -1).astype(np.int32)
    prev_rows = np.vstack([np.zeros_like(raw[:1]), raw[:-1]])
    left = np.pad(raw, ((0, 0), (bpp, 0)))[:, :-bpp]
    up_left = np.pad(prev_rows, ((0, 0), (bpp, 0)))[:, :-bpp]
    pa, pb, pc = np.abs(prev_rows - up_left), np.abs(left - up_left), np.abs(left + prev_rows - 2 * up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev_rows, up_left))
    predictors = [0 * raw, left, prev_rows, (left + prev_rows) // 2, paeth]
    lines = [
        bytes([filters[y % len(filters)]])
        + ((raw[y] - predictors[filters[y % len(filters)]][y]) % 256).astype(np.uint8).tobytes()
        for y in range(height)
    ]

    ihdr = struct.pack(">IIBBBBB", pixels.shape[1], height, 16, colour, 0, 0, 0)
    return png_file(ihdr, b"".join(lines))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(ihdr: bytes, scanlines: bytes, extra: bytes = b"") -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(scanlines))
        + png_chunk(b"IEND", b"")
    )


# Adam7: (first column, first row, column step, row step) of the seven passes
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def interlaced_png16_bytes(pixels: np.ndarray, colour: int) -> bytes:
    """A 16-bit Adam7-interlaced PNG (each pass's rows unfiltered)."""
    lines = []
    for x0, y0, dx, dy in ADAM7:
        part = pixels[y0::dy, x0::dx]
        if part.size:
            raw = part.astype(">u2").view(np.uint8).reshape(part.shape[0], -1)
            lines += [b"\x00" + row.tobytes() for row in raw]
    ihdr = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 16, colour, 0, 0, 1)
    return png_file(ihdr, b"".join(lines))


@pytest.mark.parametrize("levels, step", [(65536, 1), (5, 257)])  # bytes 0..4: Paeth ties
@pytest.mark.parametrize("colour, channels", [(2, 3), (6, 4), (4, 2)])
def test_16bit_colour_png_every_filter_type_is_exact(
    tmp_path: Path, colour: int, channels: int, levels: int, step: int
) -> None:
    pixels = (RNG.integers(0, levels, (20, 9, channels)) * step).astype(np.uint16)
    (tmp_path / "f.png").write_bytes(png16_bytes(pixels, colour, [0, 1, 2, 3, 4]))
    out = read_image(tmp_path / "f.png")
    rgb = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    assert np.array_equal(out, rgb.astype(np.float32) / 65535)
    with Image.open(tmp_path / "f.png") as im:  # Pillow alone agrees on the high byte
        high = np.asarray(im.convert("RGB"))
    assert np.array_equal(high, (rgb >> 8).astype(np.uint8))


@pytest.mark.parametrize("colour, channels", [(2, 3), (6, 4), (4, 2)])
def test_16bit_interlaced_colour_png_is_exact(tmp_path: Path, colour: int, channels: int) -> None:
    pixels = RNG.integers(0, 65536, (13, 11, channels)).astype(np.uint16)
    (tmp_path / "i.png").write_bytes(interlaced_png16_bytes(pixels, colour))
    with Image.open(tmp_path / "i.png") as im:
        assert im.info.get("interlace") == 1  # the file really is interlaced
    rgb = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    assert np.array_equal(read_image(tmp_path / "i.png"), rgb.astype(np.float32) / 65535)


def test_16bit_colour_png_keeps_its_exif_orientation(tmp_path: Path) -> None:
    pixels = random_u16(4, 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    ihdr = struct.pack(">IIBBBBB", 6, 4, 16, 2, 0, 0, 0)
    raw = pixels.astype(">u2").view(np.uint8).reshape(4, -1)
    scanlines = b"".join(b"\x00" + row.tobytes() for row in raw)
    exif_chunk = png_chunk(b"eXIf", exif.tobytes()[6:])  # the TIFF structure, without "Exif\0\0"
    (tmp_path / "o.png").write_bytes(png_file(ihdr, scanlines, exif_chunk))
    expected = np.rot90(pixels, -1).astype(np.float32) / 65535  # as exif_transpose turns orientation 6
    assert np.array_equal(read_image(tmp_path / "o.png"), expected)
    assert read_image_size(tmp_path / "o.png") == (6, 4)


# --- orientation --------------------------------------------------------------------------


def test_jpeg_exif_orientation_6_rotates(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(random_u8(4, 6)).save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (6, 4, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(random_u8(3, 5)).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im)).astype(np.float32) / 255
    assert np.array_equal(read_image(tmp_path / "o.png"), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_image_size_is_the_shape_read_image_returns(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(random_u8(3, 5)).save(tmp_path / "o.jpg", exif=exif)
    assert read_image_size(tmp_path / "o.jpg") == read_image(tmp_path / "o.jpg").shape[:2]


def test_apply_orientation_ignores_unknown_values() -> None:
    image = random_u8()
    assert apply_orientation(image, 0) is image and apply_orientation(image, 9) is image


# --- bad input ------------------------------------------------------------------------------


def zero_width_png() -> bytes:
    return png_file(struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0), b"")


def make_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"bad_{kind}.png"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zero_width":
        path.write_bytes(zero_width_png())
    elif kind.endswith("16"):  # truncated 16-bit PNG / TIFF (OpenCV's and tifffile's decoding)
        path = path.with_suffix("." + kind.split("_")[1][:-2])
        write_image(path, random_u16(32, 32), bit_depth=16)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # truncated PNG / JPEG / WebP / TIFF: half of a valid file
        path = path.with_suffix("." + kind.split("_")[1])
        Image.fromarray(random_u8(32, 32)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "text",
        "empty",
        "zero_width",
        "truncated_png",
        "truncated_jpg",
        "truncated_webp",
        "truncated_tif",
        "truncated_png16",
        "truncated_tif16",
    ],
)
def test_bad_files_raise_one_line_input_error(tmp_path: Path, kind: str) -> None:
    path = make_bad(tmp_path, kind)
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "empty", "zero_width"])
def test_bad_headers_raise_one_line_input_error_from_read_image_size(tmp_path: Path, kind: str) -> None:
    path = make_bad(tmp_path, kind)
    with pytest.raises(InputError) as info:
        read_image_size(path)
    assert path.name in str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb_is_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(random_u8(10, 10)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 100 pixels > 2x the limit: an error
    with pytest.raises(InputError, match="bomb.png") as info:
        read_image(tmp_path / "bomb.png")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, array, bit_depth",
    [
        ("a.jpg", random_u16(), 16),
        ("a.webp", random_u16(), 16),
        ("a.png", random_u8(), 12),
        ("a.bmp", random_u8(), 8),
        ("a.png", np.zeros((4, 4), np.float32), 8),
        ("a.png", np.zeros((4, 4, 4), np.float32), 8),
        ("a.png", np.zeros((0, 4, 3), np.float32), 8),
        ("a.png", np.full((2, 2, 3), np.nan, np.float32), 8),
        ("a.png", np.zeros((2, 2, 3), np.int64), 8),
    ],
)
def test_bad_writes_raise_one_line_input_error(
    tmp_path: Path, name: str, array: np.ndarray, bit_depth: int
) -> None:
    with pytest.raises(InputError) as info:
        write_image(tmp_path / name, array, bit_depth=bit_depth)
    assert name in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --- atomic writes -----------------------------------------------------------------------


def test_write_creates_parents_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.png"
    assert write_image(target, smooth_image()) == target
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]


@pytest.mark.parametrize(
    "name, array",
    [
        ("old.png", np.zeros((3, 3, 2), np.float32)),  # rejected before anything is written
        ("old.webp", np.zeros((1, 16384, 3), np.float32)),  # WebP encoder fails mid-write
    ],
)
def test_failed_write_keeps_old_file_and_no_temporary(tmp_path: Path, name: str, array: np.ndarray) -> None:
    target = write_image(tmp_path / name, smooth_image())
    before = target.read_bytes()
    with pytest.raises(InputError, match=name):
        write_image(target, array)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_overwrite_replaces_content(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
    write_image(tmp_path / "a.png", np.ones((2, 2, 3), np.float32))
    assert read_image(tmp_path / "a.png").min() == 1.0


# --- listing ------------------------------------------------------------------------------


def test_list_images_folder_is_sorted_filtered_and_flat(tmp_path: Path) -> None:
    names = ["b.png", "a.JPG", "c.tiff", "d.webp", "e.BMP", "f.ppm", "g.pgm", "h.tga", "i.gif", "j.jp2"]
    for name in names + [".hidden.png", "notes.txt", "data.csv"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == sorted(names)


def test_list_images_single_file(tmp_path: Path) -> None:
    write_image(tmp_path / "one.png", smooth_image())
    assert list_images(tmp_path / "one.png") == [tmp_path / "one.png"]
    (tmp_path / "one.png").rename(tmp_path / "one.dat")  # any name: Pillow knows the header
    assert list_images(tmp_path / "one.dat") == [tmp_path / "one.dat"]


@pytest.mark.parametrize("kind", ["empty_dir", "missing", "not_image"])
def test_list_images_errors(tmp_path: Path, kind: str) -> None:
    target = {"empty_dir": tmp_path / "empty", "missing": tmp_path / "nope", "not_image": tmp_path / "x.txt"}[
        kind
    ]
    if kind == "empty_dir":
        target.mkdir()
        (target / "readme.txt").write_text("no images here")
    elif kind == "not_image":
        target.write_text("text")
    with pytest.raises(InputError, match=target.name) as info:
        list_images(target)
    assert "\n" not in str(info.value)


# Every format the classic IQA sets and pyiqa's test images use, as Pillow writes it: (name, mode, options)
PILLOW_FORMATS = [
    ("a.bmp", "RGB", {}),
    ("a.ppm", "RGB", {}),
    ("a.pgm", "L", {}),
    ("a.tga", "RGB", {}),
    ("a.gif", "P", {}),
    ("a.webp", "RGB", {"lossless": True}),
    ("a.tif", "RGB", {}),
    ("a.jp2", "RGB", {"irreversible": False}),  # reversible: lossless
]


@pytest.mark.parametrize("name, mode, options", PILLOW_FORMATS)
def test_every_format_pillow_decodes_is_listed_and_read(tmp_path: Path, name: str, mode: str, options: dict) -> None:
    from PIL import features

    if name.endswith(".jp2") and not features.check("jpg_2000"):
        pytest.skip("this Pillow has no JPEG 2000 decoder (OpenJPEG)")
    image = Image.fromarray(random_u8(6, 9))
    image = image.convert(mode) if mode != "P" else image.quantize(16)
    image.save(tmp_path / name, **options)
    assert Path(name).suffix in readable_extensions()
    assert list_images(tmp_path) == [tmp_path / name] and list_images(tmp_path / name) == [tmp_path / name]
    with Image.open(tmp_path / name) as im:
        expected = np.asarray(im.convert("RGB")).astype(np.float32) / 255
    out = read_image(tmp_path / name)
    assert np.array_equal(out, expected) and read_image_size(tmp_path / name) == (6, 9)
    if mode == "RGB":  # lossless formats: the pixels written
        assert np.array_equal(out, np.asarray(image).astype(np.float32) / 255)


def test_gif_is_read_as_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 5, 3), v, np.uint8)).quantize(4) for v in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.n_frames == 2
    out = read_image(tmp_path / "anim.gif")
    assert np.allclose(out, 40 / 255, atol=2 / 255)


def test_readable_extensions_leave_out_what_pillow_cannot_decode() -> None:
    exts = readable_extensions()
    assert {".png", ".jpg", ".bmp", ".tif", ".gif", ".ppm", ".pgm", ".tga"} <= exts
    assert not {".mpg", ".h5", ".grib", ".txt", ".pdf"} & exts  # identify-only, stubs, write-only, none


# --- tensors and luma ---------------------------------------------------------------------


def test_tensor_round_trip() -> None:
    image = smooth_image(4, 6)
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 4, 6) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0, 1], torch.from_numpy(image[..., 1]))
    assert np.array_equal(to_numpy(tensor), image)
    assert np.array_equal(to_numpy(tensor[0].double()), image)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 5), (1, 1, 4, 5)])
def test_to_numpy_rejects_non_image_tensors(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="expected"):
        to_numpy(torch.zeros(shape))


def test_to_tensor_rejects_non_rgb() -> None:
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        to_tensor(np.zeros((4, 5)))


def test_rgb_to_y_matches_matlab_range_and_skimage() -> None:
    from skimage.color import rgb2ycbcr

    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(np.ones((1, 1, 3)))[0, 0] == pytest.approx(235 / 255)
    image = RNG.random((6, 5, 3)).astype(np.float32)
    y = rgb_to_y(image)
    assert y.shape == (6, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y, rgb2ycbcr(image)[..., 0] / 255, atol=1e-6)
