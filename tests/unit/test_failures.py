"""The one classifier of failed requests (client/failures.py), on the errors tritonclient raises.

The messages are Triton 2.51's own; tests/server/test_overload.py provokes each of them from the real
server and checks the client retries exactly the overload ones.
"""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from client import failures
from perf.drills import cause

UNAVAILABLE = "StatusCode.UNAVAILABLE"
CASES = [  # (message, gRPC status, cause, kind)
    ("in ensemble 'nextvit_small_224', Exceeds maximum queue size", UNAVAILABLE, "queue full", "overloaded"),
    ("in ensemble 'nextvit_small_224', Request timeout expired", UNAVAILABLE, "queue timeout", "overloaded"),
    ("Server is stopping", UNAVAILABLE, "unavailable", "overloaded"),
    ("Stub process 'preprocess_0_0' is not healthy.", "StatusCode.INTERNAL", "dead step", "overloaded"),
    ("failed to connect to all addresses", UNAVAILABLE, "unavailable", "overloaded"),
    ("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED", "deadline", "deadline"),
    ("in ensemble 'm', image 1 of 1: truncated JPEG", "StatusCode.INTERNAL", "refused", "refused"),
]


@pytest.mark.parametrize(("message", "status", "expected_cause", "kind"), CASES)
def test_each_triton_failure_has_one_cause_and_kind(message: str, status: str, expected_cause: str, kind: str) -> None:
    err = InferenceServerException(message, status=status)
    assert (failures.failure_cause(err), failures.failure_kind(err)) == (expected_cause, kind)


def test_http_503_and_a_refused_connection_are_overload_not_the_image() -> None:
    assert failures.failure_kind(InferenceServerException("Service Unavailable", status="503")) == "overloaded"
    assert failures.failure_cause(ConnectionRefusedError(111, "Connection refused")) == "unavailable"
    assert failures.failure_kind(TimeoutError("timed out")) == "deadline"


def test_the_server_message_loses_the_ensemble_prefix_only() -> None:
    err = InferenceServerException("in ensemble 'nextvit_small_224', image 2 of 3: empty image")
    assert failures.server_message(err) == "image 2 of 3: empty image"


@pytest.mark.parametrize(("message", "status", "expected_cause", "kind"), CASES)
def test_the_drills_count_causes_with_the_same_classifier(
    message: str, status: str, expected_cause: str, kind: str
) -> None:
    """A drill row keeps the kind and the message text; its cause is the classifier's."""
    err = InferenceServerException(message, status=status)
    assert cause({"kind": failures.failure_kind(err), "message": str(err)}) == expected_cause
