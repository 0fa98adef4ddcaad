"""Decode, resize, crop and normalize exactly as PaddleClas's Python path does.

This module is the served preprocessing: the Triton preprocess model imports it unchanged (the
repository builder copies this package next to the model), and tests import it without Triton.
Only numpy, OpenCV and Pillow: nothing here may depend on the rest of the project.

PaddleClas's operators, reproduced step by step (ppcls/data/preprocess/ops/operators.py):
DecodeImage -> cv2.imdecode(IMREAD_COLOR), BGR to RGB; ResizeImage(resize_short) -> scale by
R / short side, Python round() (ties to even); CropImage -> centre crop, odd pixel right/bottom;
NormalizeImage -> float32 (x * 1/255 - mean) / std; ToCHWImage.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# A 64-megapixel image (e.g. 9248x6936, the largest phone sensors) decodes to 192 MB of RGB; the
# limit stops "decompression bombs" (a few KB of PNG declaring gigapixels) before any allocation.
DEFAULT_MAX_PIXELS = 64_000_000

RESIZE_BACKENDS = ("pillow-bicubic", "opencv-linear")


class ImageDecodeError(ValueError):
    """The bytes of one request element are not a usable image; the message says why."""


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the file header alone, or None when Pillow cannot identify it.

    Pillow reads only the header here (no pixel data), which is what makes the pixel limit a
    defence: it runs before the decoder allocates anything.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _is_truncated(data: bytes) -> str | None:
    """Detect files that OpenCV would decode 'successfully' with grey filler after the cut."""
    if data[:3] == b"\xff\xd8\xff":
        # Entropy-coded data escapes 0xFF, so the last SOS marker belongs to the final scan and an
        # intact file has an EOI marker after it (trailing bytes after EOI are tolerated).
        last_scan = data.rfind(b"\xff\xda")
        if last_scan != -1 and data.find(b"\xff\xd9", last_scan) == -1:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    return None


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3, as PaddleClas's DecodeImage makes it.

    cv2.IMREAD_COLOR turns grey and palette images into 3 channels, drops alpha, scales 16-bit
    down to 8-bit and applies the EXIF orientation (OpenCV >= 3.1), as PaddleClas's own decode does.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty image (0 bytes)")
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(
            f"image declares {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the limit of {max_pixels:,}"
        )
    truncated = _is_truncated(data)
    if truncated:
        raise ImageDecodeError(truncated)
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(
            f"not a decodable image ({len(data)} bytes starting {data[:8].hex()}); "
            "accepted formats include JPEG, PNG, BMP, WebP and TIFF"
        )
    return np.ascontiguousarray(bgr[:, :, ::-1])


def resized_shape(width: int, height: int, resize_short: int) -> tuple[int, int]:
    """Target (width, height) with the short side on resize_short, rounded as Python rounds."""
    scale = float(resize_short) / min(width, height)
    return round(width * scale), round(height * scale)


def resize_short_side(
    rgb: np.ndarray, resize_short: int, backend: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Scale so the short side equals resize_short, with the model's own library and filter.

    Pillow's BICUBIC (a=-0.5, antialiased when shrinking) and OpenCV's INTER_LINEAR give different
    pixels; each model must get the one it was trained and evaluated with.
    """
    height, width = rgb.shape[:2]
    new_w, new_h = resized_shape(width, height, resize_short)
    if new_w * new_h > max_pixels:
        raise ImageDecodeError(
            f"a {width}x{height} image resizes to {new_w}x{new_h} (short side {resize_short}), "
            f"over the limit of {max_pixels:,} pixels: aspect ratio too extreme"
        )
    if backend == "opencv-linear":
        return cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if backend == "pillow-bicubic":
        return np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC))
    raise ValueError(f"unknown resize backend {backend!r}; expected one of {RESIZE_BACKENDS}")


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    height, width = img.shape[:2]
    if height < size or width < size:
        raise ImageDecodeError(f"{width}x{height} image is smaller than the {size}x{size} crop")
    top, left = (height - size) // 2, (width - size) // 2
    return img[top : top + size, left : left + size]


def normalize(img: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 arithmetic in numpy's order of operations, so results match PaddleClas bit for bit."""
    return (img.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std


@dataclass(frozen=True)
class Preprocessor:
    """One model's preprocessing, built once from its parameters and applied per image."""

    resize_short: int
    crop: int
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_BACKENDS:
            raise ValueError(f"unknown resize backend {self.resize!r}; expected one of {RESIZE_BACKENDS}")
        if self.resize_short < self.crop:
            raise ValueError(f"resize_short {self.resize_short} is smaller than crop {self.crop}")

    @property
    def _mean(self) -> np.ndarray:
        return np.array(self.mean, dtype=np.float32).reshape(1, 1, 3)

    @property
    def _std(self) -> np.ndarray:
        return np.array(self.std, dtype=np.float32).reshape(1, 1, 3)

    def pixels(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> the cropped uint8 image the network sees (before normalization)."""
        resized = resize_short_side(rgb, self.resize_short, self.resize, self.max_pixels)
        return center_crop(resized, self.crop)

    def tensor(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> float32 3xCxC network input."""
        return normalize(self.pixels(rgb), self._mean, self._std).transpose(2, 0, 1)

    def __call__(self, data: bytes) -> np.ndarray:
        """Encoded image bytes -> float32 3xCxC network input."""
        return self.tensor(decode(data, self.max_pixels))
