"""Client for the served classifiers (library and `python -m client` command line)."""

from client.classify import (
    Classifier,
    ClientError,
    InferenceError,
    ModelNotReadyError,
    Prediction,
    ServerUnavailableError,
)

__all__ = ["Classifier", "ClientError", "InferenceError", "ModelNotReadyError", "Prediction", "ServerUnavailableError"]
