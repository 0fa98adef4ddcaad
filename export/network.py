"""Build a catalog model with PaddleClas's own network code, as PaddleClas's exporter does.

The exporter wraps the backbone and appends a softmax, so the network outputs probabilities;
we do the same so served scores are the numbers PaddleClas users already know.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import paddle

from catalog import ModelEntry


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the architecture; the message names the first tensor."""


class SoftmaxClassifier(paddle.nn.Layer):
    def __init__(self, backbone: paddle.nn.Layer) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.nn.functional.softmax(self.backbone(x), axis=-1)


def build_backbone(entry: ModelEntry) -> paddle.nn.Layer:
    module = importlib.import_module(f"paddleclas.ppcls.arch.backbone.model_zoo.{entry.module}")
    return getattr(module, entry.arch)(class_num=1000)


def reinitialize(network: paddle.nn.Layer, seed: int) -> None:
    """Seeded, non-degenerate random weights for offline runs and runtime comparisons.

    PaddleClas's default initialisation makes NextViT's outputs nearly constant, and a comparison
    of two runtimes on near-constant outputs proves nothing. Matrices get N(0, 1/fan_in) so
    activations keep their scale through depth; norm scales stay near 1, BatchNorm running
    variances stay positive.
    """
    rng = np.random.default_rng(seed)
    for layer in network.sublayers(include_self=True):
        for name, param in layer.named_parameters(include_sublayers=False):
            shape = tuple(param.shape)
            if name == "_variance":
                value = rng.uniform(0.5, 1.5, shape)
            elif name == "_mean" or name == "bias":
                value = rng.normal(0.0, 0.1, shape)
            elif len(shape) == 1:  # norm scales
                value = rng.normal(1.0, 0.1, shape)
            elif isinstance(layer, paddle.nn.Linear):  # paddle stores Linear weights as [in, out]
                value = rng.normal(0.0, shape[0] ** -0.5, shape)
            elif isinstance(layer, paddle.nn.Conv2D):  # [out, in / groups, kh, kw]
                value = rng.normal(0.0, float(np.prod(shape[1:])) ** -0.5, shape)
            else:  # position embeddings, class tokens
                value = rng.normal(0.0, 0.02, shape)
            param.set_value(value.astype(np.float32))


# Spread of the logits after calibration: softmax outputs are soft (top-1 typically 0.05-0.5),
# so runtime comparisons see a real distribution rather than a saturated one-hot vector.
CALIBRATED_LOGIT_STD = 2.0


def calibrate_head(backbone: paddle.nn.Layer, input_size: int, seed: int) -> None:
    """Rescale the classifier head so random-weight logits have a fixed spread.

    Random BatchNorm statistics do not match real activations, so NextViT's random logits reach
    thousands and the softmax saturates to one-hot (every probability exactly 0 or 1), which
    hides any numerical difference between runtimes. Scaling only the last Linear layer fixes the
    output distribution and leaves the rest of the random network as it is.
    """
    linears = [layer for layer in backbone.sublayers() if isinstance(layer, paddle.nn.Linear)]
    heads = [layer for layer in linears if layer.weight.shape[1] == 1000]
    if len(heads) != 1:
        raise ValueError(f"expected one 1000-way classifier head, found {len(heads)}")
    (head,) = heads
    probe = np.random.default_rng(seed).standard_normal((2, 3, input_size, input_size)).astype(np.float32)
    backbone.eval()
    with paddle.no_grad():
        spread = float(backbone(paddle.to_tensor(probe)).numpy().std(axis=1).mean())
    scale = CALIBRATED_LOGIT_STD / spread
    head.weight.set_value(head.weight.numpy() * scale)
    head.bias.set_value(head.bias.numpy() * scale)


def load_weights(network: paddle.nn.Layer, weights: Path) -> None:
    """Load a PaddleClas `.pdparams` file, refusing any missing, extra or misshapen tensor."""
    state = paddle.load(str(weights))
    expected = network.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise WeightsMismatchError(f"{weights.name}: no tensor {key!r} (shape {list(tensor.shape)})")
        if list(state[key].shape) != list(tensor.shape):
            raise WeightsMismatchError(
                f"{weights.name}: tensor {key!r} has shape {list(state[key].shape)}, "
                f"the architecture needs {list(tensor.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WeightsMismatchError(f"{weights.name}: tensor {extra[0]!r} is not in the architecture")
    network.set_state_dict(state)


def build(entry: ModelEntry, weights: Path | None = None, seed: int | None = None) -> SoftmaxClassifier:
    """The catalog network with trained weights (a .pdparams file) or seeded random ones."""
    if (weights is None) == (seed is None):
        raise ValueError("give exactly one of weights or seed")
    backbone = build_backbone(entry)
    if weights is not None:
        load_weights(backbone, weights)
    else:
        reinitialize(backbone, seed)
        calibrate_head(backbone, entry.input_size, seed)
    classifier = SoftmaxClassifier(backbone)
    classifier.eval()
    return classifier


def save_inference_model(classifier: paddle.nn.Layer, entry: ModelEntry, directory: Path) -> Path:
    """paddle.jit.save as PaddleClas's exporter does: input [None, 3, S, S] float32.

    Returns the program file (inference.json with Paddle 3, inference.pdmodel with Paddle 2).
    """
    spec = paddle.static.InputSpec([None, 3, entry.input_size, entry.input_size], "float32", "x")
    static = paddle.jit.to_static(classifier, input_spec=[spec])
    paddle.jit.save(static, str(directory / "inference"))
    return find_program(directory)


def find_program(directory: Path) -> Path:
    """The inference program in a PaddleClas inference directory (either Paddle generation)."""
    for name in ("inference.json", "inference.pdmodel"):
        if (directory / name).is_file() and (directory / "inference.pdiparams").is_file():
            return directory / name
    raise FileNotFoundError(
        f"{directory} holds no PaddleClas inference model: expected inference.json or "
        "inference.pdmodel, plus inference.pdiparams"
    )
