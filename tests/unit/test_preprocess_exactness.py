"""The served preprocessing equals PaddleClas's own operators, model by model, on real photographs.

Two independent sources meet here. Ours: the Preprocessor the server builds from the preprocess
model's config, which is generated from the catalog, and cuts the uint8 crop; then the normalization
the export puts at the head of the network's graph (export/normalization.py, mean and std from the
catalog), run by ONNX Runtime as the server runs it. Theirs: PaddleClas's operators from the
installed paddleclas 2.6.0 wheel (deploy/python/preprocess.py, its Python inference path; the wheel
does not ship ppcls/data, whose eval operators compute the same), built by PaddleClas's own
create_operators from each model's Infer.transforms, transcribed below because the wheel ships no
ImageNet configs. A wrong catalog entry, a wrong filter or a C-style rounding makes them disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache

import numpy as np
import onnxruntime as ort
import pytest

import catalog
import preprocess.image
from catalog import ModelEntry
from export import normalization
from model_repository import configs
from preprocess import Preprocessor, preprocess_requests, resize_short_side, resized_shape
from tests.support import images
from tests.support.paddleclas import FAMILIES, PADDLECLAS_CONFIGS, PADDLECLAS_RESIZE, paddleclas_config

Ops = list[Callable]


@pytest.fixture(scope="module")
def paddleclas_ops() -> Callable[[str], Ops]:
    from paddleclas.deploy.python.preprocess import create_operators

    return lambda name: create_operators(paddleclas_config(name))


def served(model: str | ModelEntry) -> Preprocessor:
    """The Preprocessor the server builds: from the generated config.pbtxt parameters (it only crops)."""
    entry = catalog.get(model) if isinstance(model, str) else model
    config = configs.parse_pbtxt(configs.to_pbtxt(configs.preprocess_config(entry)))
    return Preprocessor.from_parameters({k: v.string_value for k, v in config.parameters.items()})


@cache
def _normalization_session(entry: ModelEntry) -> ort.InferenceSession:
    options = ort.SessionOptions()  # default optimization level, as both served network variants run it
    options.intra_op_num_threads = 1
    model = normalization.standalone(entry).SerializeToString()
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def graph_normalize(entry: ModelEntry, crops: np.ndarray) -> np.ndarray:
    """uint8 N x C x C x 3 crops -> float32 N x 3 x C x C, by the nodes the export prepends to `entry`'s network."""
    (tensors,) = _normalization_session(entry).run(None, {configs.NETWORK_INPUT: crops})
    return tensors


def run(ops: Ops, value: object) -> object:
    for op in ops:
        value = op(value)
    return value


def assert_same(ours: Preprocessor, theirs: Ops, data: bytes, entry: ModelEntry) -> float:
    """Decode, resize and crop identical to the last uint8; tensors within 1e-6. Returns the max difference.

    `ours` cuts the crop; `entry`'s graph normalization makes the tensor, as the served network does.
    """
    decode, resize, crop, *_ = theirs
    rgb = ours.decode(data)
    their_rgb = decode(data)
    np.testing.assert_array_equal(rgb, their_rgb)
    their_resized = resize(their_rgb)
    resized = resize_short_side(rgb, ours.resize_short, ours.resize, ours.max_pixels)
    assert resized.shape == their_resized.shape
    np.testing.assert_array_equal(resized, their_resized)
    pixels = ours.pixels(rgb)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, crop(their_resized))
    (tensor,), their_tensor = graph_normalize(entry, pixels[None]), run(theirs, data)
    assert tensor.shape == their_tensor.shape == (3, ours.crop, ours.crop)
    assert tensor.dtype == their_tensor.dtype == np.float32
    difference = float(np.abs(tensor - their_tensor).max())
    assert difference <= 1e-6
    return difference


# --- parameters -------------------------------------------------------------------------------


def test_every_catalog_model_has_a_paddleclas_config() -> None:
    bases = {name.removesuffix("_ssld") for name in catalog.CATALOG}
    assert bases == set(PADDLECLAS_CONFIGS)


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_catalog_parameters_equal_paddleclas_config(name: str) -> None:
    ops = {next(iter(op)): next(iter(op.values())) or {} for op in paddleclas_config(name)}
    resize, normalize = ops["ResizeImage"], ops["NormalizeImage"]
    # ResizeImage's defaults are backend cv2 and interpolation None, which it maps to INTER_LINEAR.
    backend = PADDLECLAS_RESIZE.get((resize.get("backend", "cv2"), resize.get("interpolation")))
    prep = catalog.get(name).preprocessing
    assert (prep.resize_short, prep.crop, prep.resize) == (resize["resize_short"], ops["CropImage"]["size"], backend)
    assert (list(prep.mean), list(prep.std)) == (normalize["mean"], normalize["std"])
    assert normalize["scale"] == "1.0/255.0"  # not the generic deploy config's 0.00392157


@pytest.mark.parametrize("name", list(catalog.CATALOG))
def test_each_model_preprocesses_two_photos_as_paddleclas(name: str, paddleclas_ops: Callable[[str], Ops]) -> None:
    ours, theirs = served(name), paddleclas_ops(name)
    for path in images.photo_paths()[:2]:  # chelsea (451x300, odd crop margin) and coffee
        assert_same(ours, theirs, path.read_bytes(), catalog.get(name))


def test_served_preprocess_step_carries_no_statistics() -> None:
    """Mean and std live in each network's graph, so one preprocess step serves every model with its key."""
    for name in catalog.CATALOG:
        params = configs.preprocess_config(catalog.get(name))["parameters"]
        assert not {"mean", "std"} & set(params), name
        with pytest.raises(ValueError, match="crops only"):
            served(name).normalize(np.zeros((1, 1, 3), np.uint8))


# --- the four families on many sizes ---------------------------------------------------------

# (width, height) of test images made from real photos; the comment says what each case probes.
SIZES = {
    "tie-256-wide": (1025, 512),  # 1025 * 0.5 = 512.5: Python's round gives 512, C's round 513
    "tie-256-tall": (512, 1025),
    "tie-384-wide": (518, 512),  # 518 * 0.75 = 388.5: 388 by Python, 389 by C
    "tie-384-tall": (512, 518),
    "377x512": (377, 512),  # the example: no tie (512 * 256 / 377 = 347.67), becomes 256x348
    "1x1": (1, 1),
    "2x3": (2, 3),
    "31x17": (31, 17),
    "223x223-under-crop": (223, 223),
    "255x300-under-256": (255, 300),
    "383x500-under-384": (383, 500),
    "extreme-1000x7": (1000, 7),
    "extreme-7x1000": (7, 1000),
    "extreme-2000x100": (2000, 100),
    "odd-margins-613x257": (613, 257),
    "large-1800x1200": (1800, 1200),
}


@cache
def _case_bytes(case: str) -> bytes:
    if case in SIZES:
        return images.png(images.sized(*SIZES[case]))
    return next(p for p in images.photo_paths() if p.name == case).read_bytes()


CASES = [p.name for p in images.photo_paths()] + list(SIZES)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", FAMILIES)
def test_family_matches_paddleclas(name: str, case: str, paddleclas_ops: Callable[[str], Ops]) -> None:
    assert assert_same(served(name), paddleclas_ops(name), _case_bytes(case), catalog.get(name)) <= 1e-6


TIES = [(1025, 512, 256, (512, 256)), (518, 512, 384, (388, 384))]  # (width, height, short side, result)


@pytest.mark.parametrize(("width", "height", "short", "expected"), TIES)
def test_ties_round_half_to_even_like_paddleclas(
    width: int, height: int, short: int, expected: tuple[int, int], paddleclas_ops: Callable[[str], Ops]
) -> None:
    name = "ViT_base_patch16_224" if short == 256 else "ViT_base_patch16_384"
    _, resize, *_ = paddleclas_ops(name)
    their = resize(np.zeros((height, width, 3), np.uint8)).shape[1::-1]
    assert resized_shape(width, height, short) == their == expected
    assert int(width * short / height + 0.5) == expected[0] + 1  # C's half-up would be one wider


# --- the comparison can fail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("NextViT_small_224", {"resize": "opencv-linear"}),  # FastDeploy's mistake: bilinear for NextViT
        ("ViT_base_patch16_224", {"mean": catalog.models.IMAGENET_MEAN, "std": catalog.models.IMAGENET_STD}),
        ("NextViT_small_224", {"resize_short": 248}),
        ("ViT_base_patch16_384", {"resize_short": 400, "crop": 384}),
    ],
    ids=["bilinear-nextvit", "imagenet-stats-vit", "nextvit-resize-248", "vit384-resize-400"],
)
def test_a_wrong_catalog_entry_is_caught(name: str, wrong: dict, paddleclas_ops: Callable[[str], Ops]) -> None:
    """The wrong value goes into the catalog entry; the served step and the graph are both built from it."""
    entry = catalog.get(name)
    wrong_entry = dataclasses.replace(entry, preprocessing=dataclasses.replace(entry.preprocessing, **wrong))
    with pytest.raises(AssertionError):
        assert_same(served(wrong_entry), paddleclas_ops(name), images.photo_paths()[0].read_bytes(), wrong_entry)


def test_c_rounding_is_caught(paddleclas_ops: Callable[[str], Ops], monkeypatch: pytest.MonkeyPatch) -> None:
    def round_half_up(width: int, height: int, short: int) -> tuple[int, int]:
        scale = short / min(width, height)
        return int(width * scale + 0.5), int(height * scale + 0.5)

    monkeypatch.setattr(preprocess.image, "resized_shape", round_half_up)
    tie = images.png(images.sized(1025, 512))
    name = "ViT_base_patch16_224"
    with pytest.raises(AssertionError):
        assert_same(served(name), paddleclas_ops(name), tie, catalog.get(name))


# --- batching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_requests_equal_single_images_bit_for_bit(name: str) -> None:
    """The served step's stacked crops, and the network's normalization of the stack, image by image."""
    entry, prep = catalog.get(name), served(name)
    photos = [p.read_bytes() for p in images.photo_paths()[:4]]
    requests = [photos[:2], [b"not an image"], photos[2:], [photos[0]]]
    outcomes = preprocess_requests(requests, lambda data: prep.pixels(prep.decode(data)))
    assert [o.shape if isinstance(o, np.ndarray) else "error" for o in outcomes] == [
        (2, prep.crop, prep.crop, 3),
        "error",
        (2, prep.crop, prep.crop, 3),
        (1, prep.crop, prep.crop, 3),
    ]
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, np.ndarray):
            assert outcome.flags.c_contiguous and outcome.dtype == np.uint8
            tensors = graph_normalize(entry, outcome)
            for data, crop, tensor in zip(request, outcome, tensors, strict=True):
                single = prep.pixels(prep.decode(data))
                np.testing.assert_array_equal(crop, single)
                np.testing.assert_array_equal(tensor, graph_normalize(entry, single[None])[0])
