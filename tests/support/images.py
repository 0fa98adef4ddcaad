"""Test images made from real photographs, encoded by the tests themselves.

Pixels come from the photographs scikit-image ships (read with Pillow, not with the code under test);
sizes and aspect ratios are made by cropping (the pixels stay the camera's) or, where a size larger
than any photo is needed, by resizing with OpenCV's INTER_AREA, a filter the served path never uses.
Also hostile files: a real decompression bomb and a JPEG whose header lies about its size.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from catalog.reference import sample_photo_paths

# Photographs in the scikit-image wheel beyond the catalog's sample set (real camera images).
EXTRA_PHOTOS = ("hubble_deep_field.jpg", "retina.jpg", "camera.png")


def photo_paths() -> list[Path]:
    samples = sample_photo_paths()
    return samples + [samples[0].parent / name for name in EXTRA_PHOTOS]


@cache
def photo(name: str) -> np.ndarray:
    """RGB uint8 pixels of one scikit-image photograph, decoded by Pillow."""
    path = sample_photo_paths()[0].parent / name
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def sized(width: int, height: int, source: str = "retina.jpg") -> np.ndarray:
    """Real photo pixels at exactly width x height.

    A centre crop when the photo is large enough; otherwise the largest centre crop of the target's
    aspect ratio, brought to size with INTER_AREA (a filter the served path never uses).
    """
    rgb = photo(source)
    src_h, src_w = rgb.shape[:2]
    if width <= src_w and height <= src_h:
        return centre(rgb, width, height)
    scale = min(src_w / width, src_h / height)
    region = centre(rgb, max(1, min(src_w, round(width * scale))), max(1, min(src_h, round(height * scale))))
    return cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)


def centre(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    top, left = (rgb.shape[0] - height) // 2, (rgb.shape[1] - width) // 2
    return np.ascontiguousarray(rgb[top : top + height, left : left + width])


def encode(pixels: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    """Encode with Pillow (independent of the OpenCV decoder under test)."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(rgb: np.ndarray) -> bytes:
    return encode(rgb, "PNG", compress_level=1)  # lossless either way; level 1 is fast for big test images


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    return encode(rgb, "JPEG", quality=quality)


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of width x height zeros: about 1/1000 of its decoded size on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 and a row of black
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_declaring(rgb: np.ndarray, width: int, height: int) -> bytes:
    """A real small JPEG of `rgb` whose frame header is rewritten to declare width x height."""
    data = bytearray(jpeg(rgb))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# EXIF orientation -> what a viewer does to the stored pixels to show them upright.
UPRIGHT = {
    1: lambda x: x,
    2: lambda x: x[:, ::-1],
    3: lambda x: x[::-1, ::-1],
    4: lambda x: x[::-1],
    5: lambda x: x.transpose(1, 0, 2),
    6: lambda x: np.rot90(x, -1),
    7: lambda x: x[::-1, ::-1].transpose(1, 0, 2),
    8: lambda x: np.rot90(x, 1),
}
