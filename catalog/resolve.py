"""Catalog entry -> the preprocessing that serves it, resolved in one place (as timm's resolve_data_config).

Everything that turns a catalog entry into preprocessing comes through here:

* `preprocess_parameters`: the served preprocess step's string parameters. configs.py writes them
  into config.pbtxt, and the Triton model parses them back with `Preprocessor.from_parameters`
  (its directory carries the preprocess package, not the catalog);
* `preprocessor`: the same `Preprocessor` built from those same parameters, for everything that cuts
  crops outside the server (export's parity check and calibration, the warmup crop, benchmarks,
  tests), optionally with the catalog's mean and std for PaddleClas's own float32 normalization;
* `photo_crops`, `paddleclas_input`, `photo_batch`: the catalog's sample photographs as a model's
  input, uint8 crops as the network takes them, or float32 as PaddleClas feeds its network.

Unknown names stop in catalog.get with the closest names; nothing here falls back to a default.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from catalog.models import ModelEntry, get
from catalog.reference import sample_photo_paths
from preprocess import DEFAULT_MAX_PIXELS, Preprocessor


def _entry(model: ModelEntry | str) -> ModelEntry:
    return get(model) if isinstance(model, str) else model


def preprocess_parameters(model: ModelEntry | str) -> dict[str, str]:
    """The parameters of the model's preprocess step, as config.pbtxt carries them (strings)."""
    prep = _entry(model).preprocessing
    return {
        "resize_short": str(prep.resize_short),
        "crop": str(prep.crop),
        "resize": prep.resize,
        "max_pixels": str(DEFAULT_MAX_PIXELS),
    }


def preprocessor(model: ModelEntry | str, normalize: bool = False) -> Preprocessor:
    """The Preprocessor the server builds for the model: decode, resize and crop to uint8.

    With `normalize`, the catalog's mean and std too, so `normalize`/`tensor` give PaddleClas's
    float32 NormalizeImage and ToCHWImage: the reference the network's in-graph normalization is
    checked against, and what Paddle Inference is fed. The served step never normalizes.
    """
    entry = _entry(model)
    served = Preprocessor.from_parameters(preprocess_parameters(entry))
    if not normalize:
        return served
    return dataclasses.replace(served, mean=entry.preprocessing.mean, std=entry.preprocessing.std)


def photo_crops(model: ModelEntry | str) -> np.ndarray:
    """The sample photographs as the served step cuts them: uint8 N x S x S x 3, the network's input."""
    cut = preprocessor(model)
    return np.stack([cut.crop_encoded(path.read_bytes()) for path in sample_photo_paths()])


def paddleclas_input(model: ModelEntry | str, crops: np.ndarray) -> np.ndarray:
    """uint8 N x S x S x 3 crops -> PaddleClas's network input, float32 N x 3 x S x S (NormalizeImage, ToCHWImage)."""
    return preprocessor(model, normalize=True).normalize(crops)


def photo_batch(model: ModelEntry | str) -> np.ndarray:
    """The sample photographs as PaddleClas feeds its network: float32 N x 3 x S x S, from `photo_crops`."""
    return paddleclas_input(model, photo_crops(model))
