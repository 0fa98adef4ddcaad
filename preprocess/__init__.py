"""Served image preprocessing: decode (decoding.py, formats.py), resize/crop/normalize (image.py), and the
per-request batching the Triton preprocess models use (batching.py). Importable with or without Triton.
"""

from preprocess.batching import preprocess_requests
from preprocess.decoding import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS, FAST_DECODE_MARGIN, decode, decode_reduced
from preprocess.formats import ACCEPTED, FORMATS, ImageDecodeError, ImageFormat, sniff
from preprocess.image import (
    DECODE_MODES,
    DECODE_PARAMETER,
    FAST_DECODE_MARGIN_PARAMETER,
    Preprocessor,
    center_crop,
    normalize,
    resize_short_side,
    resized_shape,
)
from preprocess.tiers import PILLOW_SIMD_DIR_PARAMETER, RESIZE_TIER_PARAMETER, RESIZE_TIERS

__all__ = [
    "ACCEPTED",
    "DECODE_MODES",
    "DECODE_PARAMETER",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FAST_DECODE_MARGIN",
    "FAST_DECODE_MARGIN_PARAMETER",
    "FORMATS",
    "PILLOW_SIMD_DIR_PARAMETER",
    "RESIZE_TIERS",
    "RESIZE_TIER_PARAMETER",
    "ImageDecodeError",
    "ImageFormat",
    "Preprocessor",
    "center_crop",
    "decode",
    "decode_reduced",
    "normalize",
    "preprocess_requests",
    "resize_short_side",
    "resized_shape",
    "sniff",
]
