"""Fast decode (opt-in): large JPEGs decoded at a reduced DCT scale, everything else exactly as before.

What must hold: the exact path stays the default; with fast decode on, every format but JPEG and
every JPEG too small for a 1/2 scale gives bit-identical crops; a large JPEG keeps its EXIF
orientation, colour conversion, limits, errors and the exact path's geometry, and differs only by
the filtering; the launcher flag reaches the served step. Test images are real photographs, cut or
upscaled (tests/support/images.py), encoded here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image

import catalog
from catalog.resolve import preprocessor as preprocessor_for
from model_repository import configs, install, layout, serve
from preprocess import (
    DEFAULT_MAX_PIXELS,
    FAST_DECODE_MARGIN,
    FAST_DECODE_MARGIN_PARAMETER,
    ImageDecodeError,
    Preprocessor,
    decode,
    decode_reduced,
    resize_short_side,
    resized_shape,
)
from preprocess.decoding import dct_scale
from tests.support import images
from tests.support.answers import encoded, top_k
from tests.support.deployment import SERVED_MODELS

FAMILIES = [catalog.get(name) for name in SERVED_MODELS]  # Pillow bicubic and OpenCV bilinear, both 256 -> 224
CAMERA = images.sized(2400, 1800, "coffee.png")  # upscaled real photo: fast decode reads it at 1/2 scale


def exact_and_fast(entry: catalog.ModelEntry) -> tuple[Preprocessor, Preprocessor]:
    exact = preprocessor_for(entry)  # the served step's own parameters
    return exact, dataclasses.replace(exact, decode_mode="fast")


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# --- which scale ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "resize_short", "scale"),
    [
        ((4000, 3000), 256, 4),  # 750 >= 512; 1/8 would leave 375
        ((4000, 3000), 384, 2),  # 1500 >= 768; 1/4 would leave 750
        ((3000, 4000), 256, 4),  # portrait: the short side decides
        ((1920, 1080), 256, 2),
        ((8192, 4096), 256, 8),  # 512 = 2 x 256 exactly
        ((2000, 1023), 256, 2),  # ceil(1023 / 2) = 512: libjpeg rounds the scaled size up
        ((2000, 1022), 256, 1),  # 511: too small, exact
        ((640, 427), 256, 1),
    ],
)
def test_scale_keeps_twice_the_resize_target(size: tuple[int, int], resize_short: int, scale: int) -> None:
    assert dct_scale(*size, resize_short) == scale


@pytest.mark.parametrize(
    ("size", "resize_short", "margin", "scale"),
    [
        ((4000, 3000), 256, 1.25, 8),  # 375 >= 320
        ((4000, 3000), 384, 1.25, 4),  # 1/8 would leave 375 < 480
        ((2048, 2048), 256, 1.0, 8),  # 256: the decode as large as the target, never smaller
        ((2040, 2040), 256, 1.0, 4),  # 255 at 1/8 would have to be enlarged
        ((1920, 1080), 256, 4.0, 1),  # a larger margin decodes more images exactly
    ],
)
def test_scale_follows_the_deployment_margin(
    size: tuple[int, int], resize_short: int, margin: float, scale: int
) -> None:
    assert dct_scale(*size, resize_short, margin) == scale


# --- bit-identical where it must be ---------------------------------------------------------------


NON_JPEG = {
    "PNG": lambda rgb: images.png(rgb),
    "BMP": lambda rgb: images.encode(rgb, "BMP"),
    "WebP": lambda rgb: images.encode(rgb, "WEBP", lossless=True, method=0),
    "TIFF": lambda rgb: images.encode(rgb, "TIFF"),
    "GIF": lambda rgb: images.encode(Image.fromarray(rgb).quantize(128), "GIF"),
}


@pytest.mark.parametrize("fmt", list(NON_JPEG))
def test_other_formats_are_decoded_exactly_at_any_size(fmt: str) -> None:
    data = NON_JPEG[fmt](CAMERA)  # large enough that a JPEG of it would be reduced
    for entry in FAMILIES:
        exact, fast = exact_and_fast(entry)
        np.testing.assert_array_equal(fast.crop_encoded(data), exact.crop_encoded(data))


def test_small_jpegs_are_decoded_exactly(sample_photos: list[Path]) -> None:
    small = [images.jpeg(images.photo(path.name)) for path in sample_photos]
    small.append(images.jpeg(images.sized(1600, 1022, "coffee.png")))  # the largest short side decoded exactly
    for entry in FAMILIES:
        exact, fast = exact_and_fast(entry)
        for data in small:
            np.testing.assert_array_equal(fast.crop_encoded(data), exact.crop_encoded(data))


def test_exact_stays_the_default() -> None:
    entry = FAMILIES[0]
    assert preprocessor_for(entry).decode_mode == "exact"
    assert Preprocessor(256, 224, "opencv-linear").decode_mode == "exact"
    params = {k: v["string_value"] for k, v in configs.preprocess_config(entry)["parameters"].items()}
    assert "decode" not in params  # installed configs never name it: only a serving copy switches it on
    assert Preprocessor.from_parameters(params | {"decode": "fast"}).decode_mode == "fast"
    with pytest.raises(ValueError, match="unknown decode mode 'draft'"):
        Preprocessor.from_parameters(params | {"decode": "draft"})


def test_margin_comes_from_the_step_parameters_and_never_below_one() -> None:
    params = {k: v["string_value"] for k, v in configs.preprocess_config(FAMILIES[0])["parameters"].items()}
    assert Preprocessor.from_parameters(params).fast_decode_margin == FAST_DECODE_MARGIN
    fast = params | {"decode": "fast", FAST_DECODE_MARGIN_PARAMETER: "1.25"}
    assert Preprocessor.from_parameters(fast).fast_decode_margin == 1.25
    for bad in ("0.99", "nan", "-2"):
        with pytest.raises(ValueError, match="the decode would be smaller than the resize target"):
            Preprocessor.from_parameters(fast | {FAST_DECODE_MARGIN_PARAMETER: bad})


# --- a large JPEG: reduced, and otherwise the exact path's meaning ---------------------------------


# The bound on the mean difference catches a misplaced crop or a wrong scale; what the filtering costs
# is measured and published by make bench-preprocess (docs/preprocessing.md).
@pytest.mark.parametrize(
    ("margin", "decoded", "bound"), [(FAST_DECODE_MARGIN, (750, 1000, 3), 2.0), (1.25, (375, 500, 3), 5.0)]
)
def test_large_jpeg_is_reduced_and_resized_to_the_exact_size(
    margin: float, decoded: tuple[int, int, int], bound: float
) -> None:
    data = images.jpeg(images.sized(4000, 3000, "coffee.png"))
    rgb, full_size = decode_reduced(data, 256, margin=margin)
    assert rgb.shape == decoded and full_size == (4000, 3000)
    for entry in FAMILIES:
        prep = entry.preprocessing
        resized = resize_short_side(rgb, prep.resize_short, prep.resize, DEFAULT_MAX_PIXELS, full_size)
        assert resized.shape[1::-1] == resized_shape(4000, 3000, prep.resize_short)
        exact, fast = exact_and_fast(entry)
        fast = dataclasses.replace(fast, fast_decode_margin=margin)
        diff = difference(fast.crop_encoded(data), exact.crop_encoded(data))
        assert diff.any(), "fast decode was not used"  # it is a different computation, so some pixels differ
        assert diff.mean() < bound, f"{entry.name}: {diff.mean():.2f} levels on average from the exact crop"


def test_odd_sizes_keep_the_exact_geometry() -> None:
    """libjpeg rounds a scaled side up; the resize target still comes from the original size."""
    data = images.jpeg(images.sized(2001, 1501, "coffee.png"))
    rgb, full_size = decode_reduced(data, 256)
    assert rgb.shape == (751, 1001, 3) and full_size == (2001, 1501)


UPRIGHT = images.UPRIGHT  # EXIF orientation -> what a viewer does to show the stored pixels upright


def _with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return images.encode(rgb, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", list(UPRIGHT))
def test_exif_orientation_is_applied_at_reduced_scale(orientation: int) -> None:
    stored = _with_orientation(images.sized(2001, 1501, "coffee.png"), 1)
    data = _with_orientation(images.sized(2001, 1501, "coffee.png"), orientation)
    reduced, full_size = decode_reduced(data, 256)
    reference, _ = decode_reduced(stored, 256)
    np.testing.assert_array_equal(reduced, UPRIGHT[orientation](reference))
    exact = decode(data)
    assert full_size == (exact.shape[1], exact.shape[0])  # turned with the image, as the exact decode turns it


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_cmyk_and_grey_jpegs_convert_as_in_the_exact_path(mode: str) -> None:
    data = images.encode(Image.fromarray(CAMERA).convert(mode), "JPEG", quality=95)
    for entry in FAMILIES:
        exact, fast = exact_and_fast(entry)
        crop = fast.crop_encoded(data)
        assert crop.shape == (224, 224, 3)
        assert difference(crop, exact.crop_encoded(data)).mean() < 2.0
        if mode == "L":
            assert (crop[:, :, 0] == crop[:, :, 1]).all() and (crop[:, :, 1] == crop[:, :, 2]).all()


def test_progressive_jpeg_is_reduced_too() -> None:
    data = images.encode(CAMERA, "JPEG", quality=90, progressive=True)
    rgb, full_size = decode_reduced(data, 256)
    assert rgb.shape == (900, 1200, 3) and full_size == (2400, 1800)


@pytest.mark.parametrize(
    ("options", "cut", "message"),
    [
        ({"max_pixels": 2400 * 1800 - 1}, False, "JPEG header declares 2400x1800 = 4,320,000 pixels, over the limit"),
        ({"max_image_bytes": 1000}, False, "bytes, over the limit of 1,000 bytes"),
        ({}, True, "truncated JPEG"),
    ],
    ids=["max_pixels", "max_image_bytes", "truncated"],
)
def test_limits_and_errors_mean_the_same_in_fast_mode(options: dict, cut: bool, message: str) -> None:
    data = images.jpeg(CAMERA)
    data = data[: len(data) // 2] if cut else data
    prep = Preprocessor(256, 224, "pillow-bicubic", **options)
    for mode in ("exact", "fast"):
        with pytest.raises(ImageDecodeError, match=message):
            dataclasses.replace(prep, decode_mode=mode).crop_encoded(data)


# --- the launcher's flag reaches the served step --------------------------------------------------


@pytest.fixture(scope="module")
def placeholder_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = tmp_path_factory.mktemp("network") / "model.onnx"
    network.write_bytes(b"placeholder")  # never run: only configs are rendered here
    repository = tmp_path_factory.mktemp("installed") / "repository"
    for entry in FAMILIES:
        install.install(entry, network, {"weights_note": "placeholder"}, repository, "portable")
    return repository


def _decode_parameters(target: Path) -> dict[str, str | None]:
    found = {}
    for path in sorted(target.glob("*/config.pbtxt")):
        config = configs.parse_pbtxt(path.read_text())
        found[config.name] = config.parameters["decode"].string_value if "decode" in config.parameters else None
    return found


def test_serving_copy_switches_only_the_decoding_steps(placeholder_repository: Path, tmp_path: Path) -> None:
    exact_target, fast_target = tmp_path / "exact", tmp_path / "fast"
    layout.render(placeholder_repository, exact_target, None, configs.Layout.for_cores(2), 2)
    assert layout.main(["--repository", str(placeholder_repository), "--out", str(fast_target), "--fast-decode"]) == 0
    assert set(_decode_parameters(exact_target).values()) == {None}
    steps = {
        name(entry) for entry in FAMILIES for name in (configs.preprocess_name, configs.interactive_preprocess_name)
    }
    assert {name for name, mode in _decode_parameters(fast_target).items() if mode == "fast"} == steps
    assert {mode for name, mode in _decode_parameters(fast_target).items() if name not in steps} == {None}
    for name in steps:
        config = configs.parse_pbtxt((fast_target / name / "config.pbtxt").read_text())
        assert float(config.parameters[FAST_DECODE_MARGIN_PARAMETER].string_value) == FAST_DECODE_MARGIN


def test_serving_copy_takes_the_chosen_margin(placeholder_repository: Path, tmp_path: Path) -> None:
    args = ["--repository", str(placeholder_repository), "--out", str(tmp_path / "fast")]
    assert layout.main([*args, "--fast-decode", "--fast-decode-margin", "1.25"]) == 0
    for entry in FAMILIES:
        config = configs.parse_pbtxt((tmp_path / "fast" / configs.preprocess_name(entry) / "config.pbtxt").read_text())
        assert (
            Preprocessor.from_parameters(
                {key: value.string_value for key, value in config.parameters.items()}
            ).fast_decode_margin
            == 1.25
        )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fast-decode-margin", "1.25"], "--fast-decode-margin needs --fast-decode"),
        (["--fast-decode", "--fast-decode-margin", "0.5"], "the decode would be smaller than the resize target"),
    ],
)
def test_a_margin_that_cannot_be_served_renders_nothing(
    placeholder_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    target = tmp_path / "fast"
    assert layout.main(["--repository", str(placeholder_repository), "--out", str(target), *flags]) == 1
    assert message in capsys.readouterr().err
    assert not target.exists()  # refused before anything was written


def test_the_launcher_refuses_a_margin_without_fast_decode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        serve.main(["--fast-decode-margin", "1.25"])
    assert stopped.value.code == 2
    assert "--fast-decode-margin needs --fast-decode" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fast_grpc(fast_decode_server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(fast_decode_server.grpc_url) as c:
        yield c


@pytest.mark.server
def test_fast_server_runs_fast_decode_steps(fast_decode_server, fast_grpc, exact_grpc) -> None:
    assert fast_decode_server.serving["decode"] == "fast"
    for entry in FAMILIES:
        fast = fast_grpc.get_model_config(configs.preprocess_name(entry)).config.parameters
        exact = exact_grpc.get_model_config(configs.preprocess_name(entry)).config.parameters
        assert fast["decode"].string_value == "fast" and "decode" not in exact


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_fast_server_answers_small_photos_as_the_exact_one(fast_grpc, exact_grpc, sample_photos, name: str) -> None:
    model = catalog.get(name).triton_name
    files = encoded([path.read_bytes() for path in sample_photos])
    assert top_k(fast_grpc, model, "IMAGE", files) == top_k(exact_grpc, model, "IMAGE", files)


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_fast_server_crops_large_jpegs_with_this_code(fast_grpc, name: str) -> None:
    """The served step's answer for a camera JPEG is the network's answer for this package's fast crop."""
    entry = catalog.get(name)
    data = images.jpeg(images.sized(4000, 3000, "astronaut.png"))
    _, fast = exact_and_fast(entry)
    by_server = top_k(fast_grpc, entry.triton_name, "IMAGE", encoded([data]))
    by_crop = top_k(fast_grpc, configs.crop_ensemble_name(entry), "CROPS", fast.crop_encoded(data)[None])
    assert by_server == by_crop


def test_fast_decode_reads_jpeg_header_sizes_only_from_the_header() -> None:
    """A JPEG that lies about its size is refused before any decoder in fast mode too (the guard's order)."""
    data = images.jpeg_declaring(images.photo("rocket.jpg"), 65_500, 65_500)
    with pytest.raises(ImageDecodeError, match="JPEG header declares 65500x65500"):
        decode_reduced(data, 256)
