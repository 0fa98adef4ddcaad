"""The interactive priority level on the real tritonserver 2.51.0: queued apart, served first, refused early.

Every step with a queue policy has two priority levels (configs.with_interactive_level); a client
that must hear within 2 s sends priority configs.INTERACTIVE_PRIORITY. With the sleeper
(tests/support/sleeper.py) standing in for a busy step, the checks are orderings, not timings: through an
ensemble (which hands its steps the request's priority), an interactive request queued after a
batch request is answered before it; and with production's interactive policy, an interactive
request behind a running execution is refused before that execution ends. The latency goal itself
is measured by `python -m perf drills flood`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from model_repository import configs
from model_repository.server import free_port
from tests.support.sleeper import SLEEPER_PY, PlainServer, sleeper_config

PATIENT_US = 30_000_000  # long enough that nothing here is refused for waiting


def step(name: str, interactive: configs.ConfigDict) -> configs.ConfigDict:
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
    models = {
        "ordered": step("ordered", patient),
        "chain": ensemble("chain", "ordered"),
        # Production's interactive level, as configs.preprocess_config gives it (one instance).
        "front": step("front", configs.queue_policy("preprocess", configs.INTERACTIVE_TIMEOUT_US)),
    }
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


@pytest.mark.server
def test_an_interactive_request_behind_a_running_execution_is_refused_before_it_ends(server) -> None:
    finished: list = []
    threads = [
        send(server, "front", 4000, 0, finished),  # runs
        send(server, "front", 10, configs.INTERACTIVE_PRIORITY, finished),  # times out while it runs
    ]
    for thread in threads:
        thread.join()
    (first, second) = finished
    assert first[:2] == (configs.INTERACTIVE_PRIORITY, 10) and "Request timeout expired" in first[2], finished
    assert second == (0, 4000, "ok")
