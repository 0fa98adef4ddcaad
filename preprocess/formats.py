"""Which encoded formats the service reads, recognised by their first bytes and checked before decoding.

An allowlist rather than "whatever cv2.imdecode reads": OpenCV would also decode JPEG 2000, OpenEXR,
Radiance HDR, PFM, PxM and Sun raster files. Photographs do not arrive in those, their decoders are
where memory-safety bugs keep being found, and the pixel limit needs the declared size from a header
parser we trust before any decoder allocates. So exactly the formats the docs promise are read, and
the rest are refused with a message that lists them.

Header sizes come from Pillow's format plugins, constructed directly: that parses the header only
(no pixel data) and skips Image.open's own decompression-bomb check, whose fixed threshold would
otherwise hide the declared size from our configurable limit. TIFF sizes come from its first
directory's tags.
"""

from __future__ import annotations

import codecs
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)


class ImageDecodeError(ValueError):
    """The bytes of one request element are not a usable image; the message says why."""


def _jpeg_truncation(data: bytes) -> str | None:
    # libjpeg "succeeds" on a cut file and fills the rest with grey, so OpenCV cannot tell us.
    # Entropy-coded data escapes every 0xFF, so the last SOS marker starts the final scan, and an
    # intact file has an EOI marker after it (bytes after EOI, as some cameras append, are fine).
    # Searched from the end for the last EOI, then for a scan after it: the same answer as looking
    # for an EOI after the last SOS, but the EOI sits near the end, where the search starts, while a
    # backward search for SOS crosses the whole file.
    last_end = data.rfind(b"\xff\xd9")
    if data.find(b"\xff\xda", max(last_end, 0)) != -1:
        return "truncated JPEG (no end-of-image marker after the last scan)"
    return None


def _png_truncation(data: bytes) -> str | None:
    # libpng does notice a cut file, but only says "PNG input buffer is incomplete" on stderr; this
    # check gives the client that reason. IEND is a zero-length chunk: length 0, type, 4-byte CRC.
    end = data.rfind(b"\x00\x00\x00\x00IEND")
    if end == -1 or len(data) < end + 12:
        return "truncated PNG (no IEND chunk at the end)"
    return None


def _pillow_size(plugin: type[ImageFile.ImageFile]) -> Callable[[bytes], tuple[int, int]]:
    def size(data: bytes) -> tuple[int, int]:
        with plugin(io.BytesIO(data)) as img:
            return img.size

    return size


def _tiff_size(data: bytes) -> tuple[int, int]:
    # Width and height tags of the first directory (the page OpenCV decodes). Not TiffImageFile:
    # it also insists on a pixel mode Pillow knows, and would refuse TIFFs that libtiff reads fine.
    directory = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
    stream = io.BytesIO(data)
    stream.seek(directory.next)
    directory.load(stream)
    return int(directory[256]), int(directory[257])


@dataclass(frozen=True)
class ImageFormat:
    """One accepted format: how to recognise it, read its declared size, check it is whole, decode it."""

    name: str
    signature: re.Pattern[bytes]  # matched at the start of the file
    size: Callable[[bytes], tuple[int, int]]  # (width, height) from the header, no pixel decoded
    decoder: Literal["opencv", "pillow"]  # which library decodes the pixels
    truncation: Callable[[bytes], str | None] | None = None

    def matches(self, data: bytes) -> bool:
        return self.signature.match(data) is not None


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat(
        "JPEG", re.compile(rb"\xff\xd8\xff"), _pillow_size(JpegImagePlugin.JpegImageFile), "opencv", _jpeg_truncation
    ),
    ImageFormat(
        "PNG", re.compile(rb"\x89PNG\r\n\x1a\n"), _pillow_size(PngImagePlugin.PngImageFile), "opencv", _png_truncation
    ),
    ImageFormat("BMP", re.compile(rb"BM"), _pillow_size(BmpImagePlugin.BmpImageFile), "opencv"),
    ImageFormat("WebP", re.compile(rb"RIFF.{4}WEBP", re.DOTALL), _pillow_size(WebPImagePlugin.WebPImageFile), "opencv"),
    ImageFormat("TIFF", re.compile(rb"II\*\x00|MM\x00\*"), _tiff_size, "opencv"),
    # OpenCV 4.10 has no GIF decoder (PaddleClas's DecodeImage fails on GIF): Pillow decodes it.
    ImageFormat("GIF", re.compile(rb"GIF8[79]a"), _pillow_size(GifImagePlugin.GifImageFile), "pillow"),
)

ACCEPTED = ", ".join(f.name for f in FORMATS)


def _looks_like_text(data: bytes) -> bool:
    # Incremental: a multi-byte character cut at the 256-byte mark is not a reason to say "binary".
    try:
        head = codecs.getincrementaldecoder("utf-8")().decode(data[:256], final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in head)


def sniff(data: bytes) -> ImageFormat:
    """The format of `data` from its first bytes, or an error that names what it looks like instead."""
    for image_format in FORMATS:
        if image_format.matches(data):
            return image_format
    if _looks_like_text(data):
        preview = data[:40].decode("utf-8", errors="replace")
        raise ImageDecodeError(f"not a decodable image: {len(data)} bytes of text ({preview!r}); accepted: {ACCEPTED}")
    start = data[:8].hex()
    raise ImageDecodeError(
        f"not a decodable image: unknown format ({len(data)} bytes starting {start}); accepted: {ACCEPTED}"
    )


def header_size(data: bytes, image_format: ImageFormat) -> tuple[int, int]:
    """(width, height) as the file's header declares them, before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about odd EXIF blocks that decoders read fine; only a failure matters here.
            warnings.simplefilter("ignore")
            width, height = image_format.size(data)
    except Exception as err:  # Pillow's plugins raise SyntaxError, OSError, ValueError, struct.error, ...
        raise ImageDecodeError(f"unreadable {image_format.name} header ({type(err).__name__}: {err})") from None
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{image_format.name} header declares an empty {width}x{height} image")
    return width, height


def truncation(data: bytes, image_format: ImageFormat) -> str | None:
    """Why the file is cut short, for formats whose decoder would not say so itself; else None."""
    return image_format.truncation(data) if image_format.truncation else None
