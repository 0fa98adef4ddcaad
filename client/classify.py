"""Call a served classifier over gRPC (default) or HTTP: the library behind `python -m client`.

    from client import Classifier
    with Classifier("127.0.0.1:8001", "nextvit_small_224") as classifier:
        results = classifier.classify([open("cat.jpg", "rb").read()])

One request carries up to MAX_BATCH_SIZE encoded images (the ensemble's IMAGE input, TYPE_STRING).

With preprocess="local", the client decodes, resizes and crops the images itself with the project's
`preprocess` package (exactly the server's code, with the parameters the server publishes in
`<model>_crop`'s config) and sends the uint8 crops to `<model>_crop`: the same answers, bit for bit,
with the CPU work done where the client runs. A crop is S x S x 3 bytes (150 KB at 224): often more
than the JPEG it came from (docs/preprocessing.md, "Client-side crops").

Every request has a deadline (DEFAULT_DEADLINE_S unless given): past it the call gives up with
DeadlineExceededError and gRPC cancels the request. A request the server refused because it is
overloaded (its bounded queues are full or a request waited past the queue timeout: gRPC
UNAVAILABLE, HTTP 503) or could not reach the server is tried again, at most `retries` more times,
after a random pause of up to BACKOFF_BASE_S x 2^attempt (capped at BACKOFF_CAP_S, "full jitter",
so retrying clients spread out instead of returning together). When the tries run out it raises
OverloadedError: "overloaded, retry later". A refused image (undecodable, too large) is never
retried: the same bytes would fail the same way. Only the open APIs are used (health, metadata,
model config, inference); the server's restricted APIs (model repository, statistics) need a key
this client never has.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

from client.contract import (
    CROP_SUFFIX,
    CROPS_INPUT,
    IMAGE_INPUT,
    INTERACTIVE_PRIORITY,
    INTERACTIVE_SUFFIX,
    MAX_BATCH_SIZE,
    OUTPUTS,
    PIXELS_INPUT,
    PIXELS_SUFFIX,
)
from client.failures import failure_kind, server_message

Protocol = Literal["grpc", "http"]
Preprocessing = Literal["server", "local"]
PREPROCESSING: tuple[Preprocessing, ...] = ("server", "local")

# Defaults, documented in client/README.md ("Deadlines and retries") and the CLI help. 10 s per try: a full
# request of 8 images takes 0.6 s (NextViT-S) to 1.8 s (ViT-B) on a 2-core CPU server and the
# server refuses what it cannot start within about a second, so a try that runs longer is stuck.
DEFAULT_DEADLINE_S = 10.0
DEFAULT_RETRIES = 2  # tries after the first, for overload and unavailability only
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 2.0


class ClientError(RuntimeError):
    """Base of every error this client raises; messages are meant for people."""


class ServerUnavailableError(ClientError):
    pass


class ModelNotReadyError(ClientError):
    pass


class InferenceError(ClientError):
    """The server refused a request (e.g. an undecodable image); other requests are unaffected."""


class OverloadedError(ClientError):
    """The server shed the request (queue full or queue timeout) or was unreachable, on every try: retry later."""


class DeadlineExceededError(ClientError):
    """No answer within the request's deadline; the request was cancelled."""


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base x 2^attempt)]."""
    return (rng or random).uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    scores: list[float]
    class_ids: list[int]

    def check(self) -> None:
        """Sanity of the answer itself: a client that doubles as a smoke test."""
        if not (len(self.labels) == len(self.scores) == len(self.class_ids) > 0):
            raise ClientError(f"malformed answer: {self}")
        if any(not 0.0 <= s <= 1.0 for s in self.scores) or self.scores != sorted(self.scores, reverse=True):
            raise ClientError(f"scores are not descending probabilities: {self.scores}")


def _module(protocol: Protocol) -> ModuleType:
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected grpc or http")
    return module


class Classifier:
    """A thread-safe handle on one served model (one underlying connection per thread)."""

    def __init__(
        self,
        url: str,
        model: str,
        protocol: Protocol = "grpc",
        deadline_s: float = DEFAULT_DEADLINE_S,
        retries: int = DEFAULT_RETRIES,
        preprocess: Preprocessing = "server",
        interactive: bool = False,
    ) -> None:
        if deadline_s <= 0 or retries < 0:
            raise ValueError(f"deadline must be positive and retries not negative: {deadline_s}, {retries}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, not {preprocess!r}")
        self.url, self.model, self.protocol = url, model, protocol
        self.deadline_s, self.retries, self.preprocess = deadline_s, retries, preprocess
        # Interactive images go to `<model>_interactive`, whose preprocess instance no batch traffic
        # can occupy, and every request at the priority the network queues apart and serves first
        # (contract.INTERACTIVE_PRIORITY); 0 is the default level.
        self.interactive = interactive
        self.priority = INTERACTIVE_PRIORITY if interactive else 0
        self._triton = _module(protocol)
        self._local = threading.local()
        self._preprocessor = None  # built on first use from `<model>_crop`'s config (local preprocessing)
        self._preprocessor_lock = threading.Lock()

    @property
    def crop_model(self) -> str:
        return f"{self.model}{CROP_SUFFIX}"

    @property
    def image_model(self) -> str:
        """Where encoded images go: the model, or its interactive path (small requests only: client/README.md)."""
        return f"{self.model}{INTERACTIVE_SUFFIX}" if self.interactive else self.model

    def _client(self):
        if not hasattr(self._local, "client"):
            if self.protocol == "http":  # HTTP has no per-call deadline: the connection's timeout is the deadline
                self._local.client = self._triton.InferenceServerClient(
                    self.url, connection_timeout=self.deadline_s, network_timeout=self.deadline_s
                )
            else:
                self._local.client = self._triton.InferenceServerClient(self.url)
        return self._local.client

    def check_ready(self) -> dict[str, str]:
        """Raise a clear error unless the server is up and the model ready; return its parameters."""
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            live = client.is_server_live()
        except (InferenceServerException, OSError, ConnectionError) as err:
            raise ServerUnavailableError(f"no Triton server answers at {self.url} ({self.protocol}): {err}") from None
        if not live:
            raise ServerUnavailableError(f"Triton server at {self.url} is not live")
        if not client.is_model_ready(self.model):
            raise ModelNotReadyError(f"model {self.model!r} is not ready on {self.url}: {self._why_not_ready()}")
        if self.interactive and self.preprocess == "server" and not client.is_model_ready(self.image_model):
            raise ModelNotReadyError(
                f"{self.image_model!r}, the interactive path, is not ready on {self.url}: the server's configs "
                "predate it (update and restart the server) or it failed to load"
            )
        if self.preprocess == "local" and not client.is_model_ready(self.crop_model):
            raise ModelNotReadyError(
                f"{self.crop_model!r}, the entry point for client-side crops, is not ready on {self.url}: the "
                "repository was installed before it existed (export the model again) or it failed to load"
            )
        return self._parameters()

    def server_ready(self) -> bool:
        """Strict readiness (every model loaded); ServerUnavailableError when no server answers."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self._client().is_server_ready())
        except (InferenceServerException, OSError, ConnectionError) as err:
            raise ServerUnavailableError(f"no Triton server answers at {self.url} ({self.protocol}): {err}") from None

    def model_ready(self, model: str) -> bool:
        """Whether the server has `model` loaded; False for a model it does not know."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self._client().is_model_ready(model))
        except InferenceServerException:
            return False

    def _why_not_ready(self) -> str:
        """From the open metadata APIs only (listing the repository needs the server's admin key)."""
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            server = client.get_server_metadata()
            version = server["version"] if isinstance(server, dict) else server.version
        except InferenceServerException:
            version = "?"
        try:
            client.get_model_metadata(self.model)
        except InferenceServerException as err:
            return (
                f"Triton {version} does not serve it ({server_message(err)}); ensembles are named after the "
                "lower-cased PaddleClas name, e.g. nextvit_small_224"
            )
        return f"Triton {version} knows it but has not finished loading it (or it failed to load)"

    def parameters(self, model: str | None = None) -> dict[str, str]:
        """The string parameters of a model's config (this client's model by default): open model-config API."""
        return self._parameters(model)

    def _parameters(self, model: str | None = None) -> dict[str, str]:
        config = self._client().get_model_config(model or self.model)
        if self.protocol == "grpc":
            return {k: v.string_value for k, v in config.config.parameters.items()}
        return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}

    def classify(self, images: list[bytes]) -> list[Prediction]:
        """Classify up to MAX_BATCH_SIZE encoded images in one request (cropped here with preprocess="local")."""
        _check_batch(len(images))
        if self.preprocess == "local":
            return self.classify_crops(self.crops(images))
        tensor = self._triton.InferInput(IMAGE_INPUT, [len(images), 1], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=object).reshape(-1, 1))
        return self._infer(self.image_model, tensor)

    def classify_pixels(self, frames: list[np.ndarray]) -> list[Prediction]:
        """Classify decoded RGB uint8 HxWx3 frames (one size per request) through `<model>_pixels`."""
        _check_batch(len(frames))
        batch = np.stack(frames)  # raises on mixed sizes: send those as separate requests
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"frames must be RGB uint8 HxWx3, got {batch.dtype} {batch.shape[1:]}")
        tensor = self._triton.InferInput(PIXELS_INPUT, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        return self._infer(f"{self.model}{PIXELS_SUFFIX}", tensor)

    def local_preprocessor(self):
        """The server's preprocessing (preprocess.Preprocessor) with the parameters `<model>_crop` publishes.

        Read once from the open model-config API, so the client crops with the served values and
        needs no catalog: resize_short, crop, resize filter, max_pixels. Always the exact decode.
        """
        with self._preprocessor_lock:
            if self._preprocessor is None:
                from tritonclient.utils import InferenceServerException

                from preprocess import Preprocessor

                try:
                    parameters = self._parameters(self.crop_model)
                except InferenceServerException as err:
                    raise ModelNotReadyError(f"{self.crop_model!r} is not served on {self.url}: {err}") from None
                self._preprocessor = Preprocessor.from_parameters(parameters)
            return self._preprocessor

    def crops(self, images: list[bytes]) -> np.ndarray:
        """Encoded images -> N x S x S x 3 uint8 crops, as the server's preprocess step would cut them.

        A bad image raises InferenceError with the server's own words ("image 2 of 3: empty image
        ..."), before any request is sent, so callers isolate it exactly as they do a server refusal.
        """
        from preprocess import ImageDecodeError, preprocess_requests

        (outcome,) = preprocess_requests([images], self.local_preprocessor().crop_encoded)
        if isinstance(outcome, ImageDecodeError):
            raise InferenceError(str(outcome))
        return outcome

    def classify_crops(self, crops: list[np.ndarray] | np.ndarray) -> list[Prediction]:
        """Classify uint8 S x S x 3 crops (from `crops` or the `preprocess` package) through `<model>_crop`."""
        _check_batch(len(crops))
        batch = np.ascontiguousarray(np.stack(list(crops)))
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[1] != batch.shape[2]:
            raise ValueError(f"crops must be uint8 S x S x 3, got {batch.dtype} {batch.shape[1:]}")
        tensor = self._triton.InferInput(CROPS_INPUT, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        return self._infer(self.crop_model, tensor)

    def _infer(self, model: str, tensor: object) -> list[Prediction]:
        outputs = [self._triton.InferRequestedOutput(name) for name in OUTPUTS]
        for attempt in range(self.retries + 1):
            try:
                result = self._infer_once(model, tensor, outputs)
                break
            except Exception as err:  # classified below; anything unknown is re-raised as it is
                kind = _classify_failure(err)
                if kind == "refused":
                    raise InferenceError(server_message(err)) from None
                if kind == "deadline":
                    raise DeadlineExceededError(
                        f"no answer from {self.url} within the {self.deadline_s:g} s deadline"
                    ) from None
                if attempt == self.retries:
                    raise OverloadedError(
                        f"{self.url} is overloaded or unavailable, retry later ({attempt + 1} tries: "
                        f"{server_message(err)})"
                    ) from None
                time.sleep(backoff_s(attempt))
        labels, scores, class_ids = (result.as_numpy(name) for name in OUTPUTS)
        return [
            Prediction([b.decode("utf-8") for b in labels[i]], scores[i].tolist(), class_ids[i].tolist())
            for i in range(len(labels))
        ]

    def _infer_once(self, model: str, tensor: object, outputs: list) -> object:
        # The deadline also travels with the request (`timeout`, microseconds): each step's queue may
        # then refuse it once it has waited that long (a request can shorten a queue's timeout, never
        # lengthen it), rather than compute an answer nobody waits for.
        timeout_us = int(self.deadline_s * 1e6)
        if self.protocol == "grpc":
            return self._client().infer(
                model,
                [tensor],
                outputs=outputs,
                client_timeout=self.deadline_s,
                timeout=timeout_us,
                priority=self.priority,
            )
        return self._client().infer(model, [tensor], outputs=outputs, timeout=timeout_us, priority=self.priority)

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_batch(size: int) -> None:
    if not 0 < size <= MAX_BATCH_SIZE:
        raise ValueError(f"one request takes 1 to {MAX_BATCH_SIZE} images, got {size}")


def _classify_failure(err: Exception) -> str:
    from tritonclient.utils import InferenceServerException

    if isinstance(err, (InferenceServerException, ConnectionError, OSError)):
        return failure_kind(err)
    raise err
