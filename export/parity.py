"""ONNX Runtime against Paddle Inference on real photographs: the proof an export is faithful.

Both engines get the catalog's sample photographs as each is served. ONNX Runtime gets the uint8
crops the served preprocess step makes (the exported graph normalizes them itself, see
export/normalization.py); Paddle Inference gets PaddleClas's input, those same crops normalized by
PaddleClas's float32 formula (preprocess.normalize) and made channels first. So the comparison covers
the normalization prefix as well as the conversion. The limit is the catalog's per-model
`parity_atol`. A miss is an error and the export writes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from catalog import ModelEntry
from catalog.reference import sample_photo_paths
from model_repository import configs
from model_repository.configs import NETWORK_INPUT, TOP_K
from preprocess import Preprocessor, normalize


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
    """The Preprocessor the server builds for `entry`: from its preprocess model's config parameters.

    It decodes, resizes and crops (`pixels`); it does not normalize (no mean and std).
    """
    parameters = configs.preprocess_config(entry)["parameters"]
    return Preprocessor.from_parameters({key: value["string_value"] for key, value in parameters.items()})


def photo_crops(entry: ModelEntry) -> np.ndarray:
    """The sample photographs as the served preprocess step cuts them: uint8 N x S x S x 3, the network's input."""
    preprocessor = preprocessor_for(entry)
    return np.stack([preprocessor.pixels(preprocessor.decode(path.read_bytes())) for path in sample_photo_paths()])


def paddleclas_input(entry: ModelEntry, crops: np.ndarray) -> np.ndarray:
    """uint8 N x S x S x 3 crops -> PaddleClas's network input, float32 N x 3 x S x S.

    NormalizeImage's float32 arithmetic with the catalog's mean and std, then ToCHWImage: the reference
    the exported graph's normalization is measured against, and what Paddle Inference is fed.
    """
    prep = entry.preprocessing
    mean = np.array(prep.mean, np.float32).reshape(1, 1, 3)
    std = np.array(prep.std, np.float32).reshape(1, 1, 3)
    return np.ascontiguousarray(normalize(crops, mean, std).transpose(0, 3, 1, 2))


def photo_batch(entry: ModelEntry) -> np.ndarray:
    """The sample photographs as PaddleClas feeds its network: float32 N x 3 x S x S, from `photo_crops`."""
    return paddleclas_input(entry, photo_crops(entry))


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


def run_onnx(onnx_path: Path, crops: np.ndarray, threads: int = 2) -> np.ndarray:
    """The exported model on uint8 N x S x S x 3 crops (`photo_crops`), as the server runs it; probabilities out."""
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


def check(entry: ModelEntry, program: Path, onnx_path: Path) -> ParityReport:
    crops = photo_crops(entry)
    onnx_probs = run_onnx(onnx_path, crops)
    paddle_probs = run_paddle_inference(program, paddleclas_input(entry, crops))
    report = compare(onnx_probs, paddle_probs, entry.parity_atol)
    if not report.passed:
        raise ParityError(f"{entry.name}: ONNX Runtime disagrees with Paddle Inference: {report.summary()}")
    return report
