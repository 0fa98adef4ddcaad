"""The normalization PaddleClas does on the CPU, as the first nodes of the exported ONNX graph.

PaddleClas feeds its network float32 N x 3 x S x S: the crop divided by 255, minus the mean, divided
by the std, channels first (NormalizeImage, ToCHWImage). Served that way, every preprocess instance
does four float operations per pixel on the CPU, and each image travels as float32 through Triton's
shared memory, the ensemble and the host-to-GPU copy. Here those operations become the graph's first
nodes, so the network takes the uint8 crop, channels last, exactly as the preprocess step cuts it
(configs.NETWORK_INPUT, N x S x S x 3): the CPU does no per-pixel float math any more, the tensors
carried between the steps and to the GPU are a quarter of the bytes, and one preprocess step serves
every model that crops the same way whatever its mean and std.

The nodes repeat numpy's float32 order of operations in preprocess.normalize, one operation each:
Cast to float32, Mul by float32(1/255), Sub mean, Div std (both float32 [1, 1, 1, 3]), then Transpose
to N x 3 x S x S. Each is an exactly rounded IEEE float32 operation, so ONNX Runtime gives the same
numbers as PaddleClas (tests/unit/test_export_normalization.py measures it). Mean and std are read from the
catalog entry, never restated.

`prepend` puts the nodes in front of a network whose input is configs.NORMALIZED_IMAGE (after
convert.rename_io); `standalone` is the same nodes alone, as a model of their own, for tests.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from catalog import ModelEntry
from model_repository.configs import NETWORK_INPUT, NORMALIZED_IMAGE

# Names of the prefix's own tensors; the prefix is unique enough that no exporter uses it.
PREFIX = "crops_normalization/"
SCALE = np.float32(1.0 / 255.0)  # PaddleClas's model configs: scale 1.0/255.0, a float32
HWC_TO_CHW = [0, 3, 1, 2]
BATCH = "batch"  # the dynamic batch dimension's name in the standalone model


def statistics(entry: ModelEntry) -> tuple[np.ndarray, np.ndarray]:
    """The catalog's mean and std as float32 [1, 1, 1, 3]: broadcast over N x S x S x 3 crops."""
    prep = entry.preprocessing
    shape = (1, 1, 1, 3)
    return np.array(prep.mean, np.float32).reshape(shape), np.array(prep.std, np.float32).reshape(shape)


def nodes(entry: ModelEntry) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes CROPS (uint8 N x S x S x 3) -> NORMALIZED_IMAGE (float32 N x 3 x S x S) and their constants."""
    mean, std = statistics(entry)
    constants = [
        numpy_helper.from_array(np.array(SCALE), PREFIX + "scale"),
        numpy_helper.from_array(mean, PREFIX + "mean"),
        numpy_helper.from_array(std, PREFIX + "std"),
    ]
    as_float, scaled, centred, normalized = (PREFIX + name for name in ("float", "scaled", "centred", "hwc"))
    graph_nodes = [
        helper.make_node("Cast", [NETWORK_INPUT], [as_float], name=PREFIX + "cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [as_float, PREFIX + "scale"], [scaled], name=PREFIX + "mul_scale"),
        helper.make_node("Sub", [scaled, PREFIX + "mean"], [centred], name=PREFIX + "sub_mean"),
        helper.make_node("Div", [centred, PREFIX + "std"], [normalized], name=PREFIX + "div_std"),
        helper.make_node("Transpose", [normalized], [NORMALIZED_IMAGE], name=PREFIX + "to_chw", perm=HWC_TO_CHW),
    ]
    return graph_nodes, constants


def crops_input(entry: ModelEntry, batch: onnx.TensorShapeProto.Dimension | str = BATCH) -> onnx.ValueInfoProto:
    """The graph input: uint8 [batch, S, S, 3], batch dynamic (a dim_param, or the network's own batch dim)."""
    size = entry.input_size
    value = helper.make_tensor_value_info(NETWORK_INPUT, TensorProto.UINT8, [None, size, size, 3])
    first = value.type.tensor_type.shape.dim[0]
    if isinstance(batch, str):
        first.dim_param = batch
    else:
        first.CopyFrom(batch)
    return value


def prepend(model: onnx.ModelProto, entry: ModelEntry) -> onnx.ModelProto:
    """Make CROPS the network's only input, normalized by the nodes above into its NORMALIZED_IMAGE.

    Changes `model` in place and returns it. The former input becomes an inner tensor (its shape is
    kept as value_info); the new input's batch dimension is the network's own (same dim_param).
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if [value.name for value in inputs] != [NORMALIZED_IMAGE]:
        raise ValueError(f"expected the network's one input {NORMALIZED_IMAGE}, found {[v.name for v in inputs]}")
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | initializers
    clashes = sorted(name for name in taken if name.startswith(PREFIX) or name == NETWORK_INPUT)
    if clashes:
        raise ValueError(f"the network already has a tensor named {clashes[0]!r}")
    (former,) = inputs
    batch = former.type.tensor_type.shape.dim[0]
    new_nodes, constants = nodes(entry)
    graph.input.remove(former)
    graph.input.insert(0, crops_input(entry, batch))
    graph.value_info.append(former)
    graph.initializer.extend(constants)
    for index, node in enumerate(new_nodes):  # keep the node list in topological order
        graph.node.insert(index, node)
    return model


def standalone(entry: ModelEntry, opset: int = 17) -> onnx.ModelProto:
    """The normalization alone: CROPS -> NORMALIZED_IMAGE, built by the same `nodes` as every export."""
    graph_nodes, constants = nodes(entry)
    size = entry.input_size
    output = helper.make_tensor_value_info(NORMALIZED_IMAGE, TensorProto.FLOAT, [BATCH, 3, size, size])
    graph = helper.make_graph(graph_nodes, f"{entry.name}_normalization", [crops_input(entry)], [output], constants)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model, full_check=True)
    return model
