"""Served image preprocessing (see image.py); importable with or without Triton."""

from preprocess.image import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    Preprocessor,
    center_crop,
    decode,
    normalize,
    resize_short_side,
    resized_shape,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "Preprocessor",
    "center_crop",
    "decode",
    "normalize",
    "resize_short_side",
    "resized_shape",
]
