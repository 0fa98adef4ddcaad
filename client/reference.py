"""`evaluate --reference`: PaddleClas's own deployment path, run in-process on the evaluation list.

Each image goes through PaddleClas's `deploy/python/preprocess.py` operators (built by its own
`create_operators` from a transform list derived from the catalog entry, as its Infer.transforms
configs have them) and then through Paddle Inference on the model's Paddle inference program: an
inference-model directory or `<Name>_infer.tar` given with --paddle-model, or by default the program
rebuilt from the served model's export record exactly as the export built it (seeded random weights
or a .pdparams file: build, calibrate, fold NextViT's BatchNorms, paddle.jit.save). The outcomes are
per-image records like the served ones, so evaluate_report.agreement compares the two.

Paddle and PaddleClas are imported only here and only when the reference runs: the rest of the
client does not need them.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from catalog import ModelEntry, Preprocessing
from model_repository.configs import TOP_K, network_name

Record = dict
EXPORT_RECORD = "export.json"  # model_repository.install.EXPORT_RECORD: what the export wrote beside the network

# How each catalog resize backend is spelled in PaddleClas's ResizeImage arguments; "opencv-linear" is its
# default (backend cv2, no interpolation given, which ResizeImage maps to cv2.INTER_LINEAR).
RESIZE_ARGUMENTS: dict[str, dict[str, str]] = {
    "pillow-bicubic": {"interpolation": "bicubic", "backend": "pil"},
    "opencv-linear": {},
}


class ReferenceError(RuntimeError):
    """The reference network cannot be found or rebuilt."""


def paddleclas_transforms(prep: Preprocessing) -> list[dict]:
    """PaddleClas's Infer.transforms for a model fed as `prep` says: the argument of create_operators."""
    if prep.resize not in RESIZE_ARGUMENTS:
        raise ValueError(f"no PaddleClas ResizeImage arguments for resize backend {prep.resize!r}")
    return [
        {"DecodeImage": {"to_rgb": True, "channel_first": False}},
        {"ResizeImage": {"resize_short": prep.resize_short, **RESIZE_ARGUMENTS[prep.resize]}},
        {"CropImage": {"size": prep.crop}},
        {"NormalizeImage": {"scale": "1.0/255.0", "mean": list(prep.mean), "std": list(prep.std), "order": ""}},
        {"ToCHWImage": None},
    ]


def paddleclas_operators(entry: ModelEntry) -> Callable[[bytes], np.ndarray]:
    """Encoded image -> float32 3 x S x S, by PaddleClas's deploy/python operators."""
    from paddleclas.deploy.python.preprocess import create_operators

    operators = create_operators(paddleclas_transforms(entry.preprocessing))

    def apply(data: bytes) -> np.ndarray:
        value: object = data
        for operator in operators:
            value = operator(value)
        return np.asarray(value, np.float32)

    return apply


def export_source(repository: Path, entry: ModelEntry) -> dict:
    """The `source` of the served model's export record in an installed repository."""
    path = repository / network_name(entry) / EXPORT_RECORD
    try:
        record = json.loads(path.read_text("utf-8"))
    except OSError as err:
        raise ReferenceError(
            f"no export record of {entry.triton_name} at {path} ({err.strerror or err}): give --repository, "
            "the repository the server serves, or --paddle-model DIR"
        ) from err
    source = record.get("source")
    if not isinstance(source, dict) or source.get("kind") not in ("random", "pdparams", "inference"):
        raise ReferenceError(f"{path} records no source the reference can rebuild from: {source!r}")
    return source


def _inference_program(path: Path, work: Path) -> Path:
    """The program of an inference-model directory, or of a `<Name>_infer.tar` unpacked into `work`."""
    from export import download, network

    if path.is_file():
        return network.find_program(download.unpack_inference(path, work / "unpacked"))
    return network.find_program(path)


def rebuild_program(entry: ModelEntry, source: dict, work: Path) -> Path:
    """The Paddle inference program the export converted, rebuilt from its record's source into `work`.

    As export.pipeline._paddle_side: an inference model as given; otherwise network.build (seeded random
    weights calibrated on the sample photographs, or the .pdparams file), merge_bn for NextViT, then
    paddle.jit.save.
    """
    from catalog.resolve import photo_batch
    from export import fold, network

    if source["kind"] == "inference":
        return _inference_program(Path(source["path"]), work)
    if source["kind"] == "pdparams":
        weights = Path(source["path"])
        if not weights.is_file():
            raise ReferenceError(f"the export's weights file {weights} is not there: give --paddle-model DIR")
        classifier = network.build(entry, weights=weights)
    else:
        classifier = network.build(entry, seed=int(source["seed"]))
    if fold.can_fold(classifier):
        fold.fold(classifier, photo_batch(entry))
    (work / "paddle").mkdir(parents=True, exist_ok=True)
    return network.save_inference_model(classifier, entry, work / "paddle")


@contextlib.contextmanager
def reference_program(
    entry: ModelEntry, paddle_model: Path | None, repository: Path | None, log: TextIO | None = None
) -> Iterator[Path]:
    """The program to run, from --paddle-model or rebuilt from --repository's export record; temporary files go."""
    log = log or sys.stderr  # looked up now: a default bound at import time may be a closed capture
    with tempfile.TemporaryDirectory(prefix="evaluate-reference-") as tmp:
        work = Path(tmp)
        if paddle_model is not None:
            print(f"reference: Paddle Inference on {paddle_model}", file=log)
            program = _inference_program(paddle_model, work)
        else:
            if repository is None:
                raise ReferenceError("give --repository DIR (the served repository) or --paddle-model DIR")
            source = export_source(repository, entry)
            where = f"seed {source.get('seed')}" if source["kind"] == "random" else source.get("path")
            print(f"reference: rebuilding the Paddle network of {entry.name} from {source['kind']} {where}", file=log)
            with contextlib.redirect_stdout(log):
                program = rebuild_program(entry, source, work)
        yield program


def _fields(probabilities: np.ndarray) -> Record:
    top = np.argsort(-probabilities, kind="stable")[:TOP_K]
    return {"class_ids": [int(c) for c in top], "scores": [float(probabilities[c]) for c in top]}


def reference_records(
    entry: ModelEntry,
    program: Path,
    paths: list[Path],
    batch_size: int = 8,
    progress_every: int = 500,
    log: TextIO | None = None,
) -> list[Record]:
    """Each image's top-5 by PaddleClas's operators and Paddle Inference, or {"error": ...}, in `paths` order."""
    from export.network import PaddlePredictor

    log = log or sys.stderr
    preprocess = paddleclas_operators(entry)
    predict = PaddlePredictor(program)
    records: list[Record] = [{} for _ in paths]
    next_line = progress_every
    for start in range(0, len(paths), batch_size):
        tensors, where = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                tensors.append(preprocess(paths[i].read_bytes()))
                where.append(i)
            except Exception as err:  # PaddleClas's operators fail by assertion or attribute errors on bad files
                records[i] = {"error": f"reference preprocessing failed: {type(err).__name__}: {err}"}
        if tensors:
            for i, probabilities in zip(where, predict(np.stack(tensors)), strict=True):
                records[i] = _fields(probabilities)
        done = min(start + batch_size, len(paths))
        if done >= next_line or done == len(paths):
            print(f"reference: {done}/{len(paths)} images", file=log, flush=True)
            next_line = (done // progress_every + 1) * progress_every
    return records
