"""Encoded bytes -> RGB uint8 HxWx3, as PaddleClas's DecodeImage makes them, behind a pixel limit.

PaddleClas decodes with `cv2.imdecode(buf, 1)` (IMREAD_COLOR) and reverses the channels. We call the
same function, so every decision OpenCV makes is PaddleClas's decision too (OpenCV 4.10, checked by
tests/unit/test_decoding.py):
- grey, grey+alpha, palette and 1-bit images become 3 equal or looked-up channels;
- alpha is dropped, not composited: transparent pixels show the colour stored under them (PNG,
  WebP, BMP); TIFF alpha comes out premultiplied (libtiff's RGBA reader), transparent turning black;
- 16-bit PNG keeps the high byte (v >> 8); 16-bit TIFF is rounded (v / 257);
- CMYK JPEG is converted to RGB by OpenCV;
- EXIF orientation is applied for JPEG, PNG (eXIf chunk) and TIFF, and ignored for WebP;
- TIFF: the first page only; animated WebP is refused (OpenCV reads no WebP animation).
GIF, which OpenCV cannot read, is decoded by Pillow: the first frame, palette looked up, alpha dropped.

Fast decode (opt-in, `decode_reduced`): a JPEG far larger than the resize target is decoded at 1/2,
1/4 or 1/8 scale inside libjpeg (scaled IDCT: fewer pixels out of the same entropy-decoded
coefficients), through the same `cv2.imdecode` call with OpenCV's IMREAD_REDUCED_COLOR_{2,4,8} flags,
so EXIF orientation, CMYK and grey conversion, the checks before decoding and every error are those
of the exact path. The scaled short side stays at least `margin` times the resize target
(FAST_DECODE_MARGIN unless the deployment chose another). Every other format, and every JPEG too
small for a 1/2 scale, is decoded exactly. The pixels differ from the exact decode + resize
(docs/preprocessing.md, "Fast decode"): hence opt-in.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import GifImagePlugin

from preprocess.formats import ImageDecodeError, ImageFormat, header_size, sniff, truncation

# 120 megapixels: above the full-resolution output of every mainstream camera (61 MP full frame,
# 9248x6936 = 64.1 MP and 12000x9000 = 108 MP phone modes, 11648x8736 = 101.8 MP medium format), so
# no real photograph is refused; below what would let one request take the memory of many. At the
# limit a preprocess instance holds at most 7 bytes per pixel, 840 MB: the RGB image (3) and either
# the decoder's BGR buffer (3) or Pillow's copy for the resize (4, it stores RGB as RGBX). 200 MP
# phone modes and 150 MP digital backs are refused: raise the `max_pixels` model parameter if they
# must be served.
DEFAULT_MAX_PIXELS = 120_000_000

# 16 MiB per encoded image, the request limit below: above a camera's largest JPEG (about 12 MB at
# 61 MP and top quality); a 24 MP PNG photograph (30-40 MB) is refused: send it as JPEG or as PIXELS.
# Checked first, before the format is even sniffed, so an oversized image costs nothing but its copy.
# tritonserver itself bounds no gRPC request below 2 GB (docs/reliability.md, "Memory"); raise the
# `max_image_bytes` model parameter for larger files.
DEFAULT_MAX_IMAGE_BYTES = 16 * 1024 * 1024

# A request's images together (1 to 8 of them). Bytes: the request the frontend holds whole before any
# step can refuse it, so the pod's memory bound counts it per request in flight (docs/reliability.md,
# "Memory"), and the chart's gateway refuses larger bodies (model_repository/gateway.py): 16 MiB takes
# eight 2 MB camera JPEGs or one 12 MB 61-megapixel one; a PIXELS request's frames share the limit. Pixels: what the
# request makes one preprocess instance decode, one image after another: eight 24-megapixel
# full-frame photos (about 2 s of one core); eight images at the per-image limit would hold an
# instance for 10 s. Both are checked on the headers of every image before the first is decoded.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REQUEST_PIXELS = 8 * 24_000_000

# Fast decode keeps the scaled short side at least twice the resize target: the model's own resize
# then still shrinks by 2x or more, so its filter (antialiased bicubic for NextViT, bilinear for ViT)
# decides the final pixels, and no detail it would have kept is lost to the 8x8 block scaling. For
# a 256 target, a 4000x3000 photo is decoded at 1/4 (1000x750), a 1920x1080 one at 1/2 (960x540),
# and a JPEG whose short side is 1,022 or less exactly.
# A deployment may choose another margin (the `fast_decode_margin` parameter): 1.25 decodes a 4000x3000
# photo at 1/8 (500x375) for a 256 target, faster again but further from exact (docs/preprocessing.md
# prices both). Below MIN_FAST_DECODE_MARGIN the decode would be smaller than the resize target and
# the model's resize would enlarge it: refused.
FAST_DECODE_MARGIN = 2.0
MIN_FAST_DECODE_MARGIN = 1.0
# libjpeg's DCT scales OpenCV exposes, largest reduction first. The scaled size is ceil(side / k).
REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def check_fast_decode_margin(margin: float) -> None:
    """Refuse a margin that would decode below the resize target (and NaN, which compares false)."""
    if not margin >= MIN_FAST_DECODE_MARGIN:
        raise ValueError(
            f"fast_decode_margin {margin} is below {MIN_FAST_DECODE_MARGIN}: the decode would be smaller than "
            "the resize target"
        )


def check_image_bytes(size: int, max_image_bytes: int) -> None:
    if size > max_image_bytes:
        raise ImageDecodeError(
            f"image of {size:,} bytes, over the limit of {max_image_bytes:,} bytes "
            "(the preprocess model's max_image_bytes parameter)"
        )


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse width x height over the limit; `what` says which size it is ("image declares", ...)."""
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{what} {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(the preprocess model's max_pixels parameter)"
        )


def declared_pixels(data: bytes) -> int:
    """width x height as the header declares them; 0 where the header is unreadable (the image's own check says why)."""
    try:
        return math.prod(header_size(data, sniff(data)))
    except ImageDecodeError:
        return 0


def check_request(
    images: Sequence[bytes],
    max_request_bytes: int,
    max_request_pixels: int,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> None:
    """Refuse a request whose images together exceed the byte or pixel limit, before any of them is decoded.

    An image over its own limit is left out of the sums: its own check refuses it, naming it.
    """
    sizes = [len(data) for data in images if len(data) <= max_image_bytes]
    if sum(sizes) > max_request_bytes:
        raise ImageDecodeError(
            f"request of {len(images)} images, {sum(sizes):,} bytes in all, over the limit of {max_request_bytes:,} "
            "bytes per request (the preprocess model's max_request_bytes parameter): send fewer images per request"
        )
    pixels = [n for data in images if len(data) <= max_image_bytes and (n := declared_pixels(data)) <= max_pixels]
    if sum(pixels) > max_request_pixels:
        raise ImageDecodeError(
            f"request of {len(images)} images declaring {sum(pixels):,} pixels in all, over the limit of "
            f"{max_request_pixels:,} pixels per request (the preprocess model's max_request_pixels parameter): "
            "send fewer images per request"
        )


def check_request_frames(frames: np.ndarray, max_request_bytes: int) -> None:
    """Refuse a PIXELS request (N x H x W x 3 uint8) whose frames together exceed the request byte limit.

    The same limit as an encoded request's (DEFAULT_MAX_REQUEST_BYTES): the frontend holds either
    whole, so the pod's memory bound counts one size per request in flight. 16 MiB holds two
    1920x1080 frames or eight 800x600 ones.
    """
    if frames.nbytes > max_request_bytes:
        raise ImageDecodeError(
            f"request of {len(frames)} frames, {frames.nbytes:,} bytes in all, over the limit of "
            f"{max_request_bytes:,} bytes per request (the preprocess model's max_request_bytes parameter): "
            "send fewer or smaller frames per request"
        )


def _decode_opencv(data: bytes, format_name: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if bgr is None:
        raise ImageDecodeError(f"undecodable {format_name} data (corrupt, truncated, or a variant OpenCV cannot read)")
    # The same bytes as PaddleClas's img[:, :, ::-1], made contiguous: 10 ms for 12 MP where numpy's
    # copy of the reversed view takes 100 ms (and an in-place cvtColor 40 ms).
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_gif(data: bytes) -> np.ndarray:
    # The plugin class directly, as for the header: our limit has been checked, Pillow's is not wanted.
    try:
        with GifImagePlugin.GifImageFile(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))  # a freshly opened file is on its first frame
    except Exception as err:  # Pillow reports a cut or corrupt stream as OSError, SyntaxError, ValueError...
        raise ImageDecodeError(f"corrupt or truncated GIF data ({type(err).__name__}: {err})") from None


@dataclass(frozen=True)
class Header:
    """An image that passed every check made before a decoder: its format and declared size."""

    format: ImageFormat
    width: int
    height: int


def checked_header(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> Header:
    """The format and declared size of `data`, after every check that runs before a decoder.

    Order matters: the format and the declared size are checked on the header alone, so an empty,
    foreign, oversized or truncated file is refused before any decoder allocates memory for it.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty image (0 bytes)")
    check_image_bytes(len(data), max_image_bytes)
    image_format = sniff(data)
    width, height = header_size(data, image_format)
    check_pixels(width, height, max_pixels, f"decompression bomb guard: the {image_format.name} header declares")
    problem = truncation(data, image_format)
    if problem:
        raise ImageDecodeError(problem)
    return Header(image_format, width, height)


def _decode_checked(data: bytes, image_format: ImageFormat) -> np.ndarray:
    if image_format.decoder == "pillow":  # GIF only
        return _decode_gif(data)
    return _decode_opencv(data, image_format.name)


def decode(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    header: Header | None = None,
) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3 (C-contiguous), exactly as PaddleClas decodes them.

    `header`: checked_header's result for `data` under the same limits, when the caller has it already
    (a served image's header is read once, not once per use).
    """
    header = header or checked_header(data, max_pixels, max_image_bytes)
    return _decode_checked(data, header.format)


def dct_scale(width: int, height: int, resize_short: int, margin: float = FAST_DECODE_MARGIN) -> int:
    """The largest libjpeg scale (8, 4, 2) that leaves a short side of margin x resize_short; else 1."""
    short = min(width, height)
    for denominator, _ in REDUCED_FLAGS:
        if -(-short // denominator) >= margin * resize_short:
            return denominator
    return 1


def _full_size(rgb: np.ndarray, width: int, height: int, denominator: int) -> tuple[int, int]:
    """(width, height) the exact decode would have given: the header's, turned when EXIF orientation turned it.

    OpenCV applies the orientation itself, so the scaled image's own shape tells which way it came
    out. Only when both readings fit (width and height within one scale step of each other) does the
    scaled shape decide, scaled back up.
    """
    scaled_h, scaled_w = rgb.shape[:2]
    upright = (-(-height // denominator), -(-width // denominator))
    turned = upright[::-1]
    if (scaled_h, scaled_w) == upright and upright != turned:
        return width, height
    if (scaled_h, scaled_w) == turned and upright != turned:
        return height, width
    return scaled_w * denominator, scaled_h * denominator


def decode_reduced(
    data: bytes,
    resize_short: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    margin: float = FAST_DECODE_MARGIN,
    header: Header | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Fast decode for a model resizing to `resize_short`: (RGB uint8 HxWx3, the exact decode's (width, height)).

    A JPEG whose short side allows it is decoded at a reduced DCT scale (dct_scale); everything else
    exactly as `decode`, with the same checks and errors in the same order. The caller resizes to the
    exact path's target size (computed from the size returned), so geometry and crop position stay
    those of the exact path and only the pixels' filtering differs. `header`: as for `decode`.
    """
    header = header or checked_header(data, max_pixels, max_image_bytes)
    image_format, width, height = header.format, header.width, header.height
    denominator = dct_scale(width, height, resize_short, margin) if image_format.name == "JPEG" else 1
    if denominator == 1:
        rgb = _decode_checked(data, image_format)
        return rgb, (rgb.shape[1], rgb.shape[0])
    flags = dict(REDUCED_FLAGS)[denominator]
    rgb = _decode_opencv(data, image_format.name, flags)
    return rgb, _full_size(rgb, width, height, denominator)
