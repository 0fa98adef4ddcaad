"""A deliberately wrong network: an exported one whose normalization reads the crop's colour channels reversed.

The smoke check (client/smoke.py) must fail on it while the repository still publishes the right
network's reference answer: the mistake a broken export or a BGR/RGB mix-up in a hand-made network
would make. The network is otherwise the exported one, byte for byte: the crop's channels are
reversed (a Gather over the last axis) just before the normalization prefix's first node
(export/normalization.py), so it normalizes blue as red and red as blue.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.normalization import PREFIX
from model_repository.configs import NETWORK_INPUT

REVERSED = "wrong_network/reversed_channels"


def reverse_colour_channels(onnx_path: Path) -> None:
    """Rewrite `onnx_path` (a new file renamed over it: a hard link's other names keep the right network)."""
    model = onnx.load(str(onnx_path))
    graph = model.graph
    (cast,) = [node for node in graph.node if node.name == PREFIX + "cast"]
    if list(cast.input) != [NETWORK_INPUT]:
        raise ValueError(f"{onnx_path}: the normalization's first node reads {list(cast.input)}, not {NETWORK_INPUT}")
    graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), REVERSED + "/order"))
    gather = helper.make_node("Gather", [NETWORK_INPUT, REVERSED + "/order"], [REVERSED], name=REVERSED, axis=3)
    cast.input[0] = REVERSED
    graph.node.insert(0, gather)
    onnx.checker.check_model(model)
    staged = onnx_path.with_name(onnx_path.name + ".wrong")
    onnx.save(model, str(staged))
    os.replace(staged, onnx_path)
