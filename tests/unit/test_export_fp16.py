"""The FP16 network's precision layout, on a small network built with the served normalization prefix.

The graph has what the exported networks have (the uint8 CROPS input and its normalization prefix,
a patch Conv, LayerNormalization, MatMul, Softmax giving PROBABILITIES) and is converted by the
export's own code (export/fp16.py); ONNX Runtime runs both versions.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from catalog import CATALOG
from export import fp16, normalization
from model_repository.configs import NETWORK_INPUT, NORMALIZED_IMAGE

SIZE, PATCH, WIDTH, CLASSES = 32, 16, 8, 1000
TOKENS = (SIZE // PATCH) ** 2
ENTRY = CATALOG["ViT_base_patch16_224"]


def small_network() -> onnx.ModelProto:
    """CROPS -> normalization prefix -> patch Conv -> LayerNormalization -> MatMul -> mean -> MatMul -> Softmax."""
    rng = np.random.default_rng(0)
    weights = {
        "patch_w": rng.normal(0, 0.05, (WIDTH, 3, PATCH, PATCH)),
        "ln_scale": rng.normal(1, 0.1, WIDTH),
        "ln_bias": rng.normal(0, 0.1, WIDTH),
        "mlp_w": rng.normal(0, 0.3, (WIDTH, WIDTH)),
        "head_w": rng.normal(0, 1.0, (WIDTH, CLASSES)),
    }
    constants = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    constants.append(numpy_helper.from_array(np.array([0, WIDTH, TOKENS], np.int64), "tokens_shape"))
    prefix, prefix_constants = normalization.nodes(ENTRY)
    nodes = [
        *prefix,
        helper.make_node("Conv", [NORMALIZED_IMAGE, "patch_w"], ["patches"], strides=[PATCH, PATCH], name="patch"),
        helper.make_node("Reshape", ["patches", "tokens_shape"], ["channels_first"], name="flatten"),
        helper.make_node("Transpose", ["channels_first"], ["tokens"], perm=[0, 2, 1], name="to_tokens"),
        helper.make_node("LayerNormalization", ["tokens", "ln_scale", "ln_bias"], ["normed"], axis=-1, name="ln"),
        helper.make_node("MatMul", ["normed", "mlp_w"], ["mixed"], name="mlp"),
        helper.make_node("ReduceMean", ["mixed"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["pooled", "head_w"], ["logits"], name="head"),
        helper.make_node("Softmax", ["logits"], ["PROBABILITIES"], axis=-1, name="softmax"),
    ]
    crops = helper.make_tensor_value_info(NETWORK_INPUT, TensorProto.UINT8, ["batch", SIZE, SIZE, 3])
    probabilities = helper.make_tensor_value_info("PROBABILITIES", TensorProto.FLOAT, ["batch", CLASSES])
    graph = helper.make_graph(nodes, "small", [crops], [probabilities], prefix_constants + constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, crops: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {NETWORK_INPUT: crops})[0]


@pytest.fixture(scope="module")
def networks() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    fp32 = small_network()
    return fp32, fp16.convert(fp32)


def test_the_fp16_network_keeps_io_prefix_layernorm_and_softmax_in_fp32(networks: tuple) -> None:
    fp32, converted = networks
    types = fp16.tensor_types(converted)
    assert [(v.name, v.type.tensor_type.elem_type) for v in converted.graph.input] == [
        (NETWORK_INPUT, TensorProto.UINT8)
    ]
    assert [(v.name, v.type.tensor_type.elem_type) for v in converted.graph.output] == [
        ("PROBABILITIES", TensorProto.FLOAT)
    ]
    by_name = {node.name: node for node in converted.graph.node}
    for name in ("div_std", "to_chw"):  # the prefix computes in FP32 up to its last node
        node = by_name[normalization.PREFIX + name]
        assert {types[t] for t in (*node.input, *node.output)} == {TensorProto.FLOAT}, name
    for name in ("ln", "softmax"):
        node = by_name[name]
        assert {types[t] for t in (*node.input, *node.output)} == {TensorProto.FLOAT}, name
    initializers = {init.name: init.data_type for init in converted.graph.initializer}
    for weight in ("patch_w", "mlp_w", "head_w"):
        assert initializers[weight] == TensorProto.FLOAT16, weight
    for name in ("patches", "mixed", "logits"):
        assert types[name] == TensorProto.FLOAT16, name
    assert fp16.layout_problems(fp32, converted) == []
    # FP16: the Conv and MatMul weights; FP32: LayerNorm's scale and bias, the prefix's scale, mean and std.
    assert fp16.precision_counts(converted) == {
        "fp16_weights": WIDTH * 3 * PATCH * PATCH + WIDTH * WIDTH + WIDTH * CLASSES,
        "fp32_weights": 2 * WIDTH + 1 + 3 + 3,
    }


def test_a_conversion_without_the_fp32_ops_is_caught(networks: tuple) -> None:
    """What onnxconverter-common does by default (everything FP16) breaks the layout the check enforces."""
    from onnxconverter_common import float16

    fp32, _ = networks
    everything = float16.convert_float_to_float16(fp32, keep_io_types=True)  # the prefix's Cast too
    with pytest.raises(fp16.Fp16Error, match="breaks its precision layout: its types do not check"):
        fp16.check_layout(fp32, everything)
    ops, prefix = fp16.kept_fp32(fp32)
    without_ops = float16.convert_float_to_float16(fp32, keep_io_types=True, node_block_list=prefix)
    problems = " ".join(fp16.layout_problems(fp32, without_ops))
    assert "LayerNormalization ln" in problems and "Softmax softmax" in problems
    # The converter alone, with the same block lists, leaves the output FP16 behind the final FP32 Softmax:
    # what convert() repairs (_restore_fp32_outputs).
    unrepaired = float16.convert_float_to_float16(fp32, keep_io_types=True, op_block_list=ops, node_block_list=prefix)
    assert fp16.layout_problems(fp32, unrepaired) == [
        "graph outputs [('PROBABILITIES', 10)] differ from the FP32 network's [('PROBABILITIES', 1)]"
    ]


def test_onnx_runtime_runs_both_and_fp16_is_close(networks: tuple) -> None:
    fp32, converted = networks
    crops = np.random.default_rng(1).integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    p32, p16 = run(fp32, crops), run(converted, crops)
    assert p16.dtype == np.float32 and p16.shape == (6, CLASSES)
    result = fp16.agreement(p16, p32)
    assert 0 < result.max_abs_diff <= fp16.FP16_ATOL, "FP16 rounds: the outputs differ, a little"
    assert result.accepted and result.top1_in_top5 == 1.0


def test_the_acceptance_rule_refuses_non_finite_or_lost_classes() -> None:
    fp32 = np.full((2, CLASSES), 0.5 / (CLASSES - 1), np.float32)
    fp32[:, 0] = 0.5
    assert fp16.agreement(fp32.copy(), fp32).accepted
    broken = fp32.copy()
    broken[1, 0] = np.nan
    assert not fp16.agreement(broken, fp32).accepted
    moved = fp32.copy()
    moved[1, 0] = 0.0  # the FP32 top-1 class falls out of the top five
    outcome = fp16.agreement(moved, fp32)
    assert not outcome.accepted and outcome.top1_in_top5 == 0.5
