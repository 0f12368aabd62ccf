"""Image files in and out: one float32 RGB layout for the whole package.

Every image inside vpdsr is a numpy array of shape (H, W, 3), dtype float32, RGB in [0, 1]
(tensors: [1, 3, H, W]). This module is the only place that knows about file formats.

Every format this Pillow decodes is read (PNG, JPEG, BMP, PPM/PGM, TGA, GIF's first frame, WebP,
TIFF, JPEG 2000, ...: :func:`readable_extensions`). Where Pillow would cut 16-bit colour to 8 bits,
the pixels come from another decoder at full precision: 16-bit colour PNGs (interlaced or not)
from OpenCV, 16-bit colour TIFFs from ``tifffile`` (OpenCV for the compressions, such as LZW, that
tifffile decodes only with ``imagecodecs``; with separate colour planes too, such a file is refused
in one line naming imagecodecs). Other formats' colour deeper than 8 bits (16-bit colour PPM or
JPEG 2000) is read at Pillow's 8 bits. 16-bit files are written by OpenCV (PNG)
and tifffile (TIFF); the rest by Pillow.
"""

from __future__ import annotations

import functools
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from vpdsr.errors import InputError

if TYPE_CHECKING:
    import torch

# Extension -> Pillow format name of what write_image writes.
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
# JPEG without chroma subsampling: SR outputs are judged on fine colour detail.
_SAVE_OPTIONS = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95},
    "TIFF": {"compression": "tiff_deflate"},
}
WRITE_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
_EXPECTED = "an image Pillow can decode: PNG, JPEG, BMP, PPM/PGM, TGA, GIF, WebP, TIFF, JPEG 2000, ..."
# Formats Pillow names but does not decode here: "identify only" plugins, and those whose
# decoding needs something Pillow may lack (a Pillow feature, or Ghostscript for EPS).
_IDENTIFY_ONLY = ("MPEG",)
_NEEDS_FEATURE = {"JPEG": "jpg", "JPEG2000": "jpg_2000", "PNG": "zlib", "WEBP": "webp", "AVIF": "avif"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = (2, 4, 6)  # RGB, gray + alpha, RGBA: Pillow reads these at 8 bits
_TIFF_SEPARATE_PLANES = 2  # PlanarConfiguration: one plane per colour
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Errors Pillow raises for corrupt or truncated data (zlib.error/struct.error from plugins).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1], shape (H, W, 3).

    Gray, palette, CMYK, bilevel, 16-bit and float images are converted to RGB (16-bit
    values are divided by 65535, 32-bit integer 'I' images are clipped to 16 bits first,
    float images are taken as already in [0, 1] and clipped). An alpha channel is dropped
    (the colour values are kept as stored, not composited on a background). The EXIF
    orientation tag is applied, so the array is the image as a viewer shows it.

    Args:
        path: an image file Pillow can read (PNG, JPEG, BMP, TIFF, WebP, ...), whatever its name.

    Returns:
        The image, float32, (H, W, 3).

    Raises:
        InputError: the file is missing, not an image, truncated, empty or too large.

    Example:
        >>> img = read_image("photo.png")  # doctest: +SKIP
    """
    path = Path(path)
    with _opened(path) as im:
        orientation = _orientation(im)
        array = _sixteen_bit_colour(path, im)
        if array is None:
            im.load()  # Pillow decodes lazily: force it so truncation surfaces here
            array = _pil_array(im)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{path}: image has zero width or height (expected at least 1x1 pixels)")
    return apply_orientation(_to_rgb_float(array, path), orientation)


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the array :func:`read_image` would return, from the file header only.

    Cheap (no pixels are decoded), so a command can check every input's size before the
    expensive work starts; a file whose pixels are corrupt still fails later, in read_image.

    Raises:
        InputError: the file is missing or not an image, as in :func:`read_image`.
    """
    path = Path(path)
    with _opened(path) as im:
        width, height = im.size
        orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):  # the EXIF transforms that swap the axes
        width, height = height, width
    if width == 0 or height == 0:
        raise InputError(f"{path}: image has zero width or height (expected at least 1x1 pixels)")
    return height, width


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open(path)``, with a missing file and Pillow's errors turned into one-line InputErrors."""
    if not path.exists():
        raise InputError(f"image file not found: {path} (expected {_EXPECTED})")
    if not path.is_file():
        raise InputError(f"{path} is a directory, not a file (expected {_EXPECTED})")
    try:
        with Image.open(path) as im:
            yield im
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large to decode safely ({_one_line(e)})") from e
    except PermissionError as e:
        raise InputError(f"{path}: permission denied (expected a readable image file)") from e
    except UnidentifiedImageError as e:
        raise InputError(f"{path} is not an image Pillow can read (expected {_EXPECTED})") from e
    except _DECODE_ERRORS as e:
        raise InputError(f"{path}: corrupt or truncated image ({_one_line(e)})") from e


def _pil_array(im: Image.Image) -> np.ndarray:
    """The pixels of a loaded Pillow image as uint8, uint16 or float32, gray or with channels."""
    if im.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(im).astype(np.uint16)
    if im.mode == "I":  # 32-bit signed: in practice 16-bit data widened by a decoder
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")  # palette transparency must not go through an RGB conversion
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa, La
    return np.asarray(im)


def _sixteen_bit_colour(path: Path, im: Image.Image) -> np.ndarray | None:
    """Full-precision pixels where Pillow would cut 16-bit colour to 8 bits; None otherwise."""
    if im.format == "PNG":
        header = _png_header(path)
        if header is not None and header[2] == 16 and header[3] in _PNG_COLOUR_TYPES:
            return _opencv_decode(path)
    elif im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)
        # Pillow maps 16-bit colour TIFFs to its 8-bit modes; its 'I'/'F'/'I;16' are exact.
        if max(bits if isinstance(bits, tuple) else (bits,)) > 8 and im.mode in ("RGB", "RGBA", "RGBX", "LA"):
            return _read_tiff(path)
    return None


def _read_tiff(path: Path) -> np.ndarray:
    """The first page of a TIFF at its own depth: tifffile, else OpenCV (libtiff) for its codecs."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        try:
            array = page.asarray()
        except ValueError as e:  # e.g. "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
            if page.planarconfig == _TIFF_SEPARATE_PLANES:
                # OpenCV reads such files with the planes mixed up: no silent wrong pixels
                raise InputError(f"{path}: 16-bit colour TIFF with separate colour planes that tifffile "
                                 f"cannot decode ({_one_line(e)}); pip install imagecodecs") from None
            return _opencv_decode(path)
        if array.ndim == 3 and page.axes.startswith("S"):  # planar configuration "separate"
            array = np.moveaxis(array, 0, -1)
    return array


def _opencv_decode(path: Path) -> np.ndarray:
    """OpenCV's decoding at the file's own depth, as RGB (alpha dropped) or gray."""
    import cv2

    try:
        array = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise InputError(f"{path}: corrupt or truncated image ({_one_line(e)})") from None
    if array is None:
        raise InputError(f"{path}: corrupt or truncated image (OpenCV cannot decode it)")
    return array[..., 2::-1] if array.ndim == 3 else array  # BGR(A) -> RGB


def _png_header(path: Path) -> tuple[int, ...] | None:
    """(width, height, bit depth, colour type, compression, filter, interlace) of a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">IIBBBBB", head[16:29])


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except _DECODE_ERRORS + (TypeError,):
        return 1  # unreadable EXIF is metadata damage: keep the pixels as stored


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, C) array as ``PIL.ImageOps.exif_transpose`` does for this EXIF value."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    if orientation not in transforms:
        return image
    return np.ascontiguousarray(transforms[orientation](image))


def _to_rgb_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Gray/RGB with or without alpha, any supported dtype -> float32 (H, W, 3) in [0, 1]."""
    if array.ndim == 3 and array.shape[2] in (1, 2):
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3]
    elif array.ndim != 2:
        raise InputError(f"{path}: unsupported pixel layout {array.shape} (expected gray or RGB)")
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        out = array.astype(np.float32) / 65535.0
    elif array.dtype.kind == "f":
        out = np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)
    else:
        raise InputError(f"{path}: unsupported sample type {array.dtype} (expected 8/16-bit or float)")
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out, dtype=np.float32)


def write_image(path: str | os.PathLike, array: np.ndarray, bit_depth: int = 8) -> Path:
    """Write an (H, W, 3) RGB image atomically; the format follows the extension.

    Floats are clipped to [0, 1] and rounded; uint8/uint16 arrays are rescaled if their
    depth differs from ``bit_depth``. The file is written under a hidden temporary name in
    the same folder and renamed when complete, so a failed write leaves any old file intact.

    Args:
        path: .png, .jpg/.jpeg (quality 95, no chroma subsampling), .webp (quality 95)
            or .tif/.tiff. Parent folders are created.
        array: float (H, W, 3) in [0, 1], or uint8/uint16 (H, W, 3).
        bit_depth: 8, or 16 for PNG and TIFF.

    Returns:
        The path written.

    Raises:
        InputError: unknown extension, bad array, 16 bits for a format without them, or
            the encoder refused the image.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot write {path}: unknown extension (expected one of {', '.join(WRITE_EXTENSIONS)})"
        )
    if bit_depth not in (8, 16):
        raise InputError(f"cannot write {path}: bit_depth={bit_depth} (expected 8 or 16)")
    if bit_depth == 16 and fmt not in ("PNG", "TIFF"):
        raise InputError(f"cannot write {path}: 16-bit output needs .png or .tif/.tiff, not {path.suffix}")
    pixels = _quantize(array, bit_depth, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real extension last so anything sniffing the name sees the right format.
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        _encode(tmp, pixels, fmt)
        os.replace(tmp, path)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write {path}: {_one_line(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _quantize(array: np.ndarray, bit_depth: int, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"cannot write {path}: array shape {array.shape} (expected (H, W, 3))")
    target = np.uint8 if bit_depth == 8 else np.uint16
    if array.dtype == target:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif array.dtype == np.uint16:
        scale = 1.0 / 65535.0
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"cannot write {path}: array contains NaN or infinite values")
        scale = 1.0
    else:
        raise InputError(f"cannot write {path}: dtype {array.dtype} (expected float, uint8 or uint16)")
    # Row blocks of float64 temporaries: writing a large SR result must not cost several
    # full-size copies on top of the output buffer.
    out = np.empty(array.shape, dtype=target)
    rows = max(1, (1 << 22) // max(1, array.shape[1] * 3))
    top = float(np.iinfo(target).max)
    for y in range(0, array.shape[0], rows):
        block = np.clip(array[y : y + rows].astype(np.float64) * scale, 0.0, 1.0)
        out[y : y + rows] = np.round(block * top)
    return out


def _encode(tmp: Path, pixels: np.ndarray, fmt: str) -> None:
    if pixels.dtype == np.uint16 and fmt == "PNG":  # Pillow has no 16-bit RGB mode
        import cv2

        ok, data = cv2.imencode(".png", pixels[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
        if not ok:
            raise ValueError("OpenCV could not encode the PNG")
        with open(tmp, "xb") as f:
            f.write(data.tobytes())
    elif pixels.dtype == np.uint16:
        import tifffile

        tifffile.imwrite(tmp, pixels, photometric="rgb", compression="zlib")
    else:
        Image.fromarray(pixels).save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))


@functools.cache
def readable_extensions() -> frozenset[str]:
    """The file extensions (lower case, with the dot) of every format this Pillow decodes.

    Pillow's registry less its identify-only and stub plugins, and less the formats whose decoder
    this installation lacks (a Pillow built without WebP or OpenJPEG, EPS without Ghostscript).
    """
    from PIL import EpsImagePlugin, features

    Image.init()
    usable = set()
    for fmt in set(Image.registered_extensions().values()) & set(Image.OPEN):
        factory = Image.OPEN[fmt][0]
        if fmt in _IDENTIFY_ONLY or (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)):
            continue
        if fmt in _NEEDS_FEATURE and not features.check(_NEEDS_FEATURE[fmt]):
            continue
        if fmt == "EPS" and not EpsImagePlugin.has_ghostscript():
            continue
        usable.add(fmt)
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in usable)


def is_image_file(path: Path) -> bool:
    """A visible file whose extension (any case) is one of :func:`readable_extensions`."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in readable_extensions()


def list_images(path: str | os.PathLike) -> list[Path]:
    """The image files named by ``path``: the file itself, or a folder's images.

    A file is taken whatever its extension once Pillow recognises its header. A folder is
    scanned non-recursively for the extensions in :func:`readable_extensions` (any case),
    skipping hidden files such as half-written temporaries; the result is sorted.

    Raises:
        InputError: the path is missing, is a file Pillow does not recognise, or is a folder
            with no image.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in readable_extensions():
            with _opened(path):  # one line naming the file when Pillow does not recognise it
                pass
        return [path]
    if not path.is_dir():
        raise InputError(f"{path} not found (expected an image file or a folder of them)")
    found = sorted(p for p in path.iterdir() if is_image_file(p))
    if not found:
        raise InputError(f"no images in folder {path} (expected {_EXPECTED})")
    return found


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> float32 tensor [1, 3, H, W] (a copy, on the CPU)."""
    import torch

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image array has shape {image.shape} (expected (H, W, 3))")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Tensor [1, 3, H, W] or [3, H, W] (any device/dtype) -> float32 (H, W, 3) array."""
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise InputError(f"image tensor has shape {tuple(tensor.shape)} (expected [1, 3, H, W] or [3, H, W])")
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy().transpose(1, 2, 0))


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as SR papers compute it (MATLAB ``rgb2ycbcr``), for RGB in [0, 1].

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, so the result lies in
    [16/255, 235/255]. Works on any array whose last axis is RGB; returns float32 without it.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape[-1] != 3:
        raise InputError(f"image array has shape {image.shape} (expected RGB in the last axis)")
    y = 16.0 + 65.481 * image[..., 0] + 128.553 * image[..., 1] + 24.966 * image[..., 2]
    return (y / 255.0).astype(np.float32)
