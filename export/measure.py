"""Parameters and FLOPs of an exported network, counted so they can stand beside the published figures.

PaddleClas's model documents publish "FLOPs" and "Params" as printed by `paddle.flops`, a counter
that hooks leaf layers only. That explains every gap between its figures and a plain count:

* it counts multiply-accumulates of Conv2D (plus one per output for the bias) and Linear, two
  operations per element for BatchNorm, and one per output element for pooling; functional
  operations (the attention matrix products `q @ k` and `attn @ v`, softmax, GELU, LayerNorm)
  count zero;
* its parameter total sums the parameters of leaf layers, so tensors that belong to a composite
  layer itself (ViT's `pos_embed` and `cls_token`) are left out, while BatchNorm running
  statistics (non-trainable, but Paddle parameters) are counted.

So we record three figures per network: the PaddleClas count (reproduces the published numbers),
every parameter tensor, and the multiply-accumulates of every Conv/MatMul/Gemm in the exported
ONNX graph (what the served graph really computes, attention included).
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import onnx

# Initializers larger than this are replaced by typed graph inputs before shape inference: shape
# inference needs their shapes, not their data, and ViT_large carries 1.2 GB of data.
_SMALL_INITIALIZER = 64


def count_parameters(network: object) -> dict[str, object]:
    """Every parameter, the leaf-layer total `paddle.flops` prints (PaddleClas's figure), and the gap's names."""
    leaves = [layer for layer in network.sublayers(include_self=True) if not list(layer.children())]
    in_leaves = {id(p) for layer in leaves for p in layer.parameters()}
    every = dict(network.named_parameters())
    outside = sorted(name for name, p in every.items() if id(p) not in in_leaves)
    return {
        "params_all": sum(int(np.prod(p.shape)) for p in every.values()),
        "params_paddleclas": sum(int(np.prod(p.shape)) for name, p in every.items() if name not in outside),
        "params_outside_leaf_layers": outside,
    }


def paddleclas_flops(network: object, input_size: int) -> int:
    """`paddle.flops` at batch 1: the counter behind PaddleClas's published FLOPs (see module doc).

    Runs one forward pass on the network as given; call it before merge_bn, because folded
    BatchNorms no longer run and would drop out of the count.
    """
    import paddle

    # paddle.flops prints one line per layer type and a total; the value returned is what we keep.
    with contextlib.redirect_stdout(io.StringIO()):
        return int(paddle.flops(network, [1, 3, input_size, input_size], print_detail=False))


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def _shape_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without weight data and with batch 1: what shape inference needs, kilobytes not gigabytes.

    Large initializers become typed graph inputs (shape inference needs their shapes only); small
    ones (shape and axis constants that Reshape and Slice read) are kept with their data.
    """
    skeleton = onnx.ModelProto(ir_version=model.ir_version)
    skeleton.opset_import.extend(model.opset_import)
    graph = skeleton.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    for init in model.graph.initializer:
        if math.prod(init.dims) > _SMALL_INITIALIZER:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            graph.initializer.append(init)
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return skeleton


def onnx_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of every Conv, MatMul and Gemm in the graph, at batch 1.

    Elementwise work (adds, activations, normalisation, softmax, pooling) is left out: it is a
    few percent of the total for these networks and no two counters agree on its weight.
    """
    inferred = onnx.shape_inference.infer_shapes(_shape_skeleton(model), strict_mode=True, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, list[int] | None] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        shapes[value.name] = _dims(value)
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    macs = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        out, first, second = shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1])
        if out is None or first is None or second is None:
            raise ValueError(f"shape inference left {node.op_type} node {node.name!r} without static shapes")
        if node.op_type == "Conv":
            reduction = math.prod(second[1:])  # weight [out, in / groups, kh, kw]
        elif node.op_type == "MatMul":
            reduction = first[-1]
        else:
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            reduction = first[0] if trans_a else first[-1]
        macs += math.prod(out) * reduction
    return macs
