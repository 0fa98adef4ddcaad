"""Served image preprocessing: decode (decoding.py, formats.py), resize/crop/normalize (image.py), and the
per-request batching the Triton preprocess models use (batching.py). Importable with or without Triton.
"""

from preprocess.batching import preprocess_requests
from preprocess.decoding import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS, decode
from preprocess.formats import ACCEPTED, FORMATS, ImageDecodeError, ImageFormat, sniff
from preprocess.image import Preprocessor, center_crop, normalize, resize_short_side, resized_shape

__all__ = [
    "ACCEPTED",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "ImageDecodeError",
    "ImageFormat",
    "Preprocessor",
    "center_crop",
    "decode",
    "normalize",
    "preprocess_requests",
    "resize_short_side",
    "resized_shape",
    "sniff",
]
