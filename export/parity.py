"""ONNX Runtime against Paddle Inference on real photographs: the proof an export is faithful.

Both engines get the catalog's sample photographs as each is served (catalog/resolve.py). ONNX
Runtime gets the uint8 crops the served preprocess step makes (the exported graph normalizes them
itself, see export/normalization.py); Paddle Inference gets PaddleClas's input, those same crops
normalized by PaddleClas's float32 formula and made channels first. So the comparison covers
the normalization prefix as well as the conversion. The limit is the catalog's per-model
`parity_atol`. A miss is an error and the export writes nothing.

The same run records the reference answer of the smoke photograph (the server's warmup JPEG, which
`python -m client smoke` and the helm test send): Paddle Inference's REFERENCE_DEPTH most probable
classes and their probabilities, checked against ONNX Runtime like the sample photographs. The
install writes them into the ensembles' parameters, where the smoke check reads them.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catalog import ModelEntry
from catalog.resolve import paddleclas_input, photo_crops, preprocessor
from export.errors import ParityError
from model_repository.configs import NETWORK_INPUT, TOP_K

# Classes the smoke reference records: twice the served top-k, so the check can tell a class that
# entered the served top-5 through a near-tie from one the reference ranks far below.
REFERENCE_DEPTH = 2 * TOP_K


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    top1_agreement: float
    top5_agreement: float
    atol: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top1_agreement == 1.0 and self.top5_agreement == 1.0

    def summary(self) -> str:
        return (
            f"{self.images} photographs: max |p_onnx - p_paddle| = {self.max_abs_diff:.2e} "
            f"(limit {self.atol:.0e}), top-1 agreement {self.top1_agreement:.0%}, "
            f"top-5 agreement {self.top5_agreement:.0%}"
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"passed": self.passed}


def run_onnx(onnx_path: Path, crops: np.ndarray, threads: int = 2) -> np.ndarray:
    """The exported model on uint8 N x S x S x 3 crops (catalog.resolve.photo_crops), as the server runs it."""
    import onnxruntime as ort

    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[3] != 3:
        raise ValueError(f"the network takes uint8 N x S x S x 3 crops, got {crops.dtype} {crops.shape}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {NETWORK_INPUT: crops})[0]


def top_k(probabilities: np.ndarray, k: int = TOP_K) -> np.ndarray:
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :k]


def compare(onnx_probs: np.ndarray, paddle_probs: np.ndarray, atol: float) -> ParityReport:
    onnx_top, paddle_top = top_k(onnx_probs), top_k(paddle_probs)
    return ParityReport(
        images=len(onnx_probs),
        max_abs_diff=float(np.abs(onnx_probs - paddle_probs).max()),
        top1_agreement=float(np.mean(onnx_top[:, 0] == paddle_top[:, 0])),
        top5_agreement=float(np.mean(np.all(onnx_top == paddle_top, axis=1))),
        atol=atol,
    )


def reference_answer(probabilities: np.ndarray, photo: bytes) -> dict[str, object]:
    """The record of one photograph's reference answer: its hash and the REFERENCE_DEPTH best classes."""
    best = np.argsort(-probabilities, kind="stable")[:REFERENCE_DEPTH]
    return {
        "photo_sha256": hashlib.sha256(photo).hexdigest(),
        "engine": "Paddle Inference",
        "class_ids": [int(c) for c in best],
        "scores": [float(probabilities[c]) for c in best],
    }


def check(entry: ModelEntry, program: Path, onnx_path: Path, smoke_photo: bytes) -> tuple[ParityReport, dict]:
    """Parity on the sample photographs, and the smoke photograph's reference answer (also within parity)."""
    from export.network import PaddlePredictor

    crops = photo_crops(entry)
    smoke_crop = preprocessor(entry).crop_encoded(smoke_photo)[None]
    onnx_probs = run_onnx(onnx_path, np.concatenate([crops, smoke_crop]))
    paddle_probs = PaddlePredictor(program, threads=2)(paddleclas_input(entry, np.concatenate([crops, smoke_crop])))
    report = compare(onnx_probs[:-1], paddle_probs[:-1], entry.parity_atol)
    if not report.passed:
        raise ParityError(f"{entry.name}: ONNX Runtime disagrees with Paddle Inference: {report.summary()}")
    smoke = compare(onnx_probs[-1:], paddle_probs[-1:], entry.parity_atol)
    if not smoke.passed:
        raise ParityError(
            f"{entry.name}: ONNX Runtime disagrees with Paddle Inference on the smoke photo: {smoke.summary()}"
        )
    return report, reference_answer(paddle_probs[-1], smoke_photo)
