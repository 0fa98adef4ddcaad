"""Client for the served classifiers (library and `python -m client` command line)."""

from client.classify import (
    DEFAULT_DEADLINE_S,
    DEFAULT_RETRIES,
    Classifier,
    ClientError,
    DeadlineExceededError,
    InferenceError,
    ModelNotReadyError,
    OverloadedError,
    Prediction,
    ServerUnavailableError,
)

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_RETRIES",
    "Classifier",
    "ClientError",
    "DeadlineExceededError",
    "InferenceError",
    "ModelNotReadyError",
    "OverloadedError",
    "Prediction",
    "ServerUnavailableError",
]
