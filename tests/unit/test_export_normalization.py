"""The normalization in the exported graph computes what PaddleClas's NormalizeImage and ToCHWImage compute.

Ours: export/normalization.py's nodes (Cast, Mul 1/255, Sub mean, Div std, Transpose), mean and std
from the catalog, run by ONNX Runtime on the uint8 crops the served preprocess step makes from real
photographs. Theirs: PaddleClas's own operators (paddleclas 2.6.0, deploy/python/preprocess.py) built
by create_operators from each family's transcribed Infer.transforms (tests/unit/test_preprocess_exactness.py),
applied to the same crops. Every ONNX Runtime graph optimization level is checked, the servers' own
(the default, ORT_ENABLE_ALL: the portable network's SessionOptions and Triton's onnxruntime backend)
among them. No server and no paddle2onnx: fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import catalog
from catalog.resolve import paddleclas_input, preprocessor
from export import convert, normalization
from model_repository import configs
from tests.support import images
from tests.support.paddleclas import FAMILIES, paddleclas_config

LIMIT = 1e-6  # per element, as tests/unit/test_preprocess_exactness.py allows for the served tensors
LEVELS = {
    "default": None,  # SessionOptions() untouched: ORT_ENABLE_ALL, what both served variants run
    "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(model: onnx.ModelProto, level: ort.GraphOptimizationLevel | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@cache
def photo_crops(name: str) -> np.ndarray:
    """Every test photograph cut as the served step cuts it for `name`: uint8 N x S x S x 3."""
    prep = preprocessor(name)
    return np.stack([prep.pixels(prep.decode(path.read_bytes())) for path in images.photo_paths()])


@pytest.fixture(scope="module")
def paddleclas_normalize() -> Callable[[str], Callable[[np.ndarray], np.ndarray]]:
    """PaddleClas's NormalizeImage then ToCHWImage for a model, as its create_operators builds them."""
    from paddleclas.deploy.python.preprocess import create_operators

    def build(name: str) -> Callable[[np.ndarray], np.ndarray]:
        wanted = [op for op in paddleclas_config(name) if next(iter(op)) in ("NormalizeImage", "ToCHWImage")]
        assert [next(iter(op)) for op in wanted] == ["NormalizeImage", "ToCHWImage"]
        normalize, to_chw = create_operators(wanted)
        return lambda crop: to_chw(normalize(crop))

    return build


def max_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32
    return float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())


# --- the standalone graph against PaddleClas ---------------------------------------------------


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("name", FAMILIES)
def test_graph_normalization_equals_paddleclas_on_photos(name: str, level: str, paddleclas_normalize) -> None:
    entry = catalog.get(name)
    crops = photo_crops(name)
    assert crops.dtype == np.uint8 and crops.shape == (len(images.photo_paths()), entry.input_size, entry.input_size, 3)
    (ours,) = session(normalization.standalone(entry), LEVELS[level]).run(None, {configs.NETWORK_INPUT: crops})
    theirs = np.stack([paddleclas_normalize(name)(crop) for crop in crops])
    difference = max_difference(ours, theirs)
    assert difference <= LIMIT, f"{name}, ONNX Runtime {level}: max |graph - PaddleClas| = {difference:.3g}"


@pytest.mark.parametrize("level", ["default", "disable_all"])
@pytest.mark.parametrize("name", FAMILIES)
def test_every_pixel_value_normalizes_as_paddleclas(name: str, level: str, paddleclas_normalize) -> None:
    """All 256 values in every channel, not only those the photographs hold."""
    entry = catalog.get(name)
    size = entry.input_size
    ramp = np.arange(size * size * 3, dtype=np.int64).reshape(size, size, 3)
    crops = np.stack([(ramp + shift) % 256 for shift in (0, 85, 170)]).astype(np.uint8)
    (ours,) = session(normalization.standalone(entry), LEVELS[level]).run(None, {configs.NETWORK_INPUT: crops})
    theirs = np.stack([paddleclas_normalize(name)(crop) for crop in crops])
    difference = max_difference(ours, theirs)
    assert difference <= LIMIT, f"{name}, ONNX Runtime {level}: max |graph - PaddleClas| = {difference:.3g}"


def test_a_wrong_mean_is_caught(paddleclas_normalize) -> None:
    """The comparison can fail: ViT normalized with ImageNet statistics (the generic deploy config's mistake)."""
    entry = catalog.get("ViT_base_patch16_224")
    wrong = dataclasses.replace(
        entry,
        preprocessing=dataclasses.replace(
            entry.preprocessing, mean=catalog.models.IMAGENET_MEAN, std=catalog.models.IMAGENET_STD
        ),
    )
    crops = photo_crops(entry.name)[:1]
    (ours,) = session(normalization.standalone(wrong)).run(None, {configs.NETWORK_INPUT: crops})
    assert max_difference(ours, paddleclas_normalize(entry.name)(crops[0])[None]) > 0.1


@pytest.mark.parametrize("name", FAMILIES)
def test_constants_are_the_catalogs(name: str) -> None:
    entry = catalog.get(name)
    model = normalization.standalone(entry)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    prep = entry.preprocessing
    np.testing.assert_array_equal(constants[normalization.PREFIX + "mean"].ravel(), np.float32(prep.mean))
    np.testing.assert_array_equal(constants[normalization.PREFIX + "std"].ravel(), np.float32(prep.std))
    assert constants[normalization.PREFIX + "scale"] == np.float32(1.0 / 255.0)
    assert constants[normalization.PREFIX + "mean"].shape == (1, 1, 1, 3)
    assert [node.op_type for node in model.graph.node] == ["Cast", "Mul", "Sub", "Div", "Transpose"]


# --- the prefix in front of a network, as convert.py adds it ------------------------------------

EXPORTER_INPUT, EXPORTER_OUTPUT, BATCH = "x", "save_infer_model/scale_0.tmp_1", "p2o.DynamicDimension.0"


def exporter_like_network(size: int, seed: int = 0) -> onnx.ModelProto:
    """A small network in the form paddle2onnx + onnxsim leave it: float NCHW input, probabilities out.

    A 16-pixel patch convolution first (as ViT's patch embedding and NextViT's stem read the image),
    then average pooling, a 1000-way Gemm and a softmax; seeded weights.
    """
    rng = np.random.default_rng(seed)
    weights = {
        "conv.w": rng.normal(0, 0.05, (32, 3, 16, 16)).astype(np.float32),
        "conv.b": rng.normal(0, 0.1, 32).astype(np.float32),
        "fc.w": rng.normal(0, 0.5, (32, 1000)).astype(np.float32),
        "fc.b": rng.normal(0, 0.1, 1000).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", [EXPORTER_INPUT, "conv.w", "conv.b"], ["patches"], strides=[16, 16]),
        helper.make_node("GlobalAveragePool", ["patches"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [EXPORTER_OUTPUT], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "exporter_like",
        [helper.make_tensor_value_info(EXPORTER_INPUT, TensorProto.FLOAT, [BATCH, 3, size, size])],
        [helper.make_tensor_value_info(EXPORTER_OUTPUT, TensorProto.FLOAT, [BATCH, 1000])],
        [numpy_helper.from_array(value, key) for key, value in weights.items()],
    )
    opsets = [helper.make_opsetid("", convert.OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", FAMILIES)
def test_converted_graph_takes_uint8_crops(name: str) -> None:
    entry = catalog.get(name)
    size = entry.input_size
    model = exporter_like_network(size)
    assert convert.finish(model, entry) == (EXPORTER_INPUT, EXPORTER_OUTPUT)
    (crops,) = model.graph.input
    assert crops.name == configs.NETWORK_INPUT
    assert crops.type.tensor_type.elem_type == TensorProto.UINT8
    assert dims(crops) == [BATCH, size, size, 3]  # the network's own dynamic batch dimension
    assert [o.name for o in model.graph.output] == [configs.NETWORK_OUTPUT]
    assert [node.op_type for node in model.graph.node[:6]] == ["Cast", "Mul", "Sub", "Div", "Transpose", "Conv"]
    assert model.graph.node[5].input[0] == configs.NORMALIZED_IMAGE
    inner = {value.name: value for value in model.graph.value_info}
    assert dims(inner[configs.NORMALIZED_IMAGE]) == [BATCH, 3, size, size]
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_base_patch16_384"])
def test_optimized_network_on_crops_equals_network_on_paddleclas_input(name: str, level: str) -> None:
    """ONNX Runtime may fuse or move the prefix into the network (layout passes): the numbers must not move.

    The network with the prefix, on uint8 crops, against the same network without it (as PaddleClas
    exported it) on PaddleClas's normalized input, both at the same optimization level, so that any
    difference is the prefix's doing (the level itself changes the convolution's kernels).
    """
    entry = catalog.get(name)
    crops = photo_crops(name)
    reference = exporter_like_network(entry.input_size)
    (expected,) = session(reference, LEVELS[level]).run(None, {EXPORTER_INPUT: paddleclas_input(entry, crops)})
    served = exporter_like_network(entry.input_size)
    convert.finish(served, entry)
    (probabilities,) = session(served, LEVELS[level]).run(None, {configs.NETWORK_INPUT: crops})
    difference = max_difference(probabilities, expected)
    assert difference <= LIMIT, f"{name}, ONNX Runtime {level}: max |dp| = {difference:.3g}"
    assert len(set(np.argmax(expected, axis=1))) > 1  # the photos give different answers: not a constant network


def test_check_shapes_refuses_a_float_input() -> None:
    """A network converted without the prefix is refused: the server sends uint8 crops."""
    entry = catalog.get("NextViT_small_224")
    model = exporter_like_network(entry.input_size)
    convert.rename_io(model)
    model.graph.input[0].name = configs.NETWORK_INPUT
    with pytest.raises(convert.ExportCheckError, match="expected UINT8"):
        convert.check_shapes(model, entry)


def test_prepend_needs_the_renamed_network() -> None:
    entry = catalog.get("NextViT_small_224")
    with pytest.raises(ValueError, match=configs.NORMALIZED_IMAGE):
        normalization.prepend(exporter_like_network(entry.input_size), entry)  # input still named "x"


def test_finish_refuses_a_network_of_another_size() -> None:
    with pytest.raises(convert.ExportCheckError, match=r"expected FLOAT \[batch, 3, 384, 384\]"):
        convert.finish(exporter_like_network(224), catalog.get("NextViT_small_384"))
