"""python -m client classify PATH... --model NAME [--url HOST:PORT] [--protocol grpc|http] [--top-k K] [--json]
    [--deadline SECONDS] [--retries N] [--preprocess server|local]
python -m client evaluate LIST [--root DIR] --model NAME [--url HOST:PORT] [--json FILE] [--resume FILE]
    [--against HOST:PORT/MODEL] (see client/evaluate.py)
python -m client smoke --url HOST:PORT [--model NAME ...] (a real photograph through each ensemble, answers
    checked; the Helm chart's test pod runs it; see client/smoke.py)

Files and folders (searched recursively for image files); images travel in batches of up to 8 per
request, several requests in flight at once. If a batch is refused (one bad file), its images are
retried one by one so that only the bad file fails. Each request has a deadline (default 10 s) and
is tried again, after a jittered pause, only when the server shed it as overloaded or could not be
reached (default 2 more tries); a batch that still fails is reported, never split. --preprocess local
decodes, resizes and crops here (the server's own code and parameters) and sends the crops to
`<model>_crop`: the same answers, with the CPU work on this machine. Exit status: 0
when every image was classified, 1 when any failed, 2 when the server or model is unavailable.
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
    MAX_BATCH_SIZE,
    PREPROCESSING,
    Classifier,
    ClientError,
    DeadlineExceededError,
    InferenceError,
    OverloadedError,
    Prediction,
)

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
    with Classifier(url, args.model, args.protocol, args.deadline, args.retries, args.preprocess) as classifier:
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
        "--preprocess",
        choices=PREPROCESSING,
        default="server",
        help="server: send the encoded files (default); local: decode, resize and crop here with the server's "
        "own preprocessing and send the uint8 crops to <model>_crop (same answers; a 224 crop is 150 KB)",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify image files or folders")
    classify.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    classify.add_argument("--model", required=True, help="ensemble name, e.g. nextvit_small_224")
    classify.add_argument("--url", help="server address (default 127.0.0.1:8001 for grpc, :8000 for http)")
    classify.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    classify.add_argument("--top-k", type=int, default=5, choices=range(1, 6), metavar="{1..5}")
    classify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_transport_arguments(classify)
    from client.evaluate import add_evaluate_parser  # here: client.evaluate imports this module
    from client.smoke import add_smoke_parser

    add_evaluate_parser(commands)
    add_smoke_parser(commands)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "evaluate":
        from client.evaluate import evaluate_command

        return evaluate_command(args)
    if args.command == "smoke":
        from client.smoke import smoke_command

        return smoke_command(args)
    return classify_command(args)


if __name__ == "__main__":
    sys.exit(main())
