"""The client's --interactive reaches the interactive path and Triton's request priority.

The server side (the reserved preprocess instance of `<model>_interactive`, the networks' two levels)
is tests/server/test_interactive_priority.py; this checks the client asks for both, on both protocols.
"""

from __future__ import annotations

import numpy as np
import pytest

from client import contract
from client.classify import Classifier


class RecordingClient:
    """Stands in for tritonclient's InferenceServerClient: records the keyword arguments of infer."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def infer(self, model: str, inputs: list, **kwargs: object) -> Answer:
        self.calls.append(kwargs | {"model": model})
        return Answer()


class Answer:
    """One image's top-5, as tritonclient's result hands out its outputs."""

    def as_numpy(self, name: str) -> np.ndarray:
        return {
            "LABELS": np.array([[b"tabby"] * 5], dtype=object),
            "SCORES": np.array([[0.5, 0.2, 0.1, 0.1, 0.1]], np.float32),
            "CLASS_IDS": np.array([[281, 282, 285, 287, 283]], np.int64),
        }[name]


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


@pytest.mark.parametrize(("interactive", "suffix"), [(False, ""), (True, contract.INTERACTIVE_SUFFIX)])
def test_interactive_images_take_the_interactive_path_and_other_inputs_keep_their_models(
    interactive: bool, suffix: str
) -> None:
    classifier = Classifier("127.0.0.1:1", "nextvit_small_224", interactive=interactive)
    recorder = RecordingClient()
    classifier._local.client = recorder
    classifier.classify([b"jpeg bytes"])
    classifier.classify_pixels([np.zeros((4, 4, 3), np.uint8)])
    assert [call["model"] for call in recorder.calls] == [f"nextvit_small_224{suffix}", "nextvit_small_224_pixels"]
    assert {call["priority"] for call in recorder.calls} == {contract.INTERACTIVE_PRIORITY if interactive else 0}


def test_the_served_configs_route_the_contracts_interactive_path_and_level() -> None:
    import catalog
    from model_repository import configs

    entry = catalog.get("NextViT_small_224")
    assert configs.interactive_ensemble_name(entry) == "nextvit_small_224" + contract.INTERACTIVE_SUFFIX
    batching = configs.network_config(entry, "portable")["dynamic_batching"]
    assert str(contract.INTERACTIVE_PRIORITY) in batching["priority_queue_policy"]
    assert batching["default_priority_level"] > contract.INTERACTIVE_PRIORITY  # the default queues behind it
