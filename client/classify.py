"""Call a served classifier over gRPC (default) or HTTP: the library behind `python -m client`.

    from client import Classifier
    with Classifier("127.0.0.1:8001", "nextvit_small_224") as classifier:
        results = classifier.classify([open("cat.jpg", "rb").read()])

One request carries up to MAX_BATCH_SIZE encoded images (the ensemble's IMAGE input, TYPE_STRING).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

Protocol = Literal["grpc", "http"]
MAX_BATCH_SIZE = 8  # the ensemble's max_batch_size (wire contract)
OUTPUTS = ("LABELS", "SCORES", "CLASS_IDS")


class ClientError(RuntimeError):
    """Base of every error this client raises; messages are meant for people."""


class ServerUnavailableError(ClientError):
    pass


class ModelNotReadyError(ClientError):
    pass


class InferenceError(ClientError):
    """The server refused a request (e.g. an undecodable image); other requests are unaffected."""


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

    def __init__(self, url: str, model: str, protocol: Protocol = "grpc", timeout_s: float = 60.0) -> None:
        self.url, self.model, self.protocol, self.timeout_s = url, model, protocol, timeout_s
        self._triton = _module(protocol)
        self._local = threading.local()

    def _client(self):
        if not hasattr(self._local, "client"):
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
            try:
                names = sorted(m["name"] if isinstance(m, dict) else m.name for m in self._index())
            except InferenceServerException:
                names = []
            raise ModelNotReadyError(
                f"model {self.model!r} is not ready on {self.url}; models there: {', '.join(names) or 'none'}"
            )
        return self._parameters()

    def _index(self) -> list:
        index = self._client().get_model_repository_index()
        return index if isinstance(index, list) else list(index.models)

    def _parameters(self) -> dict[str, str]:
        config = self._client().get_model_config(self.model)
        if self.protocol == "grpc":
            return {k: v.string_value for k, v in config.config.parameters.items()}
        return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}

    def classify(self, images: list[bytes]) -> list[Prediction]:
        """Classify up to MAX_BATCH_SIZE encoded images in one request."""
        _check_batch(len(images))
        tensor = self._triton.InferInput("IMAGE", [len(images), 1], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=object).reshape(-1, 1))
        return self._infer(self.model, tensor)

    def classify_pixels(self, frames: list[np.ndarray]) -> list[Prediction]:
        """Classify decoded RGB uint8 HxWx3 frames (one size per request) through `<model>_pixels`."""
        _check_batch(len(frames))
        batch = np.stack(frames)  # raises on mixed sizes: send those as separate requests
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"frames must be RGB uint8 HxWx3, got {batch.dtype} {batch.shape[1:]}")
        tensor = self._triton.InferInput("PIXELS", list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        return self._infer(f"{self.model}_pixels", tensor)

    def _infer(self, model: str, tensor: object) -> list[Prediction]:
        from tritonclient.utils import InferenceServerException

        outputs = [self._triton.InferRequestedOutput(name) for name in OUTPUTS]
        try:
            if self.protocol == "grpc":
                result = self._client().infer(model, [tensor], outputs=outputs, client_timeout=self.timeout_s)
            else:
                result = self._client().infer(model, [tensor], outputs=outputs)
        except InferenceServerException as err:
            raise InferenceError(_server_message(err)) from None
        labels, scores, class_ids = (result.as_numpy(name) for name in OUTPUTS)
        return [
            Prediction([b.decode("utf-8") for b in labels[i]], scores[i].tolist(), class_ids[i].tolist())
            for i in range(len(labels))
        ]

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


def _server_message(err: Exception) -> str:
    """The server's own words, without the gRPC status decoration or the ensemble prefix."""
    text = err.message() if hasattr(err, "message") and callable(err.message) else str(err)
    return text.split("', ", 1)[1] if text.startswith("in ensemble '") else text
