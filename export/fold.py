"""NextViT in deployment form: fold the pre-norm BatchNorms into the layers after them, and prove it.

NextViT's blocks normalise with BatchNorm before the attention and MLP projections. In inference
a BatchNorm is a fixed per-channel affine map, so PaddleClas's `merge_bn()` folds it into the next
Linear or 1x1 convolution, which removes 2 of every 3 BatchNorms from the served graph (upstream
does this before its TensorRT export; PaddleClas's own exporter does not). The algebra is exact,
so the folded network may differ from the unfolded one only by float32 rounding: `fold` measures
that on the sample photographs and refuses anything larger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import paddle

from catalog.models import FOLD_ATOL
from export.errors import FoldError
from export.network import BATCHNORMS


@dataclass(frozen=True)
class FoldReport:
    folded_batchnorms: int  # BatchNorm layers that no longer run after merge_bn
    max_abs_diff: float  # of probabilities, folded against unfolded, on the sample photographs
    top1_agreement: float
    atol: float

    def summary(self) -> str:
        return (
            f"merge_bn folded {self.folded_batchnorms} BatchNorms: max |p_folded - p_unfolded| = "
            f"{self.max_abs_diff:.1e} (limit {self.atol:.0e}), top-1 agreement {self.top1_agreement:.0%}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def can_fold(classifier: paddle.nn.Layer) -> bool:
    """True for networks that offer PaddleClas's merge_bn (NextViT)."""
    return callable(getattr(classifier.backbone, "merge_bn", None))


def _probabilities(classifier: paddle.nn.Layer, batch: np.ndarray) -> tuple[np.ndarray, int]:
    """Probabilities on `batch`, and how many BatchNorm layers the forward pass did not run."""
    norms = [layer for layer in classifier.sublayers() if isinstance(layer, BATCHNORMS)]
    ran: set[int] = set()
    hooks = [norm.register_forward_post_hook(lambda layer, *_: ran.add(id(layer))) for norm in norms]
    classifier.eval()
    try:
        with paddle.no_grad():
            probabilities = classifier(paddle.to_tensor(batch)).numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return probabilities, len(norms) - len(ran)


def compare(before: np.ndarray, after: np.ndarray, folded: int, atol: float = FOLD_ATOL) -> FoldReport:
    return FoldReport(
        folded_batchnorms=folded,
        max_abs_diff=float(np.abs(before - after).max()),
        top1_agreement=float(np.mean(before.argmax(axis=1) == after.argmax(axis=1))),
        atol=atol,
    )


def fold(classifier: paddle.nn.Layer, batch: np.ndarray, atol: float = FOLD_ATOL) -> FoldReport:
    """merge_bn() in place, checked on `batch` against the network as it was; raises FoldError on a miss."""
    if not can_fold(classifier):
        raise FoldError(f"{type(classifier.backbone).__name__} has no merge_bn()")
    before, skipped_before = _probabilities(classifier, batch)
    classifier.backbone.merge_bn()
    after, skipped_after = _probabilities(classifier, batch)
    report = compare(before, after, skipped_after - skipped_before, atol)
    if report.folded_batchnorms == 0:
        raise FoldError("merge_bn() folded no BatchNorm")
    if report.max_abs_diff > atol or report.top1_agreement < 1.0:
        raise FoldError(f"folding the BatchNorms changed the network: {report.summary()}")
    return report
