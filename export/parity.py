"""ONNX Runtime against Paddle Inference on real photographs: the proof an export is faithful.

Both engines get the same preprocessed batch (the served preprocessing, applied to the catalog's
sample photographs). The limit is the catalog's per-model `parity_atol`. A miss is an error and
the export writes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catalog import ModelEntry
from catalog.reference import sample_photo_paths
from model_repository.configs import NETWORK_INPUT, TOP_K
from preprocess import Preprocessor


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with Paddle Inference beyond the tolerance."""


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


def preprocessor_for(entry: ModelEntry) -> Preprocessor:
    p = entry.preprocessing
    return Preprocessor(p.resize_short, p.crop, p.resize, p.mean, p.std)


def photo_batch(entry: ModelEntry) -> np.ndarray:
    """The sample photographs, preprocessed for `entry`, as N x 3 x S x S float32."""
    preprocessor = preprocessor_for(entry)
    return np.stack([preprocessor(path.read_bytes()) for path in sample_photo_paths()])


def run_paddle_inference(program: Path, batch: np.ndarray, threads: int = 2) -> np.ndarray:
    import paddle.inference as pi

    config = pi.Config(str(program), str(program.parent / "inference.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    config.disable_glog_info()
    predictor = pi.create_predictor(config)
    (input_name,) = predictor.get_input_names()
    handle = predictor.get_input_handle(input_name)
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(np.ascontiguousarray(batch))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def run_onnx(onnx_path: Path, batch: np.ndarray, threads: int = 2) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {NETWORK_INPUT: batch})[0]


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


def check(entry: ModelEntry, program: Path, onnx_path: Path) -> ParityReport:
    batch = photo_batch(entry)
    report = compare(run_onnx(onnx_path, batch), run_paddle_inference(program, batch), entry.parity_atol)
    if not report.passed:
        raise ParityError(f"{entry.name}: ONNX Runtime disagrees with Paddle Inference: {report.summary()}")
    return report
