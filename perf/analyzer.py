"""Drive perf_analyzer (tritonclient 2.51.0's binary) over gRPC, one concurrency level at a time.

Each point is perf_analyzer's time-window measurement (perf/README.md, "Notes on the tools"), not
--request-count: 2.51 divides a request count by a duration rounded up to whole seconds. Around
each point the server's statistics and metrics are read, so its time split and failures are its own.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from client.failures import QUEUE_REJECTIONS
from model_repository.admin import admin_headers, header_name
from perf import triton_stats
from perf.machine import measure_quietly

PERF_LIBS = Path(__file__).resolve().parent.parent / "build" / "perf_libs"
# perf_analyzer links against libb64 and libcudart even on CPU; the nvidia-pytriton wheel carries
# both under hashed names. Links with the sonames it asks for, on LD_LIBRARY_PATH for it alone.
LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
UNSTABLE = "Failed to obtain stable measurement"


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer failed (a failed request makes it fail too); the message carries its output."""


def binary() -> Path:
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.exists():
        raise PerfAnalyzerError(f"{path} is missing: tritonclient[all]==2.51.0 installs it (run `make setup`)")
    return path


def environment() -> dict[str, str]:
    """This environment with build/perf_libs (links to the wheel's two libraries) first on LD_LIBRARY_PATH."""
    import pytriton

    wheel_libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    PERF_LIBS.mkdir(parents=True, exist_ok=True)
    for soname, pattern in LIBRARIES.items():
        matches = sorted(wheel_libs.glob(pattern))
        if not matches:
            raise PerfAnalyzerError(f"no {pattern} in {wheel_libs}: is nvidia-pytriton==0.7.0 installed?")
        link = PERF_LIBS / soname
        if not (link.is_symlink() and link.resolve() == matches[0].resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(matches[0])
    paths = filter(None, [str(PERF_LIBS), os.environ.get("LD_LIBRARY_PATH")])
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(paths)}


@dataclass(frozen=True)
class Target:
    """Where to send load: a gRPC address, the metrics endpoint of the same server, and its admin key.

    The key opens the statistics API the time split is read from (and perf_analyzer reads it too);
    the server restricts it (docs/security.md). Never printed: repr leaves it out, logs redact it.
    """

    grpc_url: str
    metrics_url: str
    admin_key: str | None = field(default=None, repr=False)

    def admin_headers(self) -> dict[str, str] | None:
        """gRPC metadata for the restricted statistics API."""
        return admin_headers("grpc", self.admin_key)


@dataclass(frozen=True)
class Windows:
    """perf_analyzer's stabilisation: window length, allowed spread, and the looser fallback.

    `quiet_percent` guards against other processes: a point during which they used more than that
    share of the machine is measured again (machine.measure_quietly). None disables the guard.
    """

    window_ms: int
    stability_percent: int
    fallback_stability_percent: int = 100
    max_trials: int = 10
    quiet_percent: float | None = None


@dataclass(frozen=True)
class Point:
    """One concurrency level: perf_analyzer's client-side numbers plus the server's own split."""

    concurrency: int
    requests: int  # in the reported (merged) windows
    throughput: float  # inferences (images) per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    server_queue_ms: float
    server_compute_ms: float
    split: list[dict[str, object]]
    failed_requests: int
    failures_by_reason: dict[str, float]
    server_cpu_utilization: float | None
    stability_percent: int  # the criterion the reported windows met
    window_ms: int
    server_requests: int  # every request the server saw during the point, stabilisation included
    other_cpu_percent: float = 0.0  # CPU used by processes outside this run (machine.ForeignCpu)
    attempts: int = 1  # > 1 when earlier attempts were discarded because other processes were busy


SHARED_MEMORY = "none"  # perf_analyzer --shared-memory: never client shared memory (see command)


def command(target: Target, model: str, concurrency: int, input_data: Path, csv_path: Path) -> list[str]:
    """The common part of every invocation; measurement options are appended by the caller."""
    return [
        *(str(binary()), "-m", model, "-u", target.grpc_url, "-i", "grpc", "--input-data", str(input_data)),
        *("--concurrency-range", str(concurrency), "-f", str(csv_path), "--verbose-csv", "--collect-metrics"),
        # Tensors travel in the requests: a production server (26.05 and later) refuses client shared
        # memory unless started with --allow-client-shm (the chart's server.allowClientShm, off), and
        # only a client on the server's node could use it. perf_analyzer's default, stated.
        *("--shared-memory", SHARED_MEMORY),
        *("--metrics-url", target.metrics_url.removeprefix("http://")),
        # perf_analyzer reads the server's statistics API around each measurement: over gRPC, 2.51's
        # -H adds the header to the metadata too (its --help says otherwise; checked on the server).
        *(["-H", f"{header_name('grpc')}:{target.admin_key}"] if target.admin_key else []),
    ]


def printable(cmd: list[str]) -> str:
    """The command as logs show it: header values (the admin key) redacted."""
    shown = (arg.partition(":")[0] + ":<redacted>" if before == "-H" else arg for before, arg in pairwise(["", *cmd]))
    return " ".join(shown)


def run(cmd: list[str], log_path: Path, timeout_s: float) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        log.write(printable(cmd) + "\n\n")
        log.flush()
        result = subprocess.run(cmd, env=environment(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise PerfAnalyzerError(f"perf_analyzer exited with {result.returncode}; see {log_path}:\n{tail}")


def run_windows(cmd: list[str], windows: Windows, log_path: Path, timeout_s: float) -> int:
    """Run with the strict criterion, then the loose one if the machine was too noisy; returns the one met."""
    for stability in (windows.stability_percent, windows.fallback_stability_percent):
        options = ["--measurement-mode", "time_windows", "--measurement-interval", str(windows.window_ms)]
        options += ["--stability-percentage", str(stability), "--max-trials", str(windows.max_trials)]
        try:
            run(cmd + options, log_path, timeout_s)
            return stability
        except PerfAnalyzerError:
            if stability == windows.fallback_stability_percent or UNSTABLE not in log_path.read_text(errors="replace"):
                raise
    raise AssertionError("unreachable")


def read_csv(csv_path: Path) -> dict[str, str]:
    """The single data row perf_analyzer writes for one concurrency level."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise PerfAnalyzerError(f"{csv_path}: expected one measurement row, found {len(rows)}")
    return rows[0]


@dataclass(frozen=True)
class Analyzer:
    """perf_analyzer against one server: with which input, how each point stabilises, where its files go."""

    client: Any  # a tritonclient.grpc.InferenceServerClient of the same server, for its statistics
    target: Target
    input_data: Path
    windows: Windows
    out: Path
    progress: Callable[[str], None] = print

    def point(self, model: str, concurrency: int) -> Point:
        """One point: perf_analyzer at `concurrency`, bracketed by the server's counters."""
        csv_path = self.out / f"{model}_c{concurrency}.csv"
        log_path = csv_path.with_suffix(".log")
        steps = triton_stats.ensemble_steps(self.client, model)
        before = triton_stats.snapshot(self.client, self.target.admin_headers())
        earlier = triton_stats.failures_by_reason(triton_stats.scrape(self.target.metrics_url), model)
        cmd = command(self.target, model, concurrency, self.input_data, csv_path)
        stability = run_windows(cmd, self.windows, log_path, 3600.0)
        delta = triton_stats.difference(before, triton_stats.snapshot(self.client, self.target.admin_headers()))
        samples = triton_stats.scrape(self.target.metrics_url)
        row = read_csv(csv_path)

        def ms(column: str) -> float:
            return float(row[column]) / 1000.0  # perf_analyzer writes microseconds

        requests = re.search(r"Client:\s*\n\s*Request count: (\d+)", log_path.read_text(errors="replace"))
        failures = triton_stats.failures_by_reason(samples, model)
        ensemble = delta.get(model, triton_stats.ModelCounters())
        return Point(
            concurrency=concurrency,
            requests=int(requests.group(1)) if requests else 0,
            throughput=float(row["Inferences/Second"]),
            **{f"{p}_ms": ms(f"{p} latency") for p in ("p50", "p90", "p95", "p99")},
            avg_ms=ms("Avg latency"),
            server_queue_ms=ms("Server Queue"),
            server_compute_ms=sum(ms(f"Server Compute {part}") for part in ("Input", "Infer", "Output")),
            split=triton_stats.step_split(delta, steps),
            failed_requests=ensemble.fail,
            failures_by_reason={reason: n - earlier.get(reason, 0.0) for reason, n in failures.items()},
            server_cpu_utilization=triton_stats.gauge(samples, "nv_cpu_utilization"),
            stability_percent=stability,
            window_ms=self.windows.window_ms,
            server_requests=ensemble.success,
        )

    def measure(self, model: str, concurrency: int) -> Point:
        """One point, measured again while other processes took more than windows.quiet_percent of the machine."""
        measured = measure_quietly(
            lambda: self.point(model, concurrency), self.windows.quiet_percent, progress=self.progress
        )
        return replace(measured.value, other_cpu_percent=measured.other_cpu_percent, attempts=measured.attempts)

    def warm_up(self, model: str, requests: int = 8) -> None:
        """Unrecorded requests first: first calls pay for lazy allocations and page faults in every step."""
        csv_path = self.out / f"{model}_warmup.csv"
        cmd = [*command(self.target, model, 2, self.input_data, csv_path), "--request-count", str(requests)]
        run(cmd, csv_path.with_suffix(".log"), 1800.0)

    def sweep(self, model: str, concurrencies: Iterable[int]) -> list[Point]:
        """The points up to the first concurrency the server sheds as overload: beyond it clients meet refusals."""
        self.warm_up(model)
        points = []
        for concurrency in concurrencies:
            try:
                points.append(p := self.measure(model, concurrency))
            except PerfAnalyzerError as err:
                if not points or not any(words in str(err) for words in QUEUE_REJECTIONS):
                    raise
                self.progress(f"  {model} concurrency {concurrency}: refused as overload, the sweep ends")
                break
            self.progress(f"  {model} concurrency {concurrency}: {p.throughput:.2f} images/s, p50 {p.p50_ms:.1f} ms")
        return points
