"""`python -m client smoke`: one real photograph through every served ensemble, answer checked; exit non-zero if not.

The client doubles as the deployment's smoke test (as python_backend's add_sub client does): the
Helm chart's test pod runs this command in the server image, and tests run it against the real
local server. It waits for strict readiness (every model loaded), then sends the bundled photograph
(data/chelsea.jpg: scikit-image's CC0 "chelsea" as the server's own warmup JPEG, byte for byte, so
no image library or scikit-image is needed where it runs) to each ensemble and checks the answer:
TOP_K labels, scores and class ids, probabilities in falling order, class ids distinct and in
range, no empty label. One `ok` or `FAIL` line per model; exit 0 when all pass, 1 when any answer
is wrong, 2 when the server or a model is unavailable.

Only the open APIs are used (readiness, model config, inference): with no --model, the served
ensembles are found by asking which catalog models are ready, never through the restricted
repository index, so the smoke test needs no admin key.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from client.classify import (
    DEFAULT_DEADLINE_S,
    NUM_CLASSES,
    TOP_K,
    Classifier,
    ClientError,
    InferenceError,
    ModelNotReadyError,
    Prediction,
    ServerUnavailableError,
)

PHOTO = Path(__file__).resolve().parent / "data" / "chelsea.jpg"
POLL_S = 2.0


def answer_problems(prediction: Prediction, top_k: int = TOP_K) -> list[str]:
    """What is wrong with one answer (empty when it is right)."""
    problems = []
    try:
        prediction.check()
    except ClientError as err:
        problems.append(str(err))
    counts = (len(prediction.labels), len(prediction.scores), len(prediction.class_ids))
    if counts != (top_k,) * 3:
        problems.append(f"{counts[0]} labels, {counts[1]} scores, {counts[2]} ids; expected {top_k} of each")
    ids = prediction.class_ids
    if len(set(ids)) != len(ids) or any(not 0 <= class_id < NUM_CLASSES for class_id in ids):
        problems.append(f"class ids must be distinct and in 0..{NUM_CLASSES - 1}: {ids}")
    if any(not label.strip() for label in prediction.labels):
        problems.append(f"an empty label: {prediction.labels}")
    return problems


def wait_ready(classifier: Classifier, timeout_s: float) -> None:
    """Poll strict readiness (every model loaded and warm) until the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if classifier.server_ready():
                return
            last = "server not ready"
        except ServerUnavailableError as err:
            last = str(err)
        if time.monotonic() > deadline:
            raise ServerUnavailableError(f"server not ready after {timeout_s:g} s: {last}")
        time.sleep(POLL_S)


def served_ensembles(url: str, protocol: str) -> list[str]:
    """The catalog's encoded-image ensembles this server has ready (open API: one readiness call each)."""
    import catalog

    with Classifier(url, "", protocol) as probe:
        return [entry.triton_name for entry in catalog.CATALOG.values() if probe.model_ready(entry.triton_name)]


def smoke_one(url: str, model: str, protocol: str, deadline_s: float, top_k: int, photo: bytes) -> list[str]:
    """Classify the photograph with one ensemble; prints `ok ...` and returns the problems found."""
    with Classifier(url, model, protocol, deadline_s) as classifier:
        classifier.check_ready()
        (prediction,) = classifier.classify([photo])
    problems = [f"{model}: {problem}" for problem in answer_problems(prediction, top_k)]
    if not problems:
        print(f"ok {model}: top-1 {prediction.labels[0]!r} ({prediction.scores[0]:.4f})", flush=True)
    return problems


def smoke_command(args: argparse.Namespace) -> int:
    try:
        with Classifier(args.url, "", args.protocol) as probe:
            wait_ready(probe, args.ready_timeout)
        models = args.model or served_ensembles(args.url, args.protocol)
        if not models:
            print(f"FAIL {args.url} serves none of the catalog's ensembles", flush=True)
            return 2
        photo = args.image.read_bytes()
        problems = [
            p for model in models for p in smoke_one(args.url, model, args.protocol, args.deadline, args.top_k, photo)
        ]
    except (ServerUnavailableError, ModelNotReadyError) as err:
        print(f"FAIL {err}", flush=True)
        return 2
    except InferenceError as err:
        problems = [f"the server refused the photograph: {err}"]
    for problem in problems:
        print(f"FAIL {problem}", flush=True)
    return 1 if problems else 0


def add_smoke_parser(commands: argparse._SubParsersAction) -> None:
    smoke = commands.add_parser("smoke", help="classify a real photograph with every served ensemble, check answers")
    smoke.add_argument("--url", required=True, help="HOST:PORT of the server (gRPC 8001 or HTTP 8000)")
    smoke.add_argument("--model", action="append", default=[], help="ensemble to check (repeatable; default: all)")
    smoke.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    smoke.add_argument("--top-k", type=int, default=TOP_K, help=f"labels each answer must carry (default {TOP_K})")
    smoke.add_argument(
        "--ready-timeout", type=float, default=120.0, metavar="SECONDS", help="wait this long for readiness"
    )
    smoke.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="SECONDS", help="per request")
    smoke.add_argument("--image", type=Path, default=PHOTO, help="the photograph to send (default: the bundled one)")
