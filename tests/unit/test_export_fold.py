"""NextViT's merge_bn(): the folded network computes what the unfolded one did, to rounding level.

Three checks, so a pass means something: float64 shows the folding algebra is exact (differences
at 1e-13, float64 rounding), float32 shows the served precision stays within FOLD_ATOL, and a
deliberately broken fold (one block left with its BatchNorm applied twice) must be refused.
"""

from __future__ import annotations

import copy

import numpy as np
import paddle
import pytest

import catalog
from catalog.resolve import photo_batch
from export import fold, network

ENTRY = catalog.get("NextViT_small_224")


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return photo_batch(ENTRY)


@pytest.fixture(scope="module")
def calibrated() -> network.SoftmaxClassifier:
    """Built once (seeded random weights, calibrated on the photographs); tests fold deep copies."""
    return network.build(ENTRY, seed=0)


def pre_norms(classifier: paddle.nn.Layer) -> int:
    """BatchNorms merge_bn should fold: one per NCB block, two or three per NTB block (PaddleClas's code)."""
    count = 0
    for layer in classifier.backbone.sublayers():
        if type(layer).__name__ == "NCB":
            count += 1
        elif type(layer).__name__ == "NTB":
            count += 2 + (layer.e_mhsa.sr_ratio > 1)
    return count


def test_folded_network_matches_unfolded_in_float32(photos: np.ndarray, calibrated: paddle.nn.Layer) -> None:
    classifier = copy.deepcopy(calibrated)
    expected_folds = pre_norms(classifier)
    report = fold.fold(classifier, photos)
    assert report.folded_batchnorms == expected_folds > 0
    assert 0 < report.max_abs_diff <= fold.FOLD_ATOL  # not bit-identical: the arithmetic really changed
    assert report.top1_agreement == 1.0


def test_folding_is_exact_algebra_in_float64(photos: np.ndarray, calibrated: paddle.nn.Layer) -> None:
    classifier = copy.deepcopy(calibrated)
    classifier.to(dtype="float64")
    report = fold.fold(classifier, photos[:2].astype(np.float64))
    assert report.max_abs_diff <= 1e-10


def test_a_wrong_fold_is_refused(
    photos: np.ndarray, calibrated: paddle.nn.Layer, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = copy.deepcopy(calibrated)
    backbone = classifier.backbone
    real_merge = backbone.merge_bn

    def merge_but_keep_one_norm() -> None:
        real_merge()
        block = next(layer for layer in backbone.sublayers() if type(layer).__name__ == "NTB")
        block.is_bn_merged = False  # its BatchNorms now run on top of weights that already contain them

    monkeypatch.setattr(backbone, "merge_bn", merge_but_keep_one_norm)
    with pytest.raises(fold.FoldError, match="changed the network") as failure:
        fold.fold(classifier, photos[:2])
    assert "limit 1e-05" in str(failure.value)


def test_vit_offers_no_fold() -> None:
    vit = network.SoftmaxClassifier(network.build_backbone(catalog.get("ViT_small_patch16_224")))
    assert not fold.can_fold(vit)
    with pytest.raises(fold.FoldError, match="has no merge_bn"):
        fold.fold(vit, np.zeros((1, 3, 224, 224), np.float32))
