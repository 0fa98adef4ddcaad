"""`python -m client classify`: files and folders in full batches, bounded concurrency, a refused batch split.

Also the machinery `evaluate` and the demo share: the file walk, one batch with its bad files
isolated, the output table, and the transport options (batching, deadline, retries, preprocessing).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from client.classify import (
    DEFAULT_DEADLINE_S,
    DEFAULT_RETRIES,
    PREPROCESSING,
    Classifier,
    ClientError,
    DeadlineExceededError,
    InferenceError,
    OverloadedError,
    Prediction,
)
from client.contract import MAX_BATCH_SIZE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}

Outcome = tuple[Path, Prediction | str]


def collect(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return files


def classify_batch(classifier: Classifier, batch: list[Path]) -> list[Outcome]:
    try:
        predictions = classifier.classify([p.read_bytes() for p in batch])
        return list(zip(batch, predictions, strict=True))
    except (OverloadedError, DeadlineExceededError) as err:  # the server's state, not the files: never split
        return [(path, str(err)) for path in batch]
    except InferenceError as err:
        if len(batch) == 1:
            return [(batch[0], str(err))]
    outcomes: list[Outcome] = []
    for path in batch:  # isolate the bad file(s): one request per image
        outcomes += classify_batch(classifier, [path])
    return outcomes


def classify_files(classifier: Classifier, files: list[Path], batch_size: int, concurrency: int) -> list[Outcome]:
    batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [o for outcomes in pool.map(lambda b: classify_batch(classifier, b), batches) for o in outcomes]


def print_outcomes(outcomes: list[Outcome], top_k: int, as_json: bool) -> None:
    if as_json:
        rows = [
            {"path": str(p), **asdict(r)} if isinstance(r, Prediction) else {"path": str(p), "error": r}
            for p, r in outcomes
        ]
        for row in rows:
            for key in ("labels", "scores", "class_ids"):
                if key in row:
                    row[key] = row[key][:top_k]
        print(json.dumps(rows, indent=2))
        return
    for path, result in outcomes:
        print(path)
        if isinstance(result, str):
            print(f"  error: {result}")
            continue
        rows = zip(result.labels[:top_k], result.scores[:top_k], result.class_ids[:top_k], strict=True)
        for rank, (label, score, class_id) in enumerate(rows, 1):
            print(f"  {rank}. {score:.4f}  {class_id:>3}  {label}")


def classify_command(args: argparse.Namespace) -> int:
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    try:
        files = collect(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not files:
        print("error: no image files found", file=sys.stderr)
        return 1
    with Classifier(
        url, args.model, args.protocol, args.deadline, args.retries, args.preprocess, args.interactive
    ) as classifier:
        try:
            parameters = classifier.check_ready()
        except ClientError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if "RANDOM" in parameters.get("weights", ""):
            print(f"WARNING: {args.model} serves {parameters['weights']}", file=sys.stderr)
        outcomes = classify_files(classifier, files, args.batch_size, args.concurrency)
    for _, result in outcomes:
        if isinstance(result, Prediction):
            result.check()
    print_outcomes(outcomes, args.top_k, args.json)
    failures = sum(isinstance(r, str) for _, r in outcomes)
    if failures:
        print(f"{failures} of {len(outcomes)} images failed", file=sys.stderr)
    return 1 if failures else 0


def add_transport_arguments(parser: argparse.ArgumentParser) -> None:
    """Batching, concurrency, deadline and retries: shared by classify and evaluate."""
    parser.add_argument(
        "--batch-size", type=int, default=MAX_BATCH_SIZE, choices=range(1, MAX_BATCH_SIZE + 1), metavar="{1..8}"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help=f"give up on a request (and cancel it) after this long, per try (default {DEFAULT_DEADLINE_S:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"more tries, after a jittered pause, when the server sheds a request as overloaded or cannot be "
        f"reached; never for a refused image (default {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="send images to MODEL_interactive, a preprocess instance batch traffic cannot occupy, at the "
        "priority the network serves first: answered within 2 s or refused within 1 s when the server is "
        "flooded; small requests only (about one phone photo: a larger one is refused, naming the limit)",
    )
    parser.add_argument(
        "--preprocess",
        choices=PREPROCESSING,
        default="server",
        help="server: send the encoded files (default); local: decode, resize and crop here with the server's "
        "own preprocessing and send the uint8 crops to <model>_crop (same answers; a 224 crop is 150 KB)",
    )
