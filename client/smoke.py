"""`python -m client smoke`: one real photograph through every served ensemble, answer checked; exit non-zero if not.

The client doubles as the deployment's smoke test (as python_backend's add_sub client does): the
Helm chart's test pod runs this command in the server image, and tests run it against the real
local server. It waits for strict readiness (every model loaded), then sends the bundled photograph
(data/chelsea.jpg: scikit-image's CC0 "chelsea" as the server's own warmup JPEG, byte for byte, so
no image library or scikit-image is needed where it runs) to each ensemble and checks the answer:
TOP_K labels, scores and class ids, probabilities in falling order, class ids distinct and in
range, no empty label. One `ok` or `FAIL` line per model; exit 0 when all pass, 1 when any answer
is wrong, 2 when the server or a model is unavailable.

The answer is also compared with the reference the export recorded for this photograph (Paddle
Inference on the same crop, export/parity.py), which the ensemble's config publishes as parameters:
the served top-5 must be what the reference's probabilities give when each moves by at most the
tolerance of the precision the network is served in (catalog.models.SERVED_ATOL; the network config's
`precision` parameter, fp32 when it names none). So classes whose reference probabilities are more
than twice the tolerance apart keep their order, a near-tie may swap, and a class may enter or leave
the top-5 only through a near-tie at its edge (`reference_problems`). A wrong network (swapped colour
channels, other weights) fails; a repository exported before references were recorded fails too,
saying so: it cannot be vouched for.

Only the open APIs are used (readiness, model config, inference): with no --model, the served
ensembles are found by asking which catalog models are ready, never through the restricted
repository index, so the smoke test needs no admin key.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from catalog.reference import NUM_CLASSES
from client import contract
from client.classify import (
    DEFAULT_DEADLINE_S,
    Classifier,
    ClientError,
    InferenceError,
    ModelNotReadyError,
    Prediction,
    ServerUnavailableError,
)

PHOTO = Path(__file__).resolve().parent / "data" / "chelsea.jpg"
POLL_S = 2.0


def answer_problems(prediction: Prediction, top_k: int = contract.TOP_K) -> list[str]:
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


@dataclass(frozen=True)
class Reference:
    """The export's answer for one photograph: its hash and its most probable classes, best first."""

    photo_sha256: str
    class_ids: list[int]
    scores: list[float]


def reference_from_parameters(parameters: dict[str, str]) -> Reference | None:
    """The reference an ensemble's config publishes (model_repository.configs.reference_parameters), or None."""
    names = (
        contract.REFERENCE_PHOTO_PARAMETER,
        contract.REFERENCE_IDS_PARAMETER,
        contract.REFERENCE_SCORES_PARAMETER,
    )
    if not all(parameters.get(name) for name in names):
        return None
    photo, ids, scores = (parameters[name] for name in names)
    return Reference(photo, [int(c) for c in ids.split()], [float(s) for s in scores.split()])


def reference_problems(prediction: Prediction, reference: Reference, atol: float) -> list[str]:
    """What in the served top-k no reference probabilities moved by at most `atol` each could give.

    Each served class the reference lists must be within `atol` of its reference probability; a class
    it does not list has a reference probability at most its last listed one, so it may be served only
    up to that plus `atol`. A listed class missing from the served top-k must have a reference probability
    within `atol` of the served k-th score, or it would outrank that one. Order needs no separate rule:
    two classes whose reference probabilities differ by more than 2 x `atol` cannot both stay within
    `atol` and swap, while a nearer pair (a near-tie) may come in either order.
    """
    listed = dict(zip(reference.class_ids, reference.scores, strict=True))
    floor = min(reference.scores)
    problems = []
    for rank, (class_id, score) in enumerate(zip(prediction.class_ids, prediction.scores, strict=True), 1):
        if class_id in listed and abs(score - listed[class_id]) > atol:
            problems.append(
                f"rank {rank}: class {class_id} scored {score:.6f}, the reference {listed[class_id]:.6f} "
                f"(tolerance {atol:g})"
            )
        elif class_id not in listed and score > floor + atol:
            problems.append(
                f"rank {rank}: class {class_id} scored {score:.6f}, but the reference ranks it below its "
                f"{len(listed)} best (all at least {floor:.6f}; tolerance {atol:g})"
            )
    last = min(prediction.scores)
    for rank, (class_id, expected) in enumerate(zip(reference.class_ids, reference.scores, strict=True), 1):
        if class_id not in prediction.class_ids and expected - atol > last:
            problems.append(
                f"class {class_id} (reference rank {rank}, {expected:.6f}) is missing from the served top-"
                f"{len(prediction.class_ids)}, whose last score is {last:.6f} (tolerance {atol:g})"
            )
    return problems


def served_tolerance(classifier: Classifier, model: str) -> tuple[str, float]:
    """The served network's precision (its config's `precision` parameter, fp32 without one) and its tolerance."""
    from catalog.models import served_atol

    network = classifier.parameters(f"{model}{contract.NETWORK_SUFFIX}")
    precision = network.get(contract.PRECISION_PARAMETER) or "fp32"
    return precision, served_atol(precision)


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


def reference_check(
    prediction: Prediction, parameters: dict[str, str], photo: bytes, photo_is_reference: bool, atol: float
) -> tuple[list[str], bool]:
    """The answer against the reference its ensemble publishes: (problems, whether it was compared).

    photo_is_reference: the photograph is the bundled one, so a reference recorded for another photo is
    a problem (an export that drifted from this client); False (--image) skips the comparison.
    """
    reference = reference_from_parameters(parameters)
    if reference is None:
        return ["its config publishes no reference answer (exported before they were recorded): export again"], False
    if reference.photo_sha256 != hashlib.sha256(photo).hexdigest():
        if photo_is_reference:
            return [f"its reference answer is of another photograph (sha256 {reference.photo_sha256[:12]}...)"], False
        return [], False
    return reference_problems(prediction, reference, atol), True


def smoke_one(
    url: str,
    model: str,
    protocol: str,
    deadline_s: float,
    top_k: int,
    photo: bytes,
    photo_is_reference: bool = True,
    interactive: bool = False,
) -> list[str]:
    """Classify the photograph with one ensemble (or its interactive path); prints `ok ...`, returns the problems."""
    with Classifier(url, model, protocol, deadline_s, interactive=interactive) as classifier:
        parameters = classifier.check_ready()
        (prediction,) = classifier.classify([photo])
        precision, atol = served_tolerance(classifier, model)
        model = classifier.image_model  # what was called, for the report
    problems = answer_problems(prediction, top_k)
    compared = False
    if not problems:
        problems, compared = reference_check(prediction, parameters, photo, photo_is_reference, atol)
    if not problems and not compared:
        print(f"note {model}: --image is not the photograph the reference is of: answer not compared", flush=True)
    if problems:
        return [f"{model}: {problem}" for problem in problems]
    against = f", the reference's answer within {atol:g} ({precision})" if compared else ""
    print(f"ok {model}: top-1 {prediction.labels[0]!r} ({prediction.scores[0]:.4f}){against}", flush=True)
    return []


def smoke_command(args: argparse.Namespace) -> int:
    try:
        with Classifier(args.url, "", args.protocol) as probe:
            wait_ready(probe, args.ready_timeout)
        models = args.model or served_ensembles(args.url, args.protocol)
        if not models:
            print(f"FAIL {args.url} serves none of the catalog's ensembles", flush=True)
            return 2
        photo = args.image.read_bytes()
        bundled = args.image.resolve() == PHOTO
        problems = [
            p
            for model in models
            for interactive in (False, True)  # `<model>` and `<model>_interactive`: the same answer on reserved steps
            for p in smoke_one(args.url, model, args.protocol, args.deadline, args.top_k, photo, bundled, interactive)
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
    smoke = commands.add_parser(
        "smoke", help="classify a real photograph with every served ensemble and its interactive path, check answers"
    )
    smoke.add_argument("--url", required=True, help="HOST:PORT of the server (gRPC 8001 or HTTP 8000)")
    smoke.add_argument("--model", action="append", default=[], help="ensemble to check (repeatable; default: all)")
    smoke.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    smoke.add_argument(
        "--top-k", type=int, default=contract.TOP_K, help=f"labels each answer must carry (default {contract.TOP_K})"
    )
    smoke.add_argument(
        "--ready-timeout", type=float, default=120.0, metavar="SECONDS", help="wait this long for readiness"
    )
    smoke.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="SECONDS", help="per request")
    smoke.add_argument("--image", type=Path, default=PHOTO, help="the photograph to send (default: the bundled one)")
