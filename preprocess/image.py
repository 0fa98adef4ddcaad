"""Resize, crop and normalize exactly as PaddleClas's Python path does, one model's parameters at a time.

This package is the served preprocessing: the Triton preprocess models import it unchanged (the
repository builder copies it next to them), and tests import it without Triton. Only numpy, OpenCV,
Pillow and the standard library: nothing here may depend on the rest of the project.

PaddleClas's operators (deploy/python/preprocess.py, the same code as ppcls/data/preprocess/ops),
reproduced step by step: DecodeImage (see decoding.py); ResizeImage(resize_short) scales by
R / short side with Python's round() (ties to even); CropImage takes the centre, the odd pixel going
right/bottom; NormalizeImage computes float32 (x * float32(1/255) - mean) / std; ToCHWImage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from preprocess.decoding import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_REQUEST_PIXELS,
    FAST_DECODE_MARGIN,
    Header,
    check_fast_decode_margin,
    check_pixels,
    check_request,
    check_request_frames,
    checked_header,
    decode,
    decode_reduced,
)
from preprocess.formats import ImageDecodeError
from preprocess.slots import DecodeSlots
from preprocess.tiers import RESIZE_TIER_PARAMETER, check_tier

RESIZE_BACKENDS = ("pillow-bicubic", "opencv-linear")
# The preprocess model parameter choosing the decode: "exact" (PaddleClas's, the default) or "fast"
# (large JPEGs decoded at a reduced DCT scale, decoding.decode_reduced; opt-in, changes pixels).
DECODE_PARAMETER = "decode"
DECODE_MODES = ("exact", "fast")
# The preprocess model parameter setting fast decode's margin (decoding.FAST_DECODE_MARGIN by default).
FAST_DECODE_MARGIN_PARAMETER = "fast_decode_margin"


def resized_shape(width: int, height: int, resize_short: int) -> tuple[int, int]:
    """Target (width, height) with the short side on resize_short, rounded as Python rounds.

    float64 and round-half-to-even, as ResizeImage computes it: a 1025x512 image at 256 becomes
    512x256 here (512.5 rounds to even), where a C round() would give 513.
    """
    scale = float(resize_short) / min(width, height)
    return round(width * scale), round(height * scale)


def _target_size(
    rgb: np.ndarray, resize_short: int, max_pixels: int, full_size: tuple[int, int] | None
) -> tuple[int, int]:
    """The resize target of either tier, from `full_size` when given, refused over the pixel limit."""
    height, width = rgb.shape[:2]
    width, height = full_size or (width, height)
    new_w, new_h = resized_shape(width, height, resize_short)
    check_pixels(new_w, new_h, max_pixels, f"aspect ratio too extreme: a {width}x{height} image would resize to")
    return new_w, new_h


def resize_short_side(
    rgb: np.ndarray,
    resize_short: int,
    backend: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Scale so the short side equals resize_short, with the model's own library and filter.

    Pillow's BICUBIC (a=-0.5, antialiased when shrinking) and OpenCV's INTER_LINEAR give different
    pixels; each model must get the one it was trained and evaluated with. A very thin image grows
    huge here (20000x1 -> 5,120,000x256), so the result is held to the same pixel limit as decoding.
    `full_size` (fast decode): the (width, height) the image had before a reduced-scale decode; the
    target size is computed from it, so the result has the exact path's size. The near-exact tier resizes
    only the crop instead (near_exact_crop).
    """
    new_w, new_h = _target_size(rgb, resize_short, max_pixels, full_size)
    if backend == "opencv-linear":
        return cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if backend == "pillow-bicubic":
        return np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BICUBIC))
    raise ValueError(f"unknown resize backend {backend!r}; expected one of {RESIZE_BACKENDS}")


def crop_origin(width: int, height: int, size: int) -> tuple[int, int]:
    """(left, top) of CropImage's centre size x size square, the odd pixel going right/bottom."""
    if height < size or width < size:
        raise ImageDecodeError(f"{width}x{height} image is smaller than the {size}x{size} crop")
    return (width - size) // 2, (height - size) // 2


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    height, width = img.shape[:2]
    left, top = crop_origin(width, height, size)
    return img[top : top + size, left : left + size]


def near_exact_crop(
    rgb: np.ndarray,
    resize_short: int,
    crop: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The near-exact tier's crop: pillow-simd's BICUBIC of only the pixels the centre crop keeps.

    The exact path resizes the whole image, then throws away everything outside the crop (43 % of a
    500x375 photo resized to 341x256 and cut to 224). Pillow's `box` resamples just the crop's part of
    the source at the full resize's scale, with each output pixel's filter still reading the source
    beyond the box, so the crop is the same computation less the discarded work; only the box's
    float32 corners (Pillow's C type) move each pixel's centre by about 1e-5 pixel, which can tip a
    value across a rounding boundary: priced with pillow-simd's own deviation, against the exact
    crop (docs/preprocessing.md, "Near-exact resize"). Geometry, limits and errors are the exact
    path's: same target size (from `full_size` after a reduced decode), same crop origin.

    Pillow stores RGB as RGBX, so it is handed that layout to wrap: Image.fromarray(rgb) unpacks every
    pixel into a new RGBX image (7 ms for 12 megapixels, as long as pillow-simd's whole resize);
    OpenCV widens to RGBA in 3 ms and Image.frombuffer wraps it without a copy. The pad byte is
    filtered like a channel and dropped by Pillow's packer. Only the near-exact tier: stock Pillow
    resizes RGBX slower.
    """
    height, width = rgb.shape[:2]
    new_w, new_h = _target_size(rgb, resize_short, max_pixels, full_size)
    left, top = crop_origin(new_w, new_h, crop)
    x_scale, y_scale = width / new_w, height / new_h
    box = (left * x_scale, top * y_scale, (left + crop) * x_scale, (top + crop) * y_scale)
    rgbx = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    source = Image.frombuffer("RGBX", (width, height), rgbx, "raw", "RGBX", 0, 1)
    resized = source.resize((crop, crop), Image.BICUBIC, box=box)
    return np.frombuffer(resized.tobytes("raw", "RGB"), np.uint8).reshape(crop, crop, 3)


def normalize(img: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 arithmetic in numpy's order of operations, so results match PaddleClas bit for bit.

    Elementwise, so a stacked batch (N x H x W x 3) gives each image exactly its single-image result.
    """
    return (img.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std


def _floats(text: str) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in text.split(","))
    return a, b, c


@dataclass(frozen=True)
class Preprocessor:
    """One model's preprocessing, built once from its parameters and applied per image or per batch.

    The served step needs only decode and crop (`pixels`): the network normalizes the uint8 crop
    itself (export/normalization.py). mean and std, when given, make `normalize`
    available: PaddleClas's own float32 NormalizeImage, which the network's graph is checked against
    and which Paddle Inference is fed with in the parity check.
    """

    resize_short: int
    crop: int
    resize: str
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    decode_mode: str = "exact"  # DECODE_MODES; "fast" only through an explicit opt-in
    fast_decode_margin: float = FAST_DECODE_MARGIN  # used by decode_mode "fast" only
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # all images of one request together
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    slots: DecodeSlots | None = field(default=None, compare=False)  # the served step's; None: no shared limit
    resize_tier: str = "exact"  # tiers.RESIZE_TIERS; "near-exact" (pillow-simd) only through an explicit opt-in

    def __post_init__(self) -> None:
        if self.decode_mode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {self.decode_mode!r}; expected one of {DECODE_MODES}")
        check_fast_decode_margin(self.fast_decode_margin)
        if self.resize not in RESIZE_BACKENDS:
            raise ValueError(f"unknown resize backend {self.resize!r}; expected one of {RESIZE_BACKENDS}")
        check_tier(self.resize_tier, self.resize)  # the PIL this process loaded must be the tier's
        if self.resize_short < self.crop:
            raise ValueError(f"resize_short {self.resize_short} is smaller than crop {self.crop}")
        if self.max_pixels < self.resize_short * self.resize_short:
            raise ValueError(f"max_pixels {self.max_pixels} cannot hold one {self.resize_short}-pixel square")

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> Preprocessor:
        """From the string parameters of a preprocess model's config.pbtxt (see model_repository/configs.py)."""
        return cls(
            resize_short=int(params["resize_short"]),
            crop=int(params["crop"]),
            resize=params["resize"],
            mean=_floats(params["mean"]) if "mean" in params else None,
            std=_floats(params["std"]) if "std" in params else None,
            max_pixels=int(params.get("max_pixels", DEFAULT_MAX_PIXELS)),
            max_image_bytes=int(params.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)),
            decode_mode=params.get(DECODE_PARAMETER, "exact"),
            fast_decode_margin=float(params.get(FAST_DECODE_MARGIN_PARAMETER, FAST_DECODE_MARGIN)),
            max_request_bytes=int(params.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)),
            max_request_pixels=int(params.get("max_request_pixels", DEFAULT_MAX_REQUEST_PIXELS)),
            resize_tier=params.get(RESIZE_TIER_PARAMETER, "exact"),
        )

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise ValueError("this Preprocessor crops only: give mean and std to normalize")
        shape = (1, 1, 3)
        return np.array(self.mean, np.float32).reshape(shape), np.array(self.std, np.float32).reshape(shape)

    def decode(self, data: bytes) -> np.ndarray:
        """Encoded bytes -> RGB uint8 HxWx3, under this model's byte and pixel limits."""
        return decode(data, self.max_pixels, self.max_image_bytes)

    def crop_encoded(self, data: bytes) -> np.ndarray:
        """Encoded bytes -> the uint8 crop the network sees: what the IMAGE step serves, and client-side crops.

        Exact by default; with decode_mode "fast", a large JPEG is decoded at a reduced scale and
        resized to the size the exact path would have given it. With `slots`, an image above their
        size waits for one of the server's large-decode slots (preprocess/slots.py).
        """
        header = checked_header(data, self.max_pixels, self.max_image_bytes)  # a bad image never waits for a slot
        if self.slots is None:
            return self._crop_checked(data, header)
        with self.slots.hold(header.width * header.height):
            return self._crop_checked(data, header)

    def check_request(self, images: Sequence[bytes]) -> None:
        """Refuse a request over this model's per-request byte or pixel limit before decoding any image."""
        check_request(images, self.max_request_bytes, self.max_request_pixels, self.max_image_bytes, self.max_pixels)

    def check_frames(self, frames: np.ndarray) -> None:
        """Refuse a PIXELS request over this model's per-request byte limit before resizing any frame."""
        check_request_frames(frames, self.max_request_bytes)

    def _crop_checked(self, data: bytes, header: Header) -> np.ndarray:
        if self.decode_mode == "exact":
            return self.pixels(decode(data, header=header))
        rgb, full_size = decode_reduced(data, self.resize_short, margin=self.fast_decode_margin, header=header)
        return self.pixels(rgb, full_size)

    def pixels(self, rgb: np.ndarray, full_size: tuple[int, int] | None = None) -> np.ndarray:
        """RGB uint8 HxWx3 -> the cropped uint8 image the network sees (before normalization).

        Also the entry of already-decoded frames, so the frame's shape and size are checked here.
        `full_size`: see resize_short_side (fast decode only).
        """
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ImageDecodeError(f"expected RGB uint8 HxWx3 pixels, got {rgb.dtype} {tuple(rgb.shape)}")
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            raise ImageDecodeError(f"empty {width}x{height} frame")
        check_pixels(width, height, self.max_pixels, "frame has")
        rgb = np.ascontiguousarray(rgb)
        if self.resize_tier == "near-exact":
            return near_exact_crop(rgb, self.resize_short, self.crop, self.max_pixels, full_size)
        resized = resize_short_side(rgb, self.resize_short, self.resize, self.max_pixels, full_size)
        return center_crop(resized, self.crop)

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """uint8 CxCx3 -> float32 3xCxC, or a stack N x C x C x 3 -> N x 3 x C x C, in one computation."""
        hwc = normalize(crops, *self._statistics())
        return np.ascontiguousarray(np.moveaxis(hwc, -1, -3))
