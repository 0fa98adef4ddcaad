"""How each accepted format decodes, checked on files this test writes from real photo pixels.

Two questions per file: does the served decode equal PaddleClas's DecodeImage (the published
accuracy was measured through it), and do the pixels mean what docs/preprocessing.md says (checked
against the source pixels or against Pillow, a decoder independent of OpenCV)? Then the guards that
run before any decoder: the format allowlist, the pixel limit, truncation.

Every decode test runs twice (the `decode` fixture): the exact decode, and the fast decode a
deployment may opt into (preprocess.decode_reduced for a 256-pixel model). These files are all
far below the size fast decode reduces, so both must give the same pixels and the same refusals.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

import preprocess.decoding
from preprocess import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    ImageDecodeError,
    Preprocessor,
    decode_reduced,
)
from preprocess import decode as exact_decode
from preprocess.decoding import MIN_FAST_DECODE_MARGIN
from tests.support import images

rng = np.random.default_rng(4)
SOURCE = images.photo("chelsea.png")[100:160, 150:230].copy()  # 80x60 of a real photo
GREY = np.asarray(Image.fromarray(SOURCE).convert("L"))
PALETTE = Image.fromarray(SOURCE).quantize(48)
ALPHA = np.tile(np.arange(80, dtype=np.uint8) * 3, (60, 1))
ALPHA[:, :10] = 0  # fully transparent columns: their stored colour must come out, not a background
RGBA = np.dstack([SOURCE, ALPHA])
# 16-bit samples whose high byte is the photo and whose low byte is noise: v >> 8 gives SOURCE back,
# v / 257 rounded does not, so the test tells the two conversions apart.
DEEP = SOURCE.astype(np.uint16) * 256 + rng.integers(0, 256, SOURCE.shape, dtype=np.uint16)


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def premultiplied(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.round(rgb * (alpha[:, :, None] / 255)).astype(np.uint8)


def grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def opencv_16bit(extension: str, rgb16: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(extension, np.ascontiguousarray(rgb16[:, :, ::-1]))
    assert ok
    return buffer.tobytes()


def _animated_gif() -> bytes:
    frames = [Image.fromarray(SOURCE).quantize(32), Image.fromarray(255 - SOURCE).quantize(32)]
    return images.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


# name -> (file bytes, the pixels the decision promises, tolerance in levels)
CASES: dict[str, tuple[Callable[[], bytes], Callable[[bytes], np.ndarray], int]] = {
    "jpeg-baseline": (lambda: images.jpeg(SOURCE), pillow_rgb, 2),
    "jpeg-progressive": (lambda: images.encode(SOURCE, "JPEG", quality=90, progressive=True), pillow_rgb, 2),
    "jpeg-grey": (lambda: images.jpeg(GREY), lambda d: grey3(np.asarray(Image.open(io.BytesIO(d)))), 2),
    "jpeg-cmyk": (lambda: images.encode(Image.fromarray(SOURCE).convert("CMYK"), "JPEG", quality=95), pillow_rgb, 2),
    "png-rgb": (lambda: images.png(SOURCE), lambda _: SOURCE, 0),
    "png-rgba-alpha-dropped": (lambda: images.png(RGBA), lambda _: SOURCE, 0),
    "png-palette": (lambda: images.encode(PALETTE, "PNG"), lambda _: np.asarray(PALETTE.convert("RGB")), 0),
    "png-palette-transparent": (
        lambda: images.encode(PALETTE, "PNG", transparency=0),
        lambda _: np.asarray(PALETTE.convert("RGB")),
        0,
    ),
    "png-grey": (lambda: images.png(GREY), lambda _: grey3(GREY), 0),
    "png-grey-alpha": (
        lambda: images.encode(Image.fromarray(np.dstack([GREY, ALPHA])), "PNG"),
        lambda _: grey3(GREY),
        0,
    ),
    "png-1bit": (
        lambda: images.encode(Image.fromarray(GREY > 128), "PNG"),
        lambda _: grey3((GREY > 128) * np.uint8(255)),
        0,
    ),
    "png-16bit-rgb-high-byte": (lambda: opencv_16bit(".png", DEEP), lambda _: SOURCE, 0),
    "png-16bit-grey-high-byte": (
        lambda: images.encode(Image.fromarray(DEEP[:, :, 0]), "PNG"),
        lambda _: grey3(SOURCE[:, :, 0]),
        0,
    ),
    "bmp-24bit": (lambda: images.encode(SOURCE, "BMP"), lambda _: SOURCE, 0),
    "bmp-32bit-alpha-dropped": (lambda: images.encode(RGBA, "BMP"), lambda _: SOURCE, 0),
    "bmp-palette": (lambda: images.encode(PALETTE, "BMP"), lambda _: np.asarray(PALETTE.convert("RGB")), 0),
    "bmp-1bit": (
        lambda: images.encode(Image.fromarray(GREY > 128), "BMP"),
        lambda _: grey3((GREY > 128) * np.uint8(255)),
        0,
    ),
    "webp-lossless": (lambda: images.encode(SOURCE, "WEBP", lossless=True), lambda _: SOURCE, 0),
    "webp-lossless-alpha-dropped": (
        lambda: images.encode(RGBA, "WEBP", lossless=True, exact=True),
        lambda _: SOURCE,
        0,
    ),
    "webp-lossy": (lambda: images.encode(SOURCE, "WEBP", quality=80), pillow_rgb, 2),
    "tiff-raw": (lambda: images.encode(SOURCE, "TIFF"), lambda _: SOURCE, 0),
    "tiff-lzw": (lambda: images.encode(SOURCE, "TIFF", compression="tiff_lzw"), lambda _: SOURCE, 0),
    "tiff-deflate": (lambda: images.encode(SOURCE, "TIFF", compression="tiff_adobe_deflate"), lambda _: SOURCE, 0),
    "tiff-jpeg": (lambda: images.encode(SOURCE, "TIFF", compression="jpeg"), pillow_rgb, 2),
    "tiff-grey": (lambda: images.encode(GREY, "TIFF"), lambda _: grey3(GREY), 0),
    "tiff-palette": (lambda: images.encode(PALETTE, "TIFF"), lambda _: np.asarray(PALETTE.convert("RGB")), 0),
    # libtiff's RGBA reader, which OpenCV uses here, premultiplies unassociated alpha: transparent -> black.
    "tiff-rgba-premultiplied": (lambda: images.encode(RGBA, "TIFF"), lambda _: premultiplied(SOURCE, ALPHA), 0),
    "tiff-16bit-rounded": (lambda: opencv_16bit(".tiff", DEEP), lambda _: np.round(DEEP / 257).astype(np.uint8), 0),
    "tiff-multipage-first": (
        lambda: images.encode(
            Image.fromarray(SOURCE), "TIFF", save_all=True, append_images=[Image.fromarray(255 - SOURCE)]
        ),
        lambda _: SOURCE,
        0,
    ),
}
GIF_CASES: dict[str, tuple[Callable[[], bytes], Callable[[bytes], np.ndarray]]] = {
    "gif": (lambda: images.encode(PALETTE, "GIF"), lambda _: np.asarray(PALETTE.convert("RGB"))),
    "gif-transparent": (
        lambda: images.encode(PALETTE, "GIF", transparency=0),
        lambda _: np.asarray(PALETTE.convert("RGB")),
    ),
    "gif-animated-first-frame": (
        _animated_gif,
        lambda _: np.asarray(Image.fromarray(SOURCE).quantize(32).convert("RGB")),
    ),
}


def fast_decode(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> np.ndarray:
    """The decode of a fast-decode deployment for a 256-pixel model (the most reducing short side of the catalog)."""
    return decode_reduced(data, 256, max_pixels, max_image_bytes)[0]


def fast_decode_margin_1(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> np.ndarray:
    """fast_decode at the smallest margin a deployment may choose: the most reduced decodes there are."""
    return decode_reduced(data, 256, max_pixels, max_image_bytes, margin=MIN_FAST_DECODE_MARGIN)[0]


DECODES = {"exact": exact_decode, "fast": fast_decode, "fast-margin-1": fast_decode_margin_1}


@pytest.fixture(params=list(DECODES))
def decode(request: pytest.FixtureRequest) -> Callable[..., np.ndarray]:
    return DECODES[request.param]


@pytest.fixture(scope="module")
def paddleclas_decode() -> Callable[[bytes], np.ndarray]:
    from paddleclas.deploy.python.preprocess import DecodeImage

    return DecodeImage(to_rgb=True, channel_first=False)  # as every NextViT and ViT config sets it


@pytest.mark.parametrize("case", list(CASES))
def test_format_decodes_as_paddleclas_and_as_documented(
    case: str, paddleclas_decode: Callable, decode: Callable
) -> None:
    make, expected, tolerance = CASES[case]
    data = make()
    rgb = decode(data)
    assert rgb.dtype == np.uint8 and rgb.shape == (60, 80, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, paddleclas_decode(data))
    difference = np.abs(rgb.astype(int) - expected(data).astype(int)).max()
    assert difference <= tolerance, f"{case}: {difference} levels from the documented result"


def test_16bit_png_and_tiff_scale_differently(decode: Callable) -> None:
    """The documented asymmetry is real: PNG keeps the high byte, TIFF rounds v / 257."""
    assert not np.array_equal(np.round(DEEP / 257).astype(np.uint8), SOURCE)  # the two rules differ here
    np.testing.assert_array_equal(decode(opencv_16bit(".png", DEEP)), SOURCE)
    np.testing.assert_array_equal(decode(opencv_16bit(".tiff", DEEP)), np.round(DEEP / 257).astype(np.uint8))


@pytest.mark.parametrize("case", list(GIF_CASES))
def test_gif_is_decoded_by_pillow_first_frame(case: str, paddleclas_decode: Callable, decode: Callable) -> None:
    make, expected = GIF_CASES[case]
    data = make()
    with pytest.raises(AttributeError):  # PaddleClas's DecodeImage cannot read GIF: cv2.imdecode gives None
        paddleclas_decode(data)
    np.testing.assert_array_equal(decode(data), expected(data))


def test_animated_webp_is_refused_as_opencv_cannot_read_it(decode: Callable) -> None:
    frames = [Image.fromarray(SOURCE), Image.fromarray(255 - SOURCE)]
    data = images.encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(ImageDecodeError, match="undecodable WebP data"):
        decode(data)


# --- EXIF orientation -----------------------------------------------------------------------------

UPRIGHT = images.UPRIGHT  # EXIF orientation -> what a viewer does to show the stored pixels upright


def with_orientation(fmt: str, orientation: int, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return images.encode(SOURCE, fmt, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("orientation", list(UPRIGHT))
@pytest.mark.parametrize(
    ("fmt", "options"), [("JPEG", {"quality": 95}), ("PNG", {}), ("TIFF", {})], ids=["JPEG", "PNG", "TIFF"]
)
def test_exif_orientation_is_applied(
    fmt: str, options: dict, orientation: int, paddleclas_decode: Callable, decode: Callable
) -> None:
    # The same pixels are encoded each time, only the tag changes, so orientation 1 is the reference.
    stored = decode(with_orientation(fmt, 1, **options))
    data = with_orientation(fmt, orientation, **options)
    np.testing.assert_array_equal(decode(data), UPRIGHT[orientation](stored))
    np.testing.assert_array_equal(decode(data), paddleclas_decode(data))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_webp_exif_orientation_is_ignored_as_paddleclas_ignores_it(
    orientation: int, paddleclas_decode: Callable, decode: Callable
) -> None:
    data = with_orientation("WEBP", orientation, lossless=True)
    with Image.open(io.BytesIO(data)) as img:
        assert img.getexif()[0x0112] == orientation  # the tag is there; OpenCV 4.10 does not act on it
    np.testing.assert_array_equal(decode(data), SOURCE)
    np.testing.assert_array_equal(decode(data), paddleclas_decode(data))


# --- refused before decoding -----------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "kind"), [("PPM", "PxM"), ("JPEG2000", "JPEG 2000")])
def test_formats_outside_the_allowlist_are_refused_though_opencv_reads_them(
    fmt: str, kind: str, decode: Callable
) -> None:
    data = images.encode(SOURCE, fmt)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # a decision, not a gap
    with pytest.raises(ImageDecodeError, match=r"not a decodable image.*accepted: JPEG, PNG, BMP, WebP, TIFF, GIF"):
        decode(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image \\(0 bytes\\)"),
        (b"GET / HTTP/1.1\r\nHost: example\r\n", "bytes of text"),
        ("é".encode() * 200, "400 bytes of text"),  # a two-byte character straddles the 256-byte sniff
        (bytes(rng.integers(0, 256, 4096, dtype=np.uint8)), "unknown format"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 60, "unreadable JPEG header"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "unreadable PNG header"),
        (b"BM" + b"\x00" * 60, "unreadable BMP header"),
        (b"II*\x00\xff\xff\xff\x00", "unreadable TIFF header"),
    ],
    ids=["empty", "text", "utf8-text", "random", "jpeg-header-only", "png-garbage", "bmp-garbage", "tiff-bad-offset"],
)
def test_non_images_are_named(data: bytes, message: str, decode: Callable) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode(data)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"])
def test_truncated_files_are_refused(fmt: str, fraction: float, decode: Callable) -> None:
    # Larger than SOURCE so the cut lands in pixel data, not in a header.
    rgb = images.sized(640, 480, "coffee.png")
    data = images.encode(Image.fromarray(rgb).quantize(200) if fmt == "GIF" else rgb, fmt)
    cut = data[: int(len(data) * fraction)]
    name = {"WEBP": "WebP"}.get(fmt, fmt)
    with pytest.raises(ImageDecodeError, match=f"(truncated|undecodable|unreadable) {name}"):
        decode(cut)


def test_trailing_bytes_after_the_end_marker_are_accepted(decode: Callable) -> None:
    # Cameras append data after a JPEG's EOI; tools append after PNG's IEND. Neither is truncation.
    for data in (images.jpeg(SOURCE), images.png(SOURCE)):
        assert decode(data + b"\x00trailing metadata" * 10).shape == (60, 80, 3)


# --- the pixel limit --------------------------------------------------------------------------------

LIMIT_CASES = {
    "JPEG": lambda: images.jpeg(SOURCE),
    "PNG": lambda: images.png(SOURCE),
    "BMP": lambda: images.encode(SOURCE, "BMP"),
    "WebP": lambda: images.encode(SOURCE, "WEBP", lossless=True),
    "TIFF": lambda: images.encode(SOURCE, "TIFF"),
    "GIF": lambda: images.encode(PALETTE, "GIF"),
}


def test_every_accepted_format_has_a_limit_case() -> None:
    assert set(LIMIT_CASES) == {f.name for f in FORMATS}


@pytest.mark.parametrize("fmt", list(LIMIT_CASES))
def test_pixel_limit_reads_each_header_and_is_configurable(fmt: str, decode: Callable) -> None:
    data = LIMIT_CASES[fmt]()
    assert decode(data, max_pixels=80 * 60).shape == (60, 80, 3)  # exactly at the limit is accepted
    with pytest.raises(ImageDecodeError, match=f"{fmt} header declares 80x60 = 4,800 pixels, over the limit of 4,799"):
        decode(data, max_pixels=80 * 60 - 1)


def test_decompression_bombs_are_refused_before_any_decoder_runs(
    monkeypatch: pytest.MonkeyPatch, decode: Callable
) -> None:
    bomb = images.png_bomb(12_000, 11_000)  # 132 megapixels of zeros in a file of about 130 kB
    assert len(bomb) < 200_000 and DEFAULT_MAX_PIXELS < 12_000 * 11_000

    def no_decoding(*args: object) -> None:
        raise AssertionError("a decoder was reached")

    monkeypatch.setattr(preprocess.decoding.cv2, "imdecode", no_decoding)
    with pytest.raises(ImageDecodeError, match="PNG header declares 12000x11000 = 132,000,000 pixels"):
        decode(bomb)
    with pytest.raises(ImageDecodeError, match="JPEG header declares 65500x65500"):
        decode(images.jpeg_declaring(SOURCE, 65_500, 65_500))


@pytest.mark.parametrize(
    ("width", "height", "accepted"),
    [(9248, 6936, True), (12000, 9000, True), (11648, 8736, True), (14204, 10652, False), (16320, 12240, False)],
    ids=["64MP-phone", "108MP-phone", "100MP-medium-format", "150MP-back", "200MP-phone"],
)
def test_default_limit_is_where_the_docs_put_it(width: int, height: int, accepted: bool) -> None:
    if accepted:
        preprocess.decoding.check_pixels(width, height, DEFAULT_MAX_PIXELS, "image declares")
    else:
        with pytest.raises(ImageDecodeError, match="over the limit"):
            preprocess.decoding.check_pixels(width, height, DEFAULT_MAX_PIXELS, "image declares")


# --- decoded frames (the PIXELS entry point) --------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), "expected RGB uint8 HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), "expected RGB uint8 HxWx3"),
        (np.zeros((10, 10), np.uint8), "expected RGB uint8 HxWx3"),
        (np.zeros((0, 10, 3), np.uint8), "empty 10x0 frame"),
        (np.zeros((1, 20000, 3), np.uint8), "aspect ratio too extreme"),
    ],
    ids=["float", "rgba", "grey", "empty", "20000x1"],
)
def test_frames_are_checked(frame: np.ndarray, message: str) -> None:
    prep = Preprocessor(256, 224, "opencv-linear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ImageDecodeError, match=message):
        prep.pixels(frame)


def test_frame_pixel_limit_is_the_models_limit() -> None:
    prep = Preprocessor(256, 224, "opencv-linear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), max_pixels=300 * 300)
    assert prep.pixels(images.sized(300, 300)).shape == (224, 224, 3)
    with pytest.raises(ImageDecodeError, match="frame has 301x300"):
        prep.pixels(images.sized(301, 300))
