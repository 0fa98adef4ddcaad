"""The ensemble's BYTES input: one encoded image per request, from tritonclient or perf_analyzer's JSON file.

perf_analyzer takes a `b64` value for a BYTES tensor as the tensor's raw wire form, not as the
string itself: each element must carry Triton's 4-byte little-endian length prefix. Without it
the server reads the first bytes of the PNG signature as a length and refuses the request
("expecting string of length 1196314761"). One "data" step per photograph; perf_analyzer cycles
through the steps, so every request carries one real, full-size encoded image.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType

import numpy as np

from model_repository.configs import IMAGE_INPUT
from model_repository.install import bytes_element


def image_tensor(grpcclient: ModuleType, data: bytes):
    """One encoded image as the IMAGE input of one request, for tritonclient.grpc or tritonclient.grpc.aio."""
    tensor = grpcclient.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    return tensor


def input_data(photos: list[Path]) -> dict[str, list[dict[str, dict[str, str]]]]:
    """The JSON document perf_analyzer reads with --input-data."""
    steps = [{IMAGE_INPUT: {"b64": base64.b64encode(bytes_element(p.read_bytes())).decode("ascii")}} for p in photos]
    return {"data": steps}


def write_input_data(photos: list[Path], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_data(photos)))
    return path
