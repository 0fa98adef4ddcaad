"""The interactive path on the real tritonserver 2.51.0: instances of its own, then the network's level.

A client that must hear within 2 s calls `<model>_interactive` with priority configs.INTERACTIVE_PRIORITY
(client.Classifier(interactive=True)). Its first step is the preprocess step on an instance no other
traffic reaches (configs.interactive_preprocess_config); on CPU its network too
(configs.interactive_network_config); on a GPU the ensemble hands the priority to the shared network,
whose two levels (configs.with_interactive_level) serve it first. Checked here: with the sleeper
(tests/support/sleeper.py) standing in for a network, an interactive request queued after a batch
request is answered first through an ensemble; with every instance of the real shared preprocess step
held busy by 8-photo requests, an interactive request is answered through both reserved instances,
spending milliseconds at its preprocess step, while the same photo sent to `<model>` is refused; and an
interactive request over the reserved step's limit is refused at once, naming the limit. `python -m perf
drills flood` measures the 2 s goal at full size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import catalog
from client.classify import Classifier, ClientError
from model_repository import configs
from model_repository.server import free_port
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES
from tests.support import images
from tests.support.sleeper import SLEEPER_PY, PlainServer, sleeper_config

PATIENT_US = 30_000_000  # long enough that nothing here is refused for waiting
GOAL_S = 2.0  # docs/reliability.md: answered within 2 s, or refused within 1 s
ENTRY = catalog.get("NextViT_small_224")  # the costlier preprocessing of the session's two models
SMALL = images.jpeg(images.sized(500, 375))  # the drills' interactive photo size


def step(name: str, interactive: configs.ConfigDict) -> configs.ConfigDict:
    """A sleeper with two priority levels, as every network has them."""
    patient = configs.queue_policy("preprocess", PATIENT_US) | {"max_queue_size": 8}
    return sleeper_config() | {
        "name": name,
        "dynamic_batching": configs.with_interactive_level({"default_queue_policy": patient}, interactive),
    }


def ensemble(name: str, model: str) -> configs.ConfigDict:
    config = sleeper_config()
    route = {"model_name": model, "model_version": -1, "input_map": {"MS": "MS"}, "output_map": {"OUT": "OUT"}}
    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": 1,
        "input": config["input"],
        "output": config["output"],
        "ensemble_scheduling": {"step": [route]},
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainServer]:
    repo = tmp_path_factory.mktemp("priority") / "repo"
    patient = configs.queue_policy("preprocess", PATIENT_US) | {"max_queue_size": 8}
    models = {"ordered": step("ordered", patient), "chain": ensemble("chain", "ordered")}
    for name, config in models.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(configs.to_pbtxt(config))
        if config.get("backend") == "python":
            (repo / name / "1" / "model.py").write_text(SLEEPER_PY)
    server = PlainServer(repo, free_port(), free_port(), free_port(), log_path=repo.parent / "triton.log")
    with server:
        yield server


def send(server: PlainServer, model: str, ms: int, priority: int, finished: list) -> threading.Thread:
    """`ms` of sleep on `model` from a thread; on completion appends (priority, outcome) to `finished`."""

    def run() -> None:
        tensor = grpcclient.InferInput("MS", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[ms]], dtype=np.int32))
        try:
            grpcclient.InferenceServerClient(server.grpc_url).infer(model, [tensor], priority=priority)
            finished.append((priority, ms, "ok"))
        except InferenceServerException as err:
            finished.append((priority, ms, err.message()))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)  # each request reaches the queue before the next is sent
    return thread


@pytest.mark.server
def test_an_interactive_request_queued_behind_batch_work_is_answered_first_through_the_ensemble(server) -> None:
    finished: list = []
    threads = [
        send(server, "chain", 1500, 0, finished),  # runs
        send(server, "chain", 10, 0, finished),  # waits at the default level
        send(server, "chain", 10, configs.INTERACTIVE_PRIORITY, finished),  # waits apart, taken first
    ]
    for thread in threads:
        thread.join()
    assert finished == [(0, 1500, "ok"), (configs.INTERACTIVE_PRIORITY, 10, "ok"), (0, 10, "ok")]


# --- the reserved instance, on the session's real server -------------------------------------------


def timed(classifier: Classifier, photos: list[bytes]) -> tuple[str, float]:
    """("ok" or the client's error, seconds) for one request of `photos`."""
    start = time.monotonic()
    try:
        classifier.classify(photos)
        return "ok", time.monotonic() - start
    except ClientError as err:
        return str(err), time.monotonic() - start


class Flood:
    """Senders that keep resending 8 camera photos to `<model>` until stopped: every shared instance busy."""

    def __init__(self, url: str, senders: int) -> None:
        photo = images.jpeg(images.sized(4000, 3000, "coffee.png"), quality=95)
        self.request = [photo] * min(configs.MAX_BATCH_SIZE, DEFAULT_MAX_REQUEST_BYTES // len(photo))
        self.url, self.stop = url, threading.Event()
        self.threads = [threading.Thread(target=self._send) for _ in range(senders)]

    def _send(self) -> None:
        with Classifier(self.url, ENTRY.triton_name, retries=0, deadline_s=60.0) as classifier:
            while not self.stop.is_set():
                if timed(classifier, self.request)[0] != "ok":
                    self.stop.wait(0.05)  # refused at once: do not spin

    def __enter__(self) -> Flood:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_the_interactive_path_answers_as_the_main_ensemble_does(triton_server) -> None:
    with (
        Classifier(triton_server.grpc_url, ENTRY.triton_name, retries=0) as main,
        Classifier(triton_server.grpc_url, ENTRY.triton_name, retries=0, interactive=True) as interactive,
    ):
        interactive.check_ready()
        (reserved,), (shared,) = interactive.classify([SMALL]), main.classify([SMALL])
    # The same crop through the same network and postprocess (a batch may differ in the last bits).
    assert reserved.class_ids == shared.class_ids
    assert np.allclose(reserved.scores, shared.scores, rtol=0, atol=1e-6)


def step_ms(client: grpcclient.InferenceServerClient, name: str, headers: dict) -> tuple[int, float]:
    """Requests a step has answered, and the milliseconds they spent in it (queue and compute), so far."""
    stats = client.get_inference_statistics(name, headers=headers).model_stats[0].inference_stats
    return stats.success.count, (stats.queue.ns + stats.compute_infer.ns) / 1e6


def test_an_interactive_request_is_answered_while_every_shared_instance_is_busy(triton_server) -> None:
    """The reserved steps answer under the flood: the preprocess instance in milliseconds, then the network's.

    Before the portable network had an instance reserved for them, the wait for its running 8-image
    execution was nearly all of the latency (0.7-5.1 s end to end in four runs on the 2-core test
    machine, tests under `nice -n 19`). The 2 s goal itself is `python -m perf drills flood`'s.
    """
    url, headers, name = (
        triton_server.grpc_url,
        triton_server.admin_headers("grpc"),
        configs.interactive_preprocess_name(ENTRY),
    )
    with grpcclient.InferenceServerClient(url) as client:
        shared = client.get_model_config(configs.preprocess_name(ENTRY)).config
        admitted = (
            sum(group.count for group in shared.instance_group)
            + shared.dynamic_batching.default_queue_policy.max_queue_size
        )
        interactive, control = [], []
        with (
            Classifier(url, ENTRY.triton_name, retries=0, interactive=True) as reserved,
            Classifier(url, ENTRY.triton_name, retries=0) as main,
            Flood(url, admitted + 2),
        ):
            time.sleep(2.0)  # every instance has started an execution of 8 photos and the queue is full
            before = step_ms(client, name, headers)
            network_before = step_ms(client, configs.interactive_network_name(ENTRY), headers)[0]
            for _ in range(6):
                interactive.append(timed(reserved, [SMALL]))
                control.append(timed(main, [SMALL]))  # the same photo through the shared step
                time.sleep(0.5)
            after = step_ms(client, name, headers)
            network_after = step_ms(client, configs.interactive_network_name(ENTRY), headers)[0]
    answered, spent_ms = after[0] - before[0], after[1] - before[1]
    print(f"\ninteractive {[(o[:40], round(s, 2)) for o, s in interactive]}; at the reserved step {spent_ms:.1f} ms")
    print(f"control {[(o[:40], round(s, 2)) for o, s in control]}")
    # The premise: the shared step was saturated, so the same photo there was refused (or very late).
    assert sum(outcome != "ok" or seconds > GOAL_S for outcome, seconds in control) >= len(control) // 2, control
    assert all(outcome == "ok" for outcome, _ in interactive), interactive
    # Every one went through the reserved instance and left it well within its own queue timeout.
    assert answered == len(interactive)
    assert spent_ms / answered < configs.INTERACTIVE_TIMEOUT_US / 1000
    # ... and through the network instance reserved for them (portable), not the flood's.
    assert network_after - network_before == len(interactive)


def test_an_interactive_request_over_the_limit_is_refused_at_once_naming_it(triton_server) -> None:
    phone = images.jpeg_declaring(images.sized(64, 48), 4032, 3024)  # declares 12.2 MP in a few kB
    with Classifier(triton_server.grpc_url, ENTRY.triton_name, retries=0, interactive=True) as reserved:
        outcome, seconds = timed(reserved, [phone, phone])
    limit = f"over the limit of {configs.INTERACTIVE_MAX_REQUEST_PIXELS:,} pixels per request"
    assert limit in outcome and "max_request_pixels" in outcome and "send fewer images" in outcome, outcome
    assert seconds < 1.0
