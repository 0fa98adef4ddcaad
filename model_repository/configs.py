"""Triton model configurations for one catalog model, generated from the catalog.

Each served model is six Triton models, two entry points sharing the network and postprocess:

    NAME                      ensemble, the public entry point for encoded images (wire contract in the README)
    NAME_pixels               ensemble, the entry point for decoded RGB frames (PIXELS, uint8 N x H x W x 3)
    NAME_preprocess           Python backend: encoded bytes -> NORMALIZED_IMAGE (preprocess/ package)
    NAME_pixels_preprocess    Python backend: RGB frames -> NORMALIZED_IMAGE (same code, decoding skipped)
    NAME_network              the exported ONNX network: NORMALIZED_IMAGE -> PROBABILITIES
    NAME_postprocess          Python backend: PROBABILITIES -> top-k LABELS, SCORES, CLASS_IDS

The network config has two variants from one function: "production" (onnxruntime backend on GPU)
and "portable" (the same ONNX file run by ONNX Runtime inside the Python backend, on CPU, for the
local server and CI, whose Triton build has only the Python backend).

Configs are written as dicts, then parsed into Triton's own ModelConfig protobuf before they are
rendered, so a misspelt field or a wrong type fails here rather than at server start.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from catalog import ModelEntry
from catalog.reference import NUM_CLASSES
from preprocess import DEFAULT_MAX_PIXELS

Variant = Literal["portable", "production"]
VARIANTS: tuple[Variant, ...] = ("portable", "production")

# The wire contract: see README "Wire contract". Changing these breaks clients.
IMAGE_INPUT = "IMAGE"
PIXELS_INPUT = "PIXELS"  # the second entry point: decoded RGB uint8 frames
TOP_K_OUTPUTS = {"LABELS": "TYPE_STRING", "SCORES": "TYPE_FP32", "CLASS_IDS": "TYPE_INT64"}
TOP_K = 5
MAX_BATCH_SIZE = 8

# Internal tensors between the steps; export renames the ONNX graph's own names to these.
NETWORK_INPUT = "NORMALIZED_IMAGE"
NETWORK_OUTPUT = "PROBABILITIES"

ConfigDict = dict[str, Any]


def preprocess_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_preprocess"


def network_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_network"


def postprocess_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_postprocess"


def pixels_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_pixels"


def pixels_preprocess_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_pixels_preprocess"


def _params(**values: object) -> dict[str, dict[str, str]]:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def _image_tensor(entry: ModelEntry) -> ConfigDict:
    return {"name": NETWORK_INPUT, "data_type": "TYPE_FP32", "dims": [3, entry.input_size, entry.input_size]}


def _probabilities_tensor() -> ConfigDict:
    return {"name": NETWORK_OUTPUT, "data_type": "TYPE_FP32", "dims": [NUM_CLASSES]}


def _top_k_tensors() -> list[ConfigDict]:
    return [{"name": name, "data_type": dtype, "dims": [TOP_K]} for name, dtype in TOP_K_OUTPUTS.items()]


def ensemble_config(entry: ModelEntry, weights_note: str) -> ConfigDict:
    steps = [
        (preprocess_name(entry), {IMAGE_INPUT: IMAGE_INPUT}, {NETWORK_INPUT: "normalized_image"}),
        (network_name(entry), {NETWORK_INPUT: "normalized_image"}, {NETWORK_OUTPUT: "probabilities"}),
        (postprocess_name(entry), {NETWORK_OUTPUT: "probabilities"}, {k: k for k in TOP_K_OUTPUTS}),
    ]
    return {
        "name": entry.triton_name,
        "platform": "ensemble",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [{"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": _top_k_tensors(),
        "ensemble_scheduling": {
            "step": [
                {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}
                for model, inputs, outputs in steps
            ]
        },
        "parameters": _params(paddleclas_name=entry.name, weights=weights_note),
    }


def preprocess_config(entry: ModelEntry, instances: int = 2) -> ConfigDict:
    prep = entry.preprocessing
    return {
        "name": preprocess_name(entry),
        "backend": "python",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [{"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [_image_tensor(entry)],
        "dynamic_batching": {},
        "instance_group": [{"kind": "KIND_CPU", "count": instances}],
        "parameters": _params(
            resize_short=prep.resize_short,
            crop=prep.crop,
            resize=prep.resize,
            mean=",".join(map(str, prep.mean)),
            std=",".join(map(str, prep.std)),
            max_pixels=DEFAULT_MAX_PIXELS,
        ),
    }


def _pixels_input() -> ConfigDict:
    return {"name": PIXELS_INPUT, "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}


def pixels_preprocess_config(entry: ModelEntry) -> ConfigDict:
    """preprocess_config with PIXELS in: derived, so its tuning and parameters never drift from it."""
    config = copy.deepcopy(preprocess_config(entry))
    # Ragged: frames of different sizes may share a batch (the model handles each request's own shape).
    config |= {"name": pixels_preprocess_name(entry), "input": [_pixels_input() | {"allow_ragged_batch": True}]}
    return config


def pixels_ensemble_config(entry: ModelEntry, weights_note: str) -> ConfigDict:
    """ensemble_config with its first step swapped for the pixels preprocess; every later step is shared."""
    config = copy.deepcopy(ensemble_config(entry, weights_note))
    config |= {"name": pixels_ensemble_name(entry), "input": [_pixels_input()]}
    first = config["ensemble_scheduling"]["step"][0]
    if first["model_name"] != preprocess_name(entry):
        raise ValueError(f"the ensemble's first step is {first['model_name']}, expected {preprocess_name(entry)}")
    first["model_name"] = pixels_preprocess_name(entry)
    first["input_map"] = {PIXELS_INPUT: PIXELS_INPUT}
    return config


# Portable network layout on CPU, chosen by `make perf-tune` on 2 cores (docs/performance.md,
# "Tuning"): one ONNX Runtime instance whose intra-op pool has a thread per usable core (threads
# 0 = the cores the server may use, cgroup CPU limit included, divided by the instances). At
# concurrency 1 it is as fast as the in-process pipeline (p50 +2 ms NextViT-S, -12 ms ViT-B).
# One single-threaded instance per core serves 6 % (NextViT-S) and 3 % (ViT-B) more images/s at
# saturation but doubles the p50 of a lone request (142 vs 80 ms, 414 vs 220 ms); two-threaded
# instances whose idle threads block gain nothing over one. For CPU nodes that only ever see
# saturating load, set the instances to the node's cores (threads then resolve to 1).
PORTABLE_NETWORK_INSTANCES = 1
PORTABLE_NETWORK_THREADS = 0
PORTABLE_NETWORK_SPINNING = True


def network_config(
    entry: ModelEntry,
    variant: Variant,
    cpu_threads: int = PORTABLE_NETWORK_THREADS,
    cpu_instances: int = PORTABLE_NETWORK_INSTANCES,
) -> ConfigDict:
    """One template, two runtimes: the tensors and batching are identical in both variants."""
    config: ConfigDict = {
        "name": network_name(entry),
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [_image_tensor(entry)],
        "output": [_probabilities_tensor()],
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
    }
    if variant == "production":
        config |= {
            "backend": "onnxruntime",
            "default_model_filename": "model.onnx",
            "instance_group": [{"kind": "KIND_GPU", "count": 1}],
        }
    elif variant == "portable":
        config |= {
            "backend": "python",
            "instance_group": [{"kind": "KIND_CPU", "count": cpu_instances}],
            "parameters": _params(
                onnx_file="model.onnx",
                intra_op_threads=cpu_threads,
                intra_op_spinning=int(PORTABLE_NETWORK_SPINNING),
            ),
        }
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return config


def postprocess_config(entry: ModelEntry) -> ConfigDict:
    return {
        "name": postprocess_name(entry),
        "backend": "python",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [_probabilities_tensor()],
        "output": _top_k_tensors(),
        "dynamic_batching": {},
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": _params(top_k=TOP_K, labels_file="labels.txt"),
    }


def to_pbtxt(config: ConfigDict) -> str:
    """Render through Triton's ModelConfig message: unknown fields or bad values raise here."""
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)


def parse_pbtxt(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())
