"""The 19 PaddleClas ViT and NextViT ImageNet classifiers this project serves.

Every other part of the repository (export, model configs, preprocessing, tests, docs tables)
reads these entries; no other file restates a size, a mean or a published figure.

Sources: PaddleClas `ppcls/configs/ImageNet/{NextViT,VisionTransformer}/*.yaml` for preprocessing,
`docs/zh_CN/models/ImageNet1k/{NextViT,ViT}.md` for the published figures (top-1/top-5 are
PaddleClas's own evaluation; FLOPs are multiply-accumulates in G; params in M; latency is V100,
TensorRT FP32, ms per batch of 1/4/8). `_ssld` NextViT weights share the base architecture and
preprocessing (PaddleClas ships no separate config for them).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

# Official downloads; a mirror (python -m export --mirror URL) replaces OFFICIAL_HOST and keeps the paths.
OFFICIAL_HOST = "https://paddle-imagenet-models-name.bj.bcebos.com"
WEIGHTS_URL = OFFICIAL_HOST + "/dygraph/{name}_pretrained.pdparams"
INFERENCE_URL = OFFICIAL_HOST + "/dygraph/inference/{name}_infer.tar"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# Largest |difference| of any probability allowed between ONNX Runtime and Paddle Inference for
# the same exported network: far above float32 rounding (the measured differences are in docs/models.md,
# "Parity"), far below a real conversion error (a wrong epsilon, a dropped op: 1e-3 or more).
PARITY_ATOL = 1e-4
# Largest |difference| of a served probability from the reference the export recorded for the smoke
# photograph (Paddle Inference on the same crop; `python -m client smoke`, the helm test), by the
# precision the network is served in. fp32 is ten times PARITY_ATOL: on CPU the served ONNX Runtime is
# the parity check's engine (within PARITY_ATOL), while GPU kernels (cuDNN's algorithm choice, TF32
# where the runtime enables it) round differently; fp16 networks carry 10-bit mantissas through every
# layer. Both are first bounds, unverified on a GPU: replace them with measured ones. A wrong network
# (swapped colour channels, another seed) moves probabilities of random-weight exports by 0.1 to 1.
SERVED_ATOL: dict[str, float] = {"fp32": 1e-3, "fp16": 3e-2}
# Largest |difference| of any probability between the folded and the unfolded network (export/fold.py):
# ten times tighter than PARITY_ATOL. Measured differences are 1e-8 to 1e-7 (float32 rounding of the
# reordered arithmetic, docs/models.md); leaving one block unfolded, or folding a BatchNorm into the
# wrong layer, moves probabilities by 1e-2 or more (tests/unit/test_export_fold.py).
FOLD_ATOL = 1e-5
# The FP16 network's acceptance rule at export (export/fp16.py; not PARITY_ATOL: FP16 rounds every
# activation). FP16's own rounding moves the probabilities of these networks by up to 7e-2 (docs/models.md,
# the FP16 price; the largest moves are on confident images, e.g. 0.642 -> 0.623), 2e-3 at most on the
# photographs the export checks; a conversion error (overflow to inf or NaN, a wrong cast) moves them
# by far more and pushes the FP32 class out of the top five.
FP16_ATOL = 0.1

ResizeBackend = Literal["pillow-bicubic", "opencv-linear"]


@dataclass(frozen=True)
class Preprocessing:
    """How PaddleClas fed the network when it measured the published accuracy."""

    resize_short: int
    crop: int
    resize: ResizeBackend
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Published:
    """Figures from PaddleClas's model documents, kept to compare measured values against."""

    top1: float
    top5: float | None
    flops_g: float
    params_m: float
    v100_trt_fp32_ms: tuple[float, float, float] | None = None  # batch 1, 4, 8


@dataclass(frozen=True)
class ModelEntry:
    name: str  # PaddleClas's name, e.g. "NextViT_small_224_ssld"
    family: Literal["NextViT", "ViT"]
    module: str  # module under paddleclas.ppcls.arch.backbone.model_zoo
    arch: str  # network builder in that module
    input_size: int
    preprocessing: Preprocessing
    published: Published
    parity_atol: float = PARITY_ATOL  # per model, so one model can be loosened without the others

    @property
    def triton_name(self) -> str:
        """Ensemble name clients call: lower-cased catalog name."""
        return self.name.lower()

    @property
    def weights_url(self) -> str:
        return WEIGHTS_URL.format(name=self.name)

    @property
    def inference_url(self) -> str:
        return INFERENCE_URL.format(name=self.name)


def _nextvit_preprocessing(size: int) -> Preprocessing:
    # NextViT configs: ResizeImage(resize_short=256 or 384, backend=pil, interpolation=bicubic),
    # CropImage(size), NormalizeImage(ImageNet mean/std, scale 1/255).
    return Preprocessing(256 if size == 224 else 384, size, "pillow-bicubic", IMAGENET_MEAN, IMAGENET_STD)


def _vit_preprocessing(size: int) -> Preprocessing:
    # ViT configs: ResizeImage(resize_short=256 or 384) with the default cv2 bilinear backend,
    # CropImage(size), NormalizeImage(mean 0.5, std 0.5, scale 1/255).
    return Preprocessing(256 if size == 224 else 384, size, "opencv-linear", HALF, HALF)


def _nextvit(name: str, published: Published) -> ModelEntry:
    arch = name.removesuffix("_ssld")
    size = int(arch.rsplit("_", 1)[1])
    return ModelEntry(name, "NextViT", "nextvit", arch, size, _nextvit_preprocessing(size), published)


def _vit(name: str, published: Published) -> ModelEntry:
    size = int(name.rsplit("_", 1)[1])
    return ModelEntry(name, "ViT", "vision_transformer", name, size, _vit_preprocessing(size), published)


_ENTRIES: tuple[ModelEntry, ...] = (
    _nextvit("NextViT_small_224", Published(0.8248, 0.9616, 5.79, 31.80, (7.76, 10.86, 14.20))),
    _nextvit("NextViT_base_224", Published(0.8324, 0.9658, 8.26, 44.88, (12.02, 16.21, 20.63))),
    _nextvit("NextViT_large_224", Published(0.8363, 0.9661, 10.73, 57.95, (16.51, 21.91, 27.25))),
    _nextvit("NextViT_small_384", Published(0.8401, 0.9698, 17.00, 31.80)),
    _nextvit("NextViT_base_384", Published(0.8465, 0.9723, 24.27, 44.88)),
    _nextvit("NextViT_large_384", Published(0.8492, 0.9728, 31.53, 57.95)),
    _nextvit("NextViT_small_224_ssld", Published(0.8472, 0.9734, 5.79, 31.80, (7.76, 10.86, 14.20))),
    _nextvit("NextViT_base_224_ssld", Published(0.8500, 0.9753, 8.26, 44.88, (12.02, 16.21, 20.63))),
    _nextvit("NextViT_large_224_ssld", Published(0.8536, 0.9762, 10.73, 57.95, (16.51, 21.91, 27.25))),
    _nextvit("NextViT_small_384_ssld", Published(0.8597, 0.9790, 17.00, 31.80)),
    _nextvit("NextViT_base_384_ssld", Published(0.8634, 0.9806, 24.27, 44.88)),
    _nextvit("NextViT_large_384_ssld", Published(0.8654, 0.9814, 31.53, 57.95)),
    _vit("ViT_small_patch16_224", Published(0.7769, 0.9342, 9.41, 48.60, (3.71, 9.05, 16.72))),
    _vit("ViT_base_patch16_224", Published(0.8195, 0.9617, 16.85, 86.42, (6.12, 14.84, 28.51))),
    _vit("ViT_base_patch16_384", Published(0.8414, 0.9717, 49.35, 86.42, (14.15, 48.38, 95.06))),
    _vit("ViT_base_patch32_384", Published(0.8176, 0.9613, 12.66, 88.19, (4.94, 13.43, 24.08))),
    _vit("ViT_large_patch16_224", Published(0.8323, 0.9650, 59.65, 304.12, (15.53, 49.50, 94.09))),
    _vit("ViT_large_patch16_384", Published(0.8513, 0.9736, 174.70, 304.12, (39.51, 152.46, 304.06))),
    _vit("ViT_large_patch32_384", Published(0.8153, 0.9608, 44.24, 306.48, (11.44, 36.09, 70.63))),
)

CATALOG: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


class UnknownModelError(KeyError):
    """A name that is not in the catalog; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def get(name: str) -> ModelEntry:
    """Look a model up by PaddleClas name or by its lower-cased Triton name.

    Unknown names stop here with suggestions instead of falling back to a default: serving a
    model with another model's preprocessing is the silent failure this catalog exists to prevent.
    """
    if name in CATALOG:
        return CATALOG[name]
    by_lower = {entry.triton_name: entry for entry in _ENTRIES}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name, list(CATALOG), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModelError(f"unknown model {name!r}: {hint}valid names: {', '.join(CATALOG)}")


def served_atol(precision: str) -> float:
    """The smoke check's tolerance for a network served in `precision` (SERVED_ATOL); unknown names refused."""
    try:
        return SERVED_ATOL[precision.lower()]
    except KeyError:
        raise ValueError(
            f"no served tolerance for precision {precision!r}: expected one of {sorted(SERVED_ATOL)}"
        ) from None
