"""The liveness walk of export/memory.py on graphs small enough to count by hand, and the arena cap it feeds.

The real networks are estimated and checked against ONNX Runtime in tests/export/test_memory.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import catalog
from export import memory
from model_repository import configs

ROWS = 16  # floats per image of every tensor below: 64 bytes per image


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto] = ()) -> Path:
    """A float graph X -> ... -> Y with a dynamic batch, saved as a file (estimate reads files)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", ROWS])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", ROWS])],
        list(initializers),
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_tensor_lives_from_its_producer_to_its_last_reader(tmp_path: Path) -> None:
    # X -> A -> B; C = A + B; Y = relu(C). X dies after A is made; A lives until C.
    path = _save(
        tmp_path,
        [
            helper.make_node("Relu", ["X"], ["A"], name="a"),
            helper.make_node("Relu", ["A"], ["B"], name="b"),
            helper.make_node("Add", ["A", "B"], ["C"], name="c"),
            helper.make_node("Relu", ["C"], ["Y"], name="y"),
        ],
    )
    per_image = ROWS * 4
    for batch in (1, 8, 128):
        figure = memory.estimate(path, batch)
        # At "c": A, B and C are alive at once; everywhere else at most two tensors.
        assert figure.activations_bytes == 3 * per_image * batch
        assert figure.peak_node == "c"
        assert figure.weights_bytes == 0


def test_weights_are_every_initializer_and_never_activations(tmp_path: Path) -> None:
    import numpy as np

    small = numpy_helper.from_array(np.ones((ROWS, ROWS), np.float32), "W")  # 1 KiB: kept for shape inference
    large = numpy_helper.from_array(np.ones((64, 64), np.float32), "V")  # 16 KiB: an input of the same shape there
    path = _save(
        tmp_path,
        [
            helper.make_node("MatMul", ["X", "W"], ["A"], name="a"),
            helper.make_node("Shape", ["V"], ["S"], name="s"),
            helper.make_node("Relu", ["A"], ["Y"], name="y"),
        ],
        [small, large],
    )
    figure = memory.estimate(path, 4)
    assert figure.weights_bytes == (ROWS * ROWS + 64 * 64) * 4
    # X and A at "a" (later A with the 16-byte shape S, then A with Y): weights are not activations.
    assert figure.activations_bytes == 2 * ROWS * 4 * 4
    assert figure.peak_node == "a"


def test_shape_arithmetic_through_max_is_folded_like_vits_class_token(tmp_path: Path) -> None:
    """Expand's shape from Shape(X), a Constant node and Max, as ViT's class token: the size becomes known."""
    import numpy as np

    token = numpy_helper.from_array(np.ones((1, ROWS), np.float32), "T")
    ints = {name: numpy_helper.from_array(np.array(value, np.int64), name) for name, value in
            {"start": [0], "stop": [1], "floor": [1, ROWS]}.items()}  # fmt: skip
    path = _save(
        tmp_path,
        [
            helper.make_node("Shape", ["X"], ["S"], name="s"),
            helper.make_node("Slice", ["S", "start", "stop"], ["B"], name="b"),
            helper.make_node("Constant", [], ["W"], name="w", value=numpy_helper.from_array(np.array([-1], np.int64))),
            helper.make_node("Concat", ["B", "W"], ["C"], name="c", axis=0),
            helper.make_node("Max", ["C", "floor"], ["M"], name="m"),
            helper.make_node("Expand", ["T", "M"], ["E"], name="e"),
            helper.make_node("Add", ["X", "E"], ["Y"], name="y"),
        ],
        [token, *ints.values()],
    )
    # At batch 128, E (2,048 floats) is too large to fold: an activation, as ViT's expanded token.
    figure = memory.estimate(path, 128)
    assert figure.activations_bytes == 3 * ROWS * 4 * 128  # X, E and Y at "y"; the shape integers are constants
    assert figure.largest_tensor_bytes == ROWS * 4 * 128


def test_an_open_dimension_is_refused(tmp_path: Path) -> None:
    # NonZero's output length depends on the data: no fixed batch makes it known.
    path = _save(
        tmp_path,
        [
            helper.make_node("NonZero", ["X"], ["I"], name="i"),
            helper.make_node("Relu", ["X"], ["Y"], name="y"),
        ],
    )
    with pytest.raises(memory.MemoryEstimateError, match="left the size of 'I' open"):
        memory.estimate(path, 8)


def test_the_arena_cap_is_the_estimate_with_its_margin() -> None:
    mib = 1 << 20
    limit = configs.ort_gpu_mem_limit(100 * mib, 1000 * mib)
    assert limit % configs.ORT_ARENA_ROUND_BYTES == 0
    exact = 100 * mib + configs.ORT_ARENA_ACTIVATION_HEADROOM * 1000 * mib + configs.ORT_ARENA_WORKSPACE_BYTES
    assert exact <= limit < exact + configs.ORT_ARENA_ROUND_BYTES


def test_the_production_config_carries_the_cap_and_the_portable_one_refuses_it() -> None:
    entry = catalog.get("NextViT_small_224")
    limit = 2048 << 20
    config = configs.parse_pbtxt(configs.to_pbtxt(configs.network_config(entry, "production", gpu_mem_limit=limit)))
    assert config.parameters["gpu_mem_limit"].string_value == str(limit)  # bytes, as onnxruntime_backend reads it
    with pytest.raises(ValueError, match="for production networks"):
        configs.network_config(entry, "portable", gpu_mem_limit=limit)
    tensorrt = configs.tensorrt_network_config(entry, configs.PlanFiles("model.plan", "fp16"))
    assert "gpu_mem_limit" not in tensorrt.get("parameters", {}), "TensorRT plans are not ONNX Runtime sessions"


def test_the_chart_file_covers_the_catalog_at_the_served_batch() -> None:
    figures = json.loads(memory.NETWORK_FIGURES.read_text("utf-8"))
    assert figures["batch"] == configs.GPU_MAX_BATCH_SIZE
    assert set(figures["models"]) == {entry.triton_name for entry in catalog.CATALOG.values()}
    for triton_name, line in figures["models"].items():
        assert catalog.get(line["name"]).triton_name == triton_name
        recomputed = configs.ort_gpu_mem_limit(line["weightsMiB"] << 20, line["activationsMiB"] << 20) >> 20
        # The file rounds weights and activations up to whole MiB, the cap from exact bytes: at most one step apart.
        step = configs.ORT_ARENA_ROUND_BYTES >> 20
        assert line["gpuMemLimitMiB"] <= recomputed <= line["gpuMemLimitMiB"] + step
