"""Many requests in flight at once against a server whose queues are bounded (configs.QUEUE_PER_INSTANCE).

The server refuses what its queues cannot hold ("Exceeds maximum queue size"), by design. A test of
how requests that share a batch are answered therefore sends them in waves its entry step admits
whole, and sends a request refused as overload again (an instance not yet released from the last
wave), as the client library would: every outcome left is the request's own.
"""

from __future__ import annotations

import threading

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client.failures import QUEUE_FULL


def admitted_at_once(client: grpcclient.InferenceServerClient, ensemble: str) -> int:
    """Requests the ensemble's first step takes at once without refusing one: its instances plus its queue."""
    first = client.get_model_config(ensemble).config.ensemble_scheduling.step[0].model_name
    config = client.get_model_config(first).config
    return (
        sum(group.count for group in config.instance_group)
        + config.dynamic_batching.default_queue_policy.max_queue_size
    )


def in_flight_together(
    client: grpcclient.InferenceServerClient, model: str, requests: list[list], rounds: int = 10
) -> dict[int, object]:
    """Each request's result or InferenceServerException, sent asynchronously in admitted waves."""
    wave = admitted_at_once(client, model)
    assert wave >= 2, f"{model} admits {wave} request at once: no two can share a batch"
    outcomes: dict[int, object] = {}
    pending = list(range(len(requests)))
    for _ in range(rounds):
        if not pending:
            break
        sent, pending = pending[:wave], pending[wave:]
        results: dict[int, object] = {}
        done = threading.Event()

        def record(index: int, results=results, done=done, sent=sent):
            def callback(result, error) -> None:
                results[index] = error or result
                if len(results) == len(sent):
                    done.set()

            return callback

        for index in sent:
            client.async_infer(model, requests[index], record(index))
        assert done.wait(120), f"{len(sent) - len(results)} of {len(sent)} requests unanswered after 120 s"
        for index, outcome in results.items():
            if isinstance(outcome, InferenceServerException) and QUEUE_FULL in outcome.message():
                pending.append(index)
            else:
                outcomes[index] = outcome
    assert not pending, f"{len(pending)} requests still refused as overload after {rounds} waves"
    return outcomes
