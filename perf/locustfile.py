"""Locust: users that classify real photographs over gRPC with tritonclient, under a step load.

    locust -f perf/locustfile.py --headless --host 127.0.0.1:8001 --triton-model nextvit_small_224 \
        --step-users 2 --step-seconds 20 --steps 4 --csv build/perf/load/locust

`make load` runs exactly this (perf/load.py). Each user keeps one request in flight, so N users are
a closed loop like perf_analyzer's concurrency N. Every request carries the client library's deadline
(--request-timeout) and is cancelled past it, as a real client would, so the successes are the
goodput. Failures are named by cause (overloaded, deadline, refused) in the per-request rows.

Locust runs users as gevent greenlets; gRPC's C core blocks a whole OS thread unless its gevent
integration is switched on first, so init_gevent() runs before tritonclient.grpc is imported.
"""

from __future__ import annotations

import csv
import itertools
import os
import sys
import time

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import tritonclient.grpc as grpcclient  # noqa: E402
from locust import LoadTestShape, User, events, task  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from catalog.reference import sample_photo_paths  # noqa: E402
from client.classify import DEFAULT_DEADLINE_S, backoff_s  # noqa: E402
from client.failures import failure_kind  # noqa: E402
from model_repository.configs import TOP_K, TOP_K_OUTPUTS  # noqa: E402
from perf.input_data import image_tensor  # noqa: E402

PHOTOS = itertools.cycle([path.read_bytes() for path in sample_photo_paths()])


class AnswerError(RuntimeError):
    """The server answered, but not with a top-k classification."""


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--triton-model", default="nextvit_small_224", help="ensemble to call")
    parser.add_argument("--step-users", type=int, default=2, help="users added at each step")
    parser.add_argument("--step-seconds", type=float, default=20.0, help="duration of each step")
    parser.add_argument("--steps", type=int, default=4, help="number of steps; the run then stops")
    parser.add_argument("--samples-csv", default="", help="also write one row per request here")
    deadline = f"request deadline in seconds, then cancelled and failed (default {DEFAULT_DEADLINE_S:g})"
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_DEADLINE_S, help=deadline)


class _Samples:
    """Per-request rows (time, users, latency, error, cause) so each step gets exact percentiles."""

    file = None
    writer = None

    def open(self, environment, **_kwargs) -> None:
        if path := environment.parsed_options.samples_csv:
            self.file = open(path, "w", newline="")  # noqa: SIM115 - closed by close(), at quitting
            self.writer = csv.writer(self.file)
            self.writer.writerow(["time", "users", "latency_ms", "error", "cause"])

    def add(self, users: int, latency_ms: float, error: str, cause: str) -> None:
        if self.writer is not None:
            self.writer.writerow([f"{time.time():.3f}", users, f"{latency_ms:.2f}", error, cause])

    def close(self, **_kwargs) -> None:
        if self.file is not None:
            self.file.close()
        self.file = self.writer = None


SAMPLES = _Samples()
events.test_start.add_listener(SAMPLES.open)
events.quitting.add_listener(SAMPLES.close)


@events.quit.add_listener
def _exit_now(exit_code: int, **_kwargs) -> None:
    """Leave without interpreter finalization: every file is written and closed by now.

    With gRPC's gevent integration the process can block forever in finalization once Locust is
    done (seen here: a futex wait after the summary was printed; the class of grpc/grpc#20299),
    which would turn a finished load test into a timeout.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


class TritonGrpcUser(User):
    """One closed-loop client: classify a photograph, check the answer, repeat.

    After an overload refusal it waits as the client library does before its first retry (a jittered
    pause, client.classify.backoff_s), so users past capacity measure refusals, not a busy loop of them.
    """

    overloaded = False

    def wait_time(self) -> float:
        return backoff_s(0) if self.overloaded else 0.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.model = options.triton_model
        self.timeout = options.request_timeout
        self.client = grpcclient.InferenceServerClient((self.host or "127.0.0.1:8001").removeprefix("grpc://"))
        self.outputs = [grpcclient.InferRequestedOutput(name) for name in TOP_K_OUTPUTS]

    def on_stop(self) -> None:
        self.client.close()

    def _classify(self, photo: bytes) -> int:
        tensor = image_tensor(grpcclient, photo)
        result = self.client.infer(
            self.model, [tensor], outputs=self.outputs, client_timeout=self.timeout, timeout=int(self.timeout * 1e6)
        )
        labels = result.as_numpy("LABELS")
        if labels is None or labels.shape != (1, TOP_K):
            raise AnswerError(f"expected LABELS of shape (1, {TOP_K}), got {None if labels is None else labels.shape}")
        return sum(result.as_numpy(name).nbytes for name in TOP_K_OUTPUTS)

    @task
    def classify(self) -> None:
        photo = next(PHOTOS)
        start = time.perf_counter()
        try:
            length, exception = self._classify(photo), None
        except (InferenceServerException, AnswerError) as err:
            length, exception = 0, err
        latency_ms = (time.perf_counter() - start) * 1000.0
        cause = "" if exception is None else "answer" if isinstance(exception, AnswerError) else failure_kind(exception)
        self.overloaded, error = cause == "overloaded", "" if exception is None else str(exception)
        SAMPLES.add(self.environment.runner.user_count, latency_ms, error, cause)
        events.request.fire(
            request_type="grpc",
            name=self.model,
            response_time=latency_ms,
            response_length=length,
            # Locust names a failure by its exception's repr, which for tritonclient's is bare: give it the words.
            exception=exception and RuntimeError(f"{cause}: {error}"),
            context={},
        )


class StepLoad(LoadTestShape):
    """step_users more users every step_seconds, for `steps` steps, then stop."""

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if elapsed >= options.steps * options.step_seconds:
            return None
        step = int(elapsed // options.step_seconds) + 1
        return step * options.step_users, float(options.step_users)
