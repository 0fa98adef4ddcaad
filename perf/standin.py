"""A STAND-IN for the GPU's network, for measuring what the CPU side of a GPU node pays per image.

On a GPU node the network runs on the GPU, thousands of images a second; here the portable network runs
on the same CPU cores and caps a served model at a few images a second (NextViT_small_224: ~9/s on one
core). At that rate every request reaches the steps alone and pays their fixed costs in full, which a GPU
node's traffic shares through dynamic batching. This stand-in takes the network's place with the same
tensors (uint8 crops in, 1,000 probabilities out) and almost no work (the crop's mean colour through a
fixed 3 x 1000 matrix and a softmax), so the rate is set by what is measured: preprocessing and serving.

Its answers are not classifications: nothing but CPU-cost measurements (perf.cpu_cost) serves it, and
its figures say so. A stand-in repository links every folder of the real one except each network's
model file, so the exported models are neither copied nor touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from catalog.reference import NUM_CLASSES
from export.convert import OPSET
from model_repository import configs

STANDIN_SEED = 0


def standin_network(input_name: str, output_name: str, classes: int = NUM_CLASSES):
    """An ONNX graph with the network's signature: N x H x W x 3 uint8 -> N x classes float probabilities."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(STANDIN_SEED).standard_normal((3, classes)).astype(np.float32) / 255.0
    nodes = [
        helper.make_node("Cast", [input_name], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["colour"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["colour", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [output_name], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "gpu_network_standin",
        [helper.make_tensor_value_info(input_name, TensorProto.UINT8, ["N", None, None, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(weights, "weights")],
    )
    # The exports' opset, where ReduceMean still takes its axes as an attribute.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def standin_repository(repository: Path, out: Path) -> Path:
    """`out`: every folder of `repository` linked, each network's model file replaced by the stand-in.

    Rebuilt on every call, so a stale stand-in never outlives a re-export.
    """
    import onnx

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        if not folder.name.endswith(configs.NETWORK_SUFFIX):
            (out / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
            continue
        copy = out / folder.name
        copy.mkdir()
        for item in folder.iterdir():  # export.json, warmup/: the real network's record and warmup crop
            if not item.name.isdigit():
                (copy / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
        for version in (p for p in folder.iterdir() if p.name.isdigit()):
            (copy / version.name).mkdir()
            for model_file in version.glob("*.onnx"):
                real = onnx.load(str(model_file), load_external_data=False)
                (input_name,), (output_name,) = [t.name for t in real.graph.input], [t.name for t in real.graph.output]
                onnx.save(standin_network(input_name, output_name), str(copy / version.name / model_file.name))
    return out
