"""The client's --interactive reaches Triton's request priority (the level the steps queue apart).

The server side (two levels per queued step, the interactive one served first and refused early) is
tests/server/test_interactive_priority.py; this checks the client asks for it, on both protocols.
"""

from __future__ import annotations

import pytest

from client import contract
from client.classify import Classifier


class RecordingClient:
    """Stands in for tritonclient's InferenceServerClient: records the keyword arguments of infer."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def infer(self, model: str, inputs: list, **kwargs: object) -> None:
        self.calls.append(kwargs)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize(("interactive", "priority"), [(False, 0), (True, contract.INTERACTIVE_PRIORITY)])
def test_the_classifier_sends_the_interactive_priority_only_when_asked(
    protocol: str, interactive: bool, priority: int
) -> None:
    classifier = Classifier("127.0.0.1:1", "nextvit_small_224", protocol, interactive=interactive)
    recorder = RecordingClient()
    classifier._local.client = recorder
    classifier._infer_once("nextvit_small_224", object(), [])
    assert recorder.calls[0]["priority"] == priority
    assert recorder.calls[0]["timeout"] == int(classifier.deadline_s * 1e6)  # the deadline still travels


def test_the_served_configs_queue_the_contracts_interactive_level_apart() -> None:
    import catalog
    from model_repository import configs

    batching = configs.preprocess_config(catalog.get("NextViT_small_224"))["dynamic_batching"]
    assert str(contract.INTERACTIVE_PRIORITY) in batching["priority_queue_policy"]
    assert batching["default_priority_level"] > contract.INTERACTIVE_PRIORITY  # the default queues behind it
