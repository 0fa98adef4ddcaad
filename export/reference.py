"""PaddleClas's own deployment path on an evaluation list: what `python -m client evaluate --reference` runs.

Each image goes through PaddleClas's `deploy/python/preprocess.py` operators (built by its own
`create_operators` from a transform list derived from the catalog entry, as its Infer.transforms
configs have them) and then through Paddle Inference on the model's Paddle inference program: an
inference-model directory or `<Name>_infer.tar` given with --paddle-model, or by default the program
rebuilt from the served model's export record exactly as the export built it (pipeline.paddle_side,
the export's own function). The client stays free of Paddle: it runs the two commands below in a
process of their own (client/evaluate.py) and compares the records they write.

    python -m export reference build --model NAME (--paddle-model DIR | --repository DIR) --work DIR --out FILE
    python -m export reference run --model NAME --program FILE --paths FILE --out FILE [--batch-size 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

import catalog
from catalog import ModelEntry, Preprocessing
from export.errors import ExportError, ReferenceNetworkError
from model_repository.configs import TOP_K, network_name
from model_repository.install import EXPORT_RECORD

Record = dict

# How each catalog resize backend is spelled in PaddleClas's ResizeImage arguments; "opencv-linear" is its
# default (backend cv2, no interpolation given, which ResizeImage maps to cv2.INTER_LINEAR).
RESIZE_ARGUMENTS: dict[str, dict[str, str]] = {
    "pillow-bicubic": {"interpolation": "bicubic", "backend": "pil"},
    "opencv-linear": {},
}


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
        raise ReferenceNetworkError(
            f"no export record of {entry.triton_name} at {path} ({err.strerror or err}): give --repository, "
            "the repository the server serves, or --paddle-model DIR"
        ) from err
    source = record.get("source")
    if not isinstance(source, dict) or source.get("kind") not in ("random", "pdparams", "inference"):
        raise ReferenceNetworkError(f"{path} records no source the reference can rebuild from: {source!r}")
    return source


def reference_program(
    entry: ModelEntry, paddle_model: Path | None, repository: Path | None, work: Path, log: TextIO
) -> Path:
    """The program to run: --paddle-model's, or rebuilt into `work` from --repository's export record."""
    from export.pipeline import Source, inference_program, paddle_side

    if paddle_model is not None:
        print(f"reference: Paddle Inference on {paddle_model}", file=log)
        return inference_program(paddle_model, work)
    if repository is None:
        raise ReferenceNetworkError("give --repository DIR (the served repository) or --paddle-model DIR")
    facts = export_source(repository, entry)
    where = f"seed {facts.get('seed')}" if facts["kind"] == "random" else facts.get("path")
    print(f"reference: rebuilding the Paddle network of {entry.name} from {facts['kind']} {where}", file=log)
    try:
        return paddle_side(entry, Source.from_record(facts), work, work / "rebuild.log", count=False).program
    except ExportError as err:
        err.add_note("give --paddle-model DIR instead")
        raise


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export reference", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    build = steps.add_parser("build", help="the Paddle program, as given or rebuilt from an export record")
    build.add_argument("--model", required=True, help="catalog name")
    build.add_argument("--paddle-model", type=Path, help="an inference model directory or <Name>_infer.tar")
    build.add_argument("--repository", type=Path, help="the served repository, with <model>_network/export.json")
    build.add_argument("--work", type=Path, required=True, help="where the rebuilt program goes")
    build.add_argument("--out", type=Path, required=True, help="a file to write the program's path to")
    run = steps.add_parser("run", help="each listed image's top-5 by PaddleClas's operators and Paddle Inference")
    run.add_argument("--model", required=True, help="catalog name")
    run.add_argument("--program", type=Path, required=True, help="the program `build` wrote")
    run.add_argument("--paths", type=Path, required=True, help="image paths, one per line")
    run.add_argument("--out", type=Path, required=True, help="a file to write the records to (a JSON list)")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--progress", type=int, default=500, metavar="N", help="a progress line every N images")
    args = parser.parse_args(argv)
    try:
        entry = catalog.get(args.model)
        if args.step == "build":
            with contextlib.redirect_stdout(sys.stderr):  # Paddle's chatter: stdout stays free
                program = reference_program(entry, args.paddle_model, args.repository, args.work, sys.stderr)
            args.out.write_text(str(program), "utf-8")
            return 0
        paths = [Path(line) for line in args.paths.read_text("utf-8").splitlines() if line]
        records = reference_records(entry, args.program, paths, args.batch_size, args.progress)
        args.out.write_text(json.dumps(records), "utf-8")
        return 0
    except (ExportError, catalog.UnknownModelError) as err:
        notes = "; ".join(getattr(err, "__notes__", []))
        print(f"error: {err}{f'; {notes}' if notes else ''}", file=sys.stderr)
        return 1
