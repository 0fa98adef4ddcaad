"""The FP16 network: mixed precision written into the ONNX graph, for strongly typed TensorRT builds.

TensorRT 11 removed every precision builder flag (trtexec's --fp16 no longer parses): a network's
precision is the types its ONNX graph carries, built with --stronglyTyped, which TensorRT 10.x
accepts too. So the production export writes a second network beside model.onnx,
``model.fp16.onnx``: the same graph with FP16 weights and activations, except what must stay FP32:

* the graph's input and output: the uint8 CROPS and the FP32 PROBABILITIES of the served contract;
* the normalization prefix (export/normalization.py): Cast, Mul, Sub, Div, Transpose in FP32, so the
  network gets exactly the numbers PaddleClas normalizes; it is rounded to FP16 once, after it;
* LayerNormalization (its mean and variance lose digits in FP16: NVIDIA's TensorRT guidance and
  ONNX Runtime's trt_layer_norm_fp32_fallback exist for this) and Softmax (exp of large logits
  overflows FP16), with Cast nodes around them;
* the ops onnxconverter-common itself keeps (its DEFAULT_OP_BLOCK_LIST: Resize, TopK, Range, ...).

The conversion is onnxconverter-common's `float16.convert_float_to_float16` (the package NVIDIA's
ModelOpt AutoCast itself depends on, and that depends only on onnx, numpy, protobuf and packaging,
all pinned here). ModelOpt 0.47 would need torch, onnx 1.21 (paddle2onnx caps onnx at 1.17) and
onnxruntime-gpu, so it would need an environment of its own for no gain on these graphs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from catalog.models import FP16_ATOL
from export.errors import Fp16Error
from export.normalization import PREFIX
from export.trt_plans import ONNX_FILES

FP16_FILE = ONNX_FILES["fp16"]  # beside model.onnx in the production network's version directory
KEEP_FP32_OPS = ("LayerNormalization", "Softmax")
WEIGHT_OPS = ("Conv", "MatMul", "Gemm")  # their initializer weights must be FP16 in the FP16 network
FP16_MAX = float(np.finfo(np.float16).max)  # weights are clamped here, not at the converter's default 1e4


def kept_fp32(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(op types, node names) the converter must leave in FP32: the ops above and the normalization prefix."""
    from onnxconverter_common import float16

    ops = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *KEEP_FP32_OPS]))
    nodes = [node.name for node in model.graph.node if node.name.startswith(PREFIX)]
    return ops, nodes


def _restore_fp32_outputs(model: onnx.ModelProto, float_outputs: set[str]) -> None:
    """Give back FP32 to graph outputs the converter turned FP16.

    onnxconverter-common 1.16's keep_io_types misses an output whose producer is on the block list
    (here the final Softmax): it appends a Cast to FP16 after the blocked node and types the graph
    output FP16. That Cast is dropped, so the FP32 result is the output itself.
    """
    graph = model.graph
    for output in graph.output:
        if output.name not in float_outputs or output.type.tensor_type.elem_type == TensorProto.FLOAT:
            continue
        producer = next(node for node in graph.node if output.name in node.output)
        if producer.op_type == "Cast" and helper.get_attribute_value(producer.attribute[0]) == TensorProto.FLOAT16:
            source = producer.input[0]
            graph.node.remove(producer)
            for node in graph.node:
                node.output[:] = [output.name if name == source else name for name in node.output]
        else:
            renamed = output.name + "/fp16"
            producer.output[:] = [renamed if name == output.name else name for name in producer.output]
            graph.node.append(helper.make_node("Cast", [renamed], [output.name], to=TensorProto.FLOAT))
        output.type.tensor_type.elem_type = TensorProto.FLOAT


def convert(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP16 network of an exported FP32 network (a new model; `model` is not changed)."""
    from onnxconverter_common import float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    float_outputs = {out.name for out in source.graph.output if out.type.tensor_type.elem_type == TensorProto.FLOAT}
    ops, nodes = kept_fp32(source)
    with warnings.catch_warnings():  # one "will be truncated" warning per clamped tensor: see check_weights
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            source, max_finite_val=FP16_MAX, keep_io_types=True, op_block_list=ops, node_block_list=nodes
        )
    _restore_fp32_outputs(converted, float_outputs)
    del converted.graph.value_info[:]  # the converter's inferred shapes; ONNX Runtime and TensorRT infer their own
    return converted


# --- checks of the precision layout -----------------------------------------------------------------


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the graph (inputs, initializers, node outputs), by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def _names(nodes: Iterable[onnx.NodeProto], inputs: bool = True) -> set[str]:
    return {name for node in nodes for name in (*(node.input if inputs else ()), *node.output) if name}


def layout_problems(fp32: onnx.ModelProto, fp16: onnx.ModelProto) -> list[str]:
    """What breaks the mixed-precision layout: empty when the FP16 network is as the module docstring says."""
    try:
        types = tensor_types(fp16)
    except onnx.shape_inference.InferenceError as error:  # e.g. a Cast whose declared type contradicts its `to`
        return [f"its types do not check ({str(error).splitlines()[0]})"]
    problems = []
    for kind, before, after in (
        ("input", fp32.graph.input, fp16.graph.input),
        ("output", fp32.graph.output, fp16.graph.output),
    ):
        was = [(v.name, v.type.tensor_type.elem_type) for v in before]
        now = [(v.name, v.type.tensor_type.elem_type) for v in after]
        if was != now:
            problems.append(f"graph {kind}s {now} differ from the FP32 network's {was}")
    prefix_names = {node.name for node in fp32.graph.node if node.name.startswith(PREFIX)}
    prefix = [node for node in fp16.graph.node if node.name in prefix_names]  # not the Casts added after it
    if len(prefix) != len(prefix_names):
        problems.append("the normalization prefix lost nodes")
    kept = [node for node in fp16.graph.node if node.op_type in KEEP_FP32_OPS]
    for node in prefix + kept:
        # the prefix's first Cast reads the uint8 input; every other tensor of these nodes is float32
        floats = {name for name in _names([node]) if types.get(name) != TensorProto.UINT8}
        wrong = sorted(name for name in floats if types.get(name) != TensorProto.FLOAT)
        if wrong:
            problems.append(f"{node.op_type} {node.name}: {wrong} not FLOAT")
    weights = {init.name: init.data_type for init in fp16.graph.initializer}
    for node in fp16.graph.node:
        if node.op_type in WEIGHT_OPS:
            wrong = [name for name in node.input[1:] if name in weights and weights[name] != TensorProto.FLOAT16]
            if wrong:
                problems.append(f"{node.op_type} {node.name}: weights {wrong} not FLOAT16")
    if not any(types.get(name) == TensorProto.FLOAT16 for name in _names(fp16.graph.node)):
        problems.append("no FLOAT16 tensor: nothing was converted")
    return problems


def check_layout(fp32: onnx.ModelProto, fp16: onnx.ModelProto) -> None:
    problems = layout_problems(fp32, fp16)
    if problems:
        raise Fp16Error("the FP16 network breaks its precision layout: " + "; ".join(problems[:5]))


def precision_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many weights (initializer elements) are FP16 and how many stayed FP32: the record's summary."""
    counts = {"fp16_weights": 0, "fp32_weights": 0}
    for init in model.graph.initializer:
        size = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type == TensorProto.FLOAT16:
            counts["fp16_weights"] += size
        elif init.data_type == TensorProto.FLOAT:
            counts["fp32_weights"] += size
    return counts


# --- FP16 against FP32 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """FP16 against FP32 on the same crops: the price, in the terms a classifier's user cares about."""

    images: int
    max_abs_diff: float  # over all 1000 probabilities of every image
    top1_agreement: float  # share of images whose FP16 top-1 class is FP32's
    top5_agreement: float  # share of images whose FP16 top-5 classes are FP32's, in the same order
    top1_in_top5: float  # share of images whose FP32 top-1 class is among FP16's top-5
    finite: bool

    @property
    def accepted(self) -> bool:
        """The export's acceptance rule: finite, within FP16_ATOL, and no FP32 top-1 class lost from the top five."""
        return self.finite and self.max_abs_diff <= FP16_ATOL and self.top1_in_top5 == 1.0

    def summary(self) -> str:
        return (
            f"FP16 network on {self.images} photographs: max |p_fp16 - p_fp32| = {self.max_abs_diff:.2e} "
            f"(limit {FP16_ATOL:.0e}), top-1 agreement {self.top1_agreement:.0%}, "
            f"top-5 agreement {self.top5_agreement:.0%}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"atol": FP16_ATOL, "accepted": self.accepted}


def agreement(fp16_probs: np.ndarray, fp32_probs: np.ndarray) -> Agreement:
    from export.parity import top_k

    top16, top32 = top_k(fp16_probs), top_k(fp32_probs)
    finite = bool(np.isfinite(fp16_probs).all())
    return Agreement(
        images=len(fp32_probs),
        max_abs_diff=float(np.abs(fp16_probs - fp32_probs).max()) if finite else float("inf"),
        top1_agreement=float(np.mean(top16[:, 0] == top32[:, 0])),
        top5_agreement=float(np.mean(np.all(top16 == top32, axis=1))),
        top1_in_top5=float(np.mean([first in row for first, row in zip(top32[:, 0], top16, strict=True)])),
        finite=finite,
    )


def write(onnx_path: Path, target: Path, crops: np.ndarray) -> dict[str, object]:
    """Convert the exported network at `onnx_path` into `target`, check it, and return its record.

    Checked twice: the precision layout (layout_problems), and ONNX Runtime's outputs of both
    networks on `crops` (the sample photographs) against the acceptance rule.
    """
    from export.parity import run_onnx

    fp32 = onnx.load(str(onnx_path))
    fp16 = convert(fp32)
    check_layout(fp32, fp16)
    onnx.save(fp16, str(target))
    onnx.checker.check_model(str(target))
    result = agreement(run_onnx(target, crops), run_onnx(onnx_path, crops))
    if not result.accepted:
        raise Fp16Error(f"the FP16 network disagrees with FP32: {result.summary()}")
    ops, _ = kept_fp32(fp32)
    return {
        "file": target.name,
        "bytes": target.stat().st_size,
        "converter": "onnxconverter-common float16.convert_float_to_float16 (keep_io_types)",
        "fp32_ops": [op for op in ops if any(node.op_type == op for node in fp32.graph.node)],
        "fp32_prefix": PREFIX,
        **precision_counts(fp16),
        "photographs": result.as_dict(),
    }
