"""Load shedding and a dead step against the real tritonserver 2.51.0, plus the client's retry rules.

A one-instance Python model that sleeps as long as asked stands in for a busy step, with the same
kind of bounded queue configs.queue_policy gives every composing model (a size of 2, a 200 ms
timeout), so each case takes seconds rather than a real overload.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client import classify, failures
from model_repository import configs, health, layout, procfs
from model_repository.server import TritonServer
from tests.support.processes import descendants
from tests.support.sleeper import QUEUE_SIZE, SLEEPER_PY, TIMEOUT_US, PlainServer, sleeper_config


@pytest.fixture
def sleeper(tmp_path: Path):
    (tmp_path / "repo" / "sleeper" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "sleeper" / "config.pbtxt").write_text(configs.to_pbtxt(sleeper_config()))
    (tmp_path / "repo" / "sleeper" / "1" / "model.py").write_text(SLEEPER_PY)
    stubs = layout.python_instances(sleeper_config())
    (tmp_path / "repo" / health.MARKER).write_text(json.dumps({"python_stub_processes": stubs}))
    server = PlainServer.on_free_ports(tmp_path / "repo", tmp_path / "triton.log")
    with server:
        yield server


def call(server: TritonServer, ms: int, results: list, timeout_s: float = 20.0, model: str = "sleeper") -> None:
    tensor = grpcclient.InferInput("MS", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[ms]], dtype=np.int32))
    start = time.monotonic()
    try:
        grpcclient.InferenceServerClient(server.grpc_url).infer(model, [tensor], client_timeout=timeout_s)
        results.append(("ok", time.monotonic() - start, ""))
    except InferenceServerException as err:
        results.append((failures.failure_kind(err), time.monotonic() - start, err.message()))


def in_threads(*calls) -> list[threading.Thread]:
    threads = []
    for target, delay in calls:
        threads.append(threading.Thread(target=target))
        threads[-1].start()
        time.sleep(delay)
    return threads


@pytest.mark.server
def test_a_full_queue_refuses_at_once_and_a_queue_timeout_before_the_execution_ends(sleeper: TritonServer) -> None:
    busy, queued, refused = [], [], []
    threads = in_threads(
        (lambda: call(sleeper, 3000, busy), 0.3),  # occupies the only instance for 3 s
        *[(lambda: call(sleeper, 10, queued), 0.05) for _ in range(QUEUE_SIZE)],
        *[(lambda: call(sleeper, 10, refused), 0.05) for _ in range(2)],
    )
    for thread in threads:
        thread.join()
    assert busy[0][0] == "ok"
    # Queue full: refused within milliseconds, with the words the client treats as "overloaded".
    assert [r[0] for r in refused] == ["overloaded"] * 2 and all(r[1] < 0.5 for r in refused), refused
    assert all(failures.message_cause(r[2]) == "queue full" for r in refused), refused
    # Queue timeout: measured on 2.51, refused at the batcher's next wake-up (~0.5 s ticks), within
    # the timeout + 1 s, while the 3 s execution still runs (not only between executions).
    assert [r[0] for r in queued] == ["overloaded"] * QUEUE_SIZE, queued
    assert all(
        failures.message_cause(r[2]) == "queue timeout" and TIMEOUT_US / 1e6 <= r[1] < TIMEOUT_US / 1e6 + 1.0
        for r in queued
    )


@pytest.mark.server
def test_a_killed_step_process_fails_its_requests_but_the_server_stays_ready(sleeper: TritonServer) -> None:
    assert sleeper.process is not None
    stubs = [pid for pid, command in descendants(sleeper.process.pid).items() if "python_backend_stub" in command]
    assert len(stubs) == 1
    live = ["--repository", str(sleeper.repository), "--pid", str(sleeper.process.pid)]
    live += ["--http-port", str(sleeper.http_port)]
    assert health.main(live) == 0
    os.kill(stubs[0], signal.SIGKILL)
    time.sleep(1.0)
    results: list = []
    for _ in range(3):
        call(sleeper, 10, results)
    # Observed on 2.51: no restart of the stub; requests fail after about 1 s (INTERNAL, naming the
    # dead stub, or a queue timeout while the dead instance holds the queue): the client counts both
    # as the server's fault (retryable, e.g. on another replica), never the request's.
    assert all(r[0] == "overloaded" and r[1] < 3.0 for r in results), results
    assert any(failures.message_cause(r[2]) == "dead step" and "'sleeper_0_0'" in r[2] for r in results), results
    # ...while every health endpoint still says 200: Triton's own probes cannot see it. The launcher's
    # StepWatch and the chart's liveness check see it (both model_repository/health.py dead_steps).
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/sleeper/ready"):
        with urllib.request.urlopen(f"http://{sleeper.http_url}{path}", timeout=5) as response:
            assert response.status == 200, path
    assert health.main(live) == 1
    assert "1 of 1 Python step processes died" in (health.problem(sleeper.repository, sleeper.process.pid) or "")


class FakeTriton:
    """tritonclient's module as far as Classifier._infer uses it, failing the first `failures` calls."""

    def __init__(self, error: InferenceServerException, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0


def _fake_classifier(monkeypatch: pytest.MonkeyPatch, error: InferenceServerException, failures: int, retries: int):
    classifier = classify.Classifier("127.0.0.1:1", "m", retries=retries)
    fake = FakeTriton(error, failures)
    answer = {
        "LABELS": np.array([[b"cat"] * 5], dtype=object),
        "SCORES": np.array([[0.5, 0.2, 0.1, 0.1, 0.1]], dtype=np.float32),
        "CLASS_IDS": np.arange(5).reshape(1, 5),
    }

    class Result:
        def as_numpy(self, name: str):
            return answer[name]

    def infer_once(_model, _tensor, _outputs):
        fake.calls += 1
        if fake.calls <= fake.failures:
            raise fake.error
        return Result()

    monkeypatch.setattr(classifier, "_infer_once", infer_once)
    monkeypatch.setattr(classify.time, "sleep", lambda _s: None)
    return classifier, fake


def test_overload_is_retried_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    full = InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")
    classifier, fake = _fake_classifier(monkeypatch, full, failures=2, retries=2)
    assert classifier.classify([b"x"])[0].labels[0] == "cat" and fake.calls == 3
    classifier, fake = _fake_classifier(monkeypatch, full, failures=9, retries=2)
    with pytest.raises(classify.OverloadedError, match="retry later"):
        classifier.classify([b"x"])
    assert fake.calls == 3


def test_a_bad_image_or_a_missed_deadline_is_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = InferenceServerException("truncated JPEG (no end-of-image marker)", status="StatusCode.INTERNAL")
    classifier, fake = _fake_classifier(monkeypatch, bad, failures=9, retries=2)
    with pytest.raises(classify.InferenceError, match="truncated JPEG"):
        classifier.classify([b"x"])
    assert fake.calls == 1
    late = InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")
    classifier, fake = _fake_classifier(monkeypatch, late, failures=9, retries=2)
    with pytest.raises(classify.DeadlineExceededError):
        classifier.classify([b"x"])
    assert fake.calls == 1


def test_backoff_is_jittered_and_capped() -> None:
    import random

    rng = random.Random(0)
    pauses = [classify.backoff_s(attempt, rng) for attempt in range(10) for _ in range(20)]
    assert all(0 <= p <= classify.BACKOFF_CAP_S for p in pauses) and len(set(pauses)) == len(pauses)
    assert max(classify.backoff_s(0, rng) for _ in range(50)) <= classify.BACKOFF_BASE_S


def thread_niceness(pid: int) -> set[int]:
    """The nice values of a process's threads (/proc/<pid>/task/<tid>/stat, field 19)."""
    values = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            values.add(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
        except (OSError, IndexError, ValueError):
            continue
    return values


@pytest.mark.server
def test_preprocess_processes_yield_contended_cores_to_the_network_and_the_server(triton_server: TritonServer) -> None:
    assert triton_server.process is not None
    stubs = procfs.python_stubs(triton_server.process.pid)
    preprocess = [s for s in stubs if "/preprocess_" in s.command or "/pixels_preprocess_" in s.command]
    others = [s for s in stubs if s not in preprocess]
    # The interactive step keeps the server's priority: its short executions are what refuse on time.
    assert any(f"/{configs.INTERACTIVE_PREPROCESS_PREFIX}" in s.command for s in others)
    assert preprocess and others, [s.command for s in stubs]
    server = os.getpriority(os.PRIO_PROCESS, triton_server.process.pid)  # 0, or the niceness the tests run at
    for stub in preprocess:  # below the server's, wherever it runs
        assert thread_niceness(stub.pid) == {min(19, server + configs.PREPROCESS_NICENESS)}, stub.command
    for stub in others:  # networks and top-k: the work nearest an answer keeps the server's priority
        assert thread_niceness(stub.pid) == {server}, stub.command


PATIENT_TIMEOUT_US = 30_000_000  # a queue that would hold a request far past any client's patience


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):
    """`patient` (the sleeper with a 30 s queue timeout) alone and behind a one-step ensemble, `chain`."""
    repo = tmp_path_factory.mktemp("chain") / "repo"
    config = sleeper_config() | {"name": "patient"}
    config["dynamic_batching"] = {
        "default_queue_policy": configs.queue_policy("preprocess", PATIENT_TIMEOUT_US) | {"max_queue_size": 8}
    }
    ensemble = {
        "name": "chain",
        "platform": "ensemble",
        "max_batch_size": 1,
        "input": config["input"],
        "output": config["output"],
        "ensemble_scheduling": {
            "step": [
                {"model_name": "patient", "model_version": -1, "input_map": {"MS": "MS"}, "output_map": {"OUT": "OUT"}}
            ]
        },
    }
    for name, text in (("patient", configs.to_pbtxt(config)), ("chain", configs.to_pbtxt(ensemble))):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
    (repo / "patient" / "1" / "model.py").write_text(SLEEPER_PY)
    server = PlainServer.on_free_ports(repo, repo.parent / "triton.log")
    with server:
        yield server


def executions(server: TritonServer, model: str) -> int:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    stats = client.get_inference_statistics(model, headers=server.admin_headers("grpc"), as_json=True)
    return int(stats["model_stats"][0].get("execution_count", 0))


def abandon_behind_a_busy_step(server: TritonServer, model: str, timeout_us: int | None) -> int:
    """How many executions of `patient` one request abandoned after 0.3 s (queued behind 1.5 s of work) cost."""
    before, busy = executions(server, "patient"), []
    thread = threading.Thread(target=lambda: call(server, 1500, busy, model="patient"))
    thread.start()
    time.sleep(0.2)
    tensor = grpcclient.InferInput("MS", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[10]], dtype=np.int32))
    with pytest.raises(InferenceServerException, match="Deadline"):
        grpcclient.InferenceServerClient(server.grpc_url).infer(model, [tensor], client_timeout=0.3, timeout=timeout_us)
    thread.join()
    assert busy[0][0] == "ok", busy
    time.sleep(1.0)  # the abandoned request, if it still runs, has finished by now
    return executions(server, "patient") - before - 1


@pytest.mark.server
def test_an_abandoned_request_is_dropped_only_if_its_deadline_travels_with_it_through_an_ensemble(chain) -> None:
    # Measured on 2.51: gRPC cancellation drops an abandoned request from a model's own queue...
    assert abandon_behind_a_busy_step(chain, "patient", None) == 0
    # ...but not from the queues of an ensemble's steps: the step computes an answer nobody waits for.
    assert abandon_behind_a_busy_step(chain, "chain", None) == 1
    # The request's timeout does reach the steps: sent with the deadline (as client/classify.py, the
    # Locust user and the drills do), the step's queue refuses it unexecuted.
    assert abandon_behind_a_busy_step(chain, "chain", 300_000) == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_client_sends_its_deadline_as_the_request_timeout(monkeypatch: pytest.MonkeyPatch, protocol) -> None:
    classifier = classify.Classifier("127.0.0.1:1", "m", protocol=protocol, deadline_s=2.5)
    seen: dict = {}

    class Recorder:
        def infer(self, model, inputs, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(classifier, "_client", Recorder)
    classifier._infer_once("m", object(), [])
    assert seen["timeout"] == 2_500_000  # microseconds, what a step's queue compares with
    if protocol == "grpc":
        assert seen["client_timeout"] == 2.5
