"""Build a catalog model with PaddleClas's own network code, as PaddleClas's exporter does.

The exporter wraps the backbone and appends a softmax, so the network outputs probabilities;
we do the same so served scores are the numbers PaddleClas users already know.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Literal

import numpy as np
import paddle

from catalog import ModelEntry
from export.errors import SourceError, WeightsMismatchError


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
    variances stay positive (`build` then replaces the running statistics with measured ones:
    see calibrate_batchnorm).
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

BATCHNORMS = (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D)


def calibrate_batchnorm(backbone: paddle.nn.Layer, batch: np.ndarray) -> None:
    """Set every BatchNorm's running statistics to those of its input on `batch`, as training would.

    With random running statistics NextViT's activations grow by orders of magnitude through depth
    (logits reach thousands): the network becomes chaotic, float32 rounding is amplified until
    two correct runtimes, or merge_bn's exact algebra, differ by 1e-3 in probability, and a test
    can no longer tell rounding from a bug. Statistics measured on real photographs keep every
    activation at the scale a trained network has. One forward pass with the BatchNorms alone in
    training mode and momentum 0 stores exactly the batch statistics (dropout stays off).
    """
    norms = [layer for layer in backbone.sublayers() if isinstance(layer, BATCHNORMS)]
    if not norms:
        return
    momenta = [norm._momentum for norm in norms]
    backbone.eval()
    for norm in norms:
        norm.train()
        norm._momentum = 0.0
    try:
        with paddle.no_grad():
            backbone(paddle.to_tensor(batch))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm._momentum = momentum
        backbone.eval()


def calibrate_head(backbone: paddle.nn.Layer, batch: np.ndarray) -> None:
    """Rescale the classifier head so random-weight logits on `batch` have a fixed spread.

    Random weights give logits of arbitrary scale: too large and the softmax saturates to one-hot
    (every probability exactly 0 or 1), which hides any numerical difference between runtimes; too
    small and every probability is 1/1000. Scaling only the last Linear layer fixes the output
    distribution and leaves the rest of the random network as it is.
    """
    linears = [layer for layer in backbone.sublayers() if isinstance(layer, paddle.nn.Linear)]
    heads = [layer for layer in linears if layer.weight.shape[1] == 1000]
    if len(heads) != 1:
        raise ValueError(f"expected one 1000-way classifier head, found {len(heads)}")
    (head,) = heads
    backbone.eval()
    with paddle.no_grad():
        spread = float(backbone(paddle.to_tensor(batch)).numpy().std(axis=1).mean())
    scale = CALIBRATED_LOGIT_STD / spread
    head.weight.set_value(head.weight.numpy() * scale)
    head.bias.set_value(head.bias.numpy() * scale)


def load_weights(network: paddle.nn.Layer, weights: Path) -> None:
    """Load a PaddleClas `.pdparams` file, refusing any missing, extra or misshapen tensor."""
    try:
        state = paddle.load(str(weights))
    except Exception as err:  # paddle raises pickle, EOF, value and runtime errors alike
        raise WeightsMismatchError(f"{weights.name} is not a readable PaddlePaddle weights file ({err})") from err
    if not isinstance(state, dict) or not state:
        raise WeightsMismatchError(f"{weights.name} holds no tensors by name (found {type(state).__name__})")
    expected = network.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise WeightsMismatchError(
                f"{weights.name}: no tensor {key!r} (the architecture needs {list(tensor.shape)})"
            )
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
    """The catalog network with trained weights (a .pdparams file) or seeded random ones.

    Random weights are calibrated on the sample photographs (BatchNorm statistics, then the head),
    so the random network behaves numerically like a trained one.
    """
    from catalog.resolve import photo_batch

    if (weights is None) == (seed is None):
        raise ValueError("give exactly one of weights or seed")
    backbone = build_backbone(entry)
    if weights is not None:
        load_weights(backbone, weights)
    else:
        reinitialize(backbone, seed)
        batch = photo_batch(entry)
        calibrate_batchnorm(backbone, batch)
        calibrate_head(backbone, batch)
    classifier = SoftmaxClassifier(backbone)
    classifier.eval()
    return classifier


ProgramFormat = Literal["json", "pdmodel"]


def save_inference_model(
    classifier: paddle.nn.Layer,
    entry: ModelEntry,
    directory: Path,
    program_format: ProgramFormat = "json",
    input_name: str = "x",
) -> Path:
    """paddle.jit.save as PaddleClas's exporter does: input [None, 3, S, S] float32.

    "json" is Paddle 3's program (inference.json); "pdmodel" is the legacy program of Paddle 2
    (inference.pdmodel), the form of the official inference tarballs, written with the old IR.
    Paddle 3.3.1 can trace only NextViT in the old IR: it binds `Tensor.matmul` and GELU to the
    new IR's ops, so ViT fails there with "must be Value, but got Variable". Returns the program.
    """
    spec = paddle.static.InputSpec([None, 3, entry.input_size, entry.input_size], "float32", input_name)
    legacy = program_format == "pdmodel"
    with paddle.pir_utils.OldIrGuard() if legacy else contextlib.nullcontext():
        # The old IR has only the AST translator (full_graph); Paddle 3 defaults to bytecode tracing.
        static = paddle.jit.to_static(classifier, input_spec=[spec], full_graph=legacy)
        paddle.jit.save(static, str(directory / "inference"))
    program = directory / f"inference.{program_format}"
    if not program.is_file():
        raise FileNotFoundError(f"paddle.jit.save wrote no {program.name} in {directory}")
    return program


def _program_in(directory: Path) -> Path | None:
    for name in ("inference.json", "inference.pdmodel"):
        if (directory / name).is_file() and (directory / "inference.pdiparams").is_file():
            return directory / name
    return None


def find_program(directory: Path) -> Path:
    """The inference program in a PaddleClas inference directory (either Paddle generation).

    Looks in `directory` and, as an unpacked `<Name>_infer.tar` has it, in a single subdirectory.
    """
    if not directory.is_dir():
        raise SourceError(f"{directory} is not a directory")
    found = _program_in(directory)
    if found is None:
        nested = [p for p in (_program_in(d) for d in sorted(directory.iterdir()) if d.is_dir()) if p]
        if len(nested) > 1:
            raise SourceError(f"{directory} holds {len(nested)} inference models: point at one of them")
        found = nested[0] if nested else None
    if found is None:
        raise SourceError(
            f"{directory} holds no PaddleClas inference model: expected inference.json or "
            "inference.pdmodel, plus inference.pdiparams"
        )
    return found


class PaddlePredictor:
    """Paddle Inference on CPU for a saved program, created once for many batches.

    The one Paddle Inference runner: export's parity check and the client's `evaluate --reference`.
    """

    def __init__(self, program: Path, threads: int | None = None) -> None:
        import paddle.inference as pi

        config = pi.Config(str(program), str(program.parent / "inference.pdiparams"))
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads or os.cpu_count() or 1)
        config.disable_glog_info()
        self.predictor = pi.create_predictor(config)
        (input_name,) = self.predictor.get_input_names()
        self.input = self.predictor.get_input_handle(input_name)
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.input.reshape(list(batch.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(batch))
        self.predictor.run()
        return self.output.copy_to_cpu()
