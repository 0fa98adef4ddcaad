"""Parameter and FLOP counting: a hand-counted ONNX graph, and PaddleClas's published figures reproduced.

The published-figure checks run on the two smallest networks here; every exported model's record is
checked the same way in test_export_models.py (all 19 under `make test-all`).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import catalog
from export import measure, network


def _weight(name: str, *shape: int) -> TensorProto:
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def hand_counted_graph() -> onnx.ModelProto:
    """Conv 3->8 (3x3, pad 1) on 16x16, grouped Conv 8->8 (groups 4), then MatMul and Gemm on a flat vector."""
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], group=4, strides=[2, 2]),
        helper.make_node("Reshape", ["c2", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w3"], ["m"]),
        helper.make_node("Gemm", ["m", "w4"], ["logits"], transB=1),
        helper.make_node("Relu", ["logits"], ["out"]),
    ]
    flat_shape = numpy_helper.from_array(np.array([-1, 8 * 7 * 7], np.int64), "flat_shape")
    graph = helper.make_graph(
        nodes,
        "hand_counted",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 10])],
        [
            _weight("w1", 8, 3, 3, 3),
            _weight("w2", 8, 2, 3, 3),
            flat_shape,
            _weight("w3", 392, 20),
            _weight("w4", 10, 20),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_macs_match_a_hand_count() -> None:
    conv1 = 8 * 16 * 16 * (3 * 3 * 3)  # outputs x (in/groups x kh x kw)
    conv2 = 8 * 7 * 7 * (2 * 3 * 3)  # stride 2, no padding: 16 -> 7
    matmul = 20 * 392
    gemm = 10 * 20
    assert measure.onnx_macs(hand_counted_graph()) == conv1 + conv2 + matmul + gemm


def test_onnx_macs_refuse_a_graph_without_static_shapes() -> None:
    model = hand_counted_graph()
    del model.graph.node[2]  # the Reshape: MatMul's input no longer exists
    with pytest.raises(onnx.shape_inference.InferenceError):
        measure.onnx_macs(model)


@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_small_patch16_224"])
def test_paddleclas_counts_reproduce_the_published_figures(name: str) -> None:
    entry = catalog.get(name)
    backbone = network.build_backbone(entry)
    counts = measure.count_parameters(backbone)
    assert round(counts["params_paddleclas"] / 1e6, 2) == entry.published.params_m
    assert round(measure.paddleclas_flops(backbone, entry.input_size) / 1e9, 2) == entry.published.flops_g
    if entry.family == "ViT":  # the gap is exactly the position embedding and the class token
        assert counts["params_outside_leaf_layers"] == ["cls_token", "pos_embed"]
        tokens = (entry.input_size // 16) ** 2 + 1
        assert counts["params_all"] - counts["params_paddleclas"] == (tokens + 1) * 768
    else:
        assert counts["params_all"] == counts["params_paddleclas"]
