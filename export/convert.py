"""Paddle inference model -> checked ONNX file with the repository's tensor names.

paddle2onnx (opset 17, so LayerNorm stays one op, which TensorRT FP16 needs) -> onnxsim -> rename
the exporter's tensor names to the ones the Triton configs use -> prepend the normalization, so the
graph takes uint8 crops (export/normalization.py) -> check shapes.

The normalization is added after onnxsim on purpose: onnxsim never sees it, so it stays the five
nodes as written (simplification could otherwise fold or reorder the float arithmetic), and onnxsim
works on the network exactly as PaddleClas exported it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx

from catalog import ModelEntry
from catalog.reference import NUM_CLASSES
from export import normalization
from export.errors import ExportCheckError
from model_repository.configs import NETWORK_INPUT, NETWORK_OUTPUT, NORMALIZED_IMAGE

OPSET = 17


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send everything written to fd 1 and 2 (including C++ libraries) to a log file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def paddle_to_onnx(program: Path, onnx_path: Path) -> None:
    """paddle2onnx without its Polygraphy constant-folding pass (onnxsim folds constants next).

    That pass duplicates onnxsim's work at a high price (ViT_large_patch32_384: 115 s and 13 GB
    of memory, against 12 s and 6 GB without it; the simplified graphs are identical, 790 nodes),
    and paddle2onnx sets POLYGRAPHY_AUTOINSTALL_DEPS=1 itself right before it, which lets
    Polygraphy pip-install onnx-graphsurgeon and numpy 2 into this environment.
    """
    import paddle2onnx

    try:
        paddle2onnx.export(
            str(program),
            str(program.parent / "inference.pdiparams"),
            str(onnx_path),
            opset_version=OPSET,
            enable_onnx_checker=True,
            optimize_tool="None",
        )
    except OSError:  # the machine's (a full disk): reported as such by the pipeline
        raise
    except Exception as err:  # paddle2onnx reports an operator it cannot convert by any exception type
        raise ExportCheckError(f"paddle2onnx could not convert {program}: {type(err).__name__}: {err}") from err
    if not onnx_path.is_file():
        raise ExportCheckError(f"paddle2onnx wrote no file for {program}")


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportCheckError("onnxsim could not validate the simplified graph")
    return simplified


def rename_io(model: onnx.ModelProto) -> tuple[str, str]:
    """Name the single input NORMALIZED_IMAGE and the output as the configs do; return the original names.

    Exporters name tensors 'x' or 'inputs' and 'save_infer_model/scale_0.tmp_1' or 'fetch_name_0':
    read from the graph, never assumed.
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ExportCheckError(f"expected one input and one output, found {len(inputs)} and {len(graph.output)}")
    old_in, old_out = inputs[0].name, graph.output[0].name
    renames = {old_in: NORMALIZED_IMAGE, old_out: NETWORK_OUTPUT}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    inputs[0].name, graph.output[0].name = NORMALIZED_IMAGE, NETWORK_OUTPUT
    return old_in, old_out


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _dtype(value_info: onnx.ValueInfoProto) -> str:
    return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type)


def check_shapes(model: onnx.ModelProto, entry: ModelEntry) -> None:
    """CROPS uint8 [batch, S, S, 3] in, PROBABILITIES float [batch, 1000] out, nothing else.

    Only the batch dimension may be dynamic (ViT's patch embedding asserts the image size).
    """
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if [value.name for value in inputs] != [NETWORK_INPUT] or [o.name for o in graph.output] != [NETWORK_OUTPUT]:
        raise ExportCheckError(
            f"graph tensors {[v.name for v in inputs]} -> {[o.name for o in graph.output]}, "
            f"expected [{NETWORK_INPUT!r}] -> [{NETWORK_OUTPUT!r}]"
        )
    (inp,), out = inputs, graph.output[0]
    in_dims, out_dims = _dims(inp), _dims(out)
    size = entry.input_size
    if _dtype(inp) != "UINT8" or len(in_dims) != 4 or in_dims[1:] != [size, size, 3] or isinstance(in_dims[0], int):
        raise ExportCheckError(
            f"input {_dtype(inp)} {in_dims}, expected UINT8 [batch, {size}, {size}, 3] with dynamic batch"
        )
    if _dtype(out) != "FLOAT" or len(out_dims) != 2 or out_dims[1] != NUM_CLASSES or isinstance(out_dims[0], int):
        raise ExportCheckError(
            f"output {_dtype(out)} {out_dims}, expected FLOAT [batch, {NUM_CLASSES}] with dynamic batch"
        )


def finish(model: onnx.ModelProto, entry: ModelEntry) -> tuple[str, str]:
    """After onnxsim: rename, prepend the normalization, check; returns the exporter's original names."""
    original_names = rename_io(model)
    (network_input,) = [i for i in model.graph.input if i.name == NORMALIZED_IMAGE]
    size = entry.input_size
    dims = _dims(network_input)
    if _dtype(network_input) != "FLOAT" or dims[1:] != [3, size, size] or isinstance(dims[0], int):
        raise ExportCheckError(
            f"the exported network takes {_dtype(network_input)} {dims}, "
            f"expected FLOAT [batch, 3, {size}, {size}] with dynamic batch"
        )
    normalization.prepend(model, entry)
    check_shapes(model, entry)
    onnx.checker.check_model(model)
    return original_names


def convert(program: Path, entry: ModelEntry, onnx_path: Path, log: Path) -> dict[str, object]:
    """Convert, simplify, rename, prepend the normalization and check; returns facts for the export record."""
    from export.measure import onnx_macs

    raw = onnx_path.with_suffix(".raw.onnx")
    with output_to(log):
        paddle_to_onnx(program, raw)
        model = simplify(onnx.load(str(raw)))
    raw.unlink()
    original_names = finish(model, entry)
    onnx.save(model, str(onnx_path))
    return {
        "opset": OPSET,
        "input": f"{NETWORK_INPUT} uint8 NHWC, normalization in graph",
        "original_tensor_names": list(original_names),
        "nodes": len(model.graph.node),
        "batchnorm_nodes": sum(node.op_type == "BatchNormalization" for node in model.graph.node),
        "macs": onnx_macs(model),
    }
