"""One classifier of failed requests: the client's retries, the load tests and the drills all ask it.

Triton (2.51) refuses a request its bounded queues cannot hold with UNAVAILABLE (HTTP 503) and one of
its own sentences (src/scheduler_utils.cc "Exceeds maximum queue size"; "Request timeout expired" for a
request that waited past its queue's timeout); a server shutting down says "Server is stopping"; a
Python step whose process died says "Stub process '...' is not healthy" (2.51 does not restart it).
Those are the server's state, not the request's: worth another try later. Anything else the server
says is about the request itself (an undecodable image, too many pixels): never retried.
Standard library only (the errors are duck-typed tritonclient InferenceServerException, OSError...).
"""

from __future__ import annotations

from typing import Literal

QUEUE_FULL = "Exceeds maximum queue size"
QUEUE_TIMEOUT = "Request timeout expired"
SERVER_STOPPING = "Server is stopping"
DEAD_STEP = "is not healthy"
QUEUE_REJECTIONS = (QUEUE_FULL, QUEUE_TIMEOUT)  # a bounded queue shedding load

Cause = Literal["deadline", "queue full", "queue timeout", "dead step", "unavailable", "refused"]
Kind = Literal["deadline", "overloaded", "refused"]
# The server's words -> the cause they name, first match wins.
WORDS: tuple[tuple[str, Cause], ...] = (
    (QUEUE_FULL, "queue full"),
    (QUEUE_TIMEOUT, "queue timeout"),
    (DEAD_STEP, "dead step"),
    (SERVER_STOPPING, "unavailable"),
)


def server_message(err: BaseException) -> str:
    """The server's own words, without the gRPC status decoration or the ensemble prefix."""
    text = err.message() if hasattr(err, "message") and callable(err.message) else str(err)
    return text.split("', ", 1)[1] if text.startswith("in ensemble '") else text


def message_cause(text: str) -> Cause | None:
    """The cause Triton's words in `text` name, or None when they name none of them."""
    return next((cause for words, cause in WORDS if words in text), None)


def failure_cause(err: BaseException) -> Cause:
    """Why a request failed: its deadline passed, a queue shed it, a step died, no server, or refused."""
    text = server_message(err)
    status = str(err.status()) if hasattr(err, "status") and callable(err.status) else ""
    if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in text or isinstance(err, TimeoutError):
        return "deadline"
    named = message_cause(text)
    if named is not None:
        return named
    if isinstance(err, (ConnectionError, OSError)) or "UNAVAILABLE" in status or status == "503":
        return "unavailable"
    return "refused"


def failure_kind(err: BaseException) -> Kind:
    """'overloaded' (retryable), 'deadline' or 'refused' (the request itself is bad: never retried)."""
    cause = failure_cause(err)
    return cause if cause in ("deadline", "refused") else "overloaded"
