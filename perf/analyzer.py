"""Drive perf_analyzer (tritonclient 2.51.0's binary) over gRPC, one concurrency level at a time.

Each point uses perf_analyzer's time windows: it counts the requests completed in each window of
`window_ms` and repeats until three consecutive windows agree within `stability` percent, then
reports those three merged. Not --request-count: in that mode perf_analyzer 2.51 divides the
count by a duration rounded up to whole seconds (60 requests of 86 ms reported as 9.99/s instead
of 11.6/s), which understates throughput by up to a second per point. When a noisy machine
cannot meet the stability criterion, the point is measured again with a looser one, and the
report shows which criterion each point met. Around each point the server's per-model
statistics and Prometheus metrics are read, so the time split and failure count belong to that
point alone.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model_repository.server import admin_headers, header_name
from perf import triton_stats
from perf.machine import ForeignCpu, wait_for_quiet

PROJECT = Path(__file__).resolve().parent.parent
PERF_LIBS = PROJECT / "build" / "perf_libs"

# perf_analyzer links against libb64 and libcudart even on CPU; the nvidia-pytriton wheel carries
# both under hashed names. Links with the sonames it asks for, on LD_LIBRARY_PATH for it alone.
LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer failed (a failed request makes it fail too); the message carries its output."""


def binary() -> Path:
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.exists():
        raise PerfAnalyzerError(f"{path} is missing: tritonclient[all]==2.51.0 installs it (run `make setup`)")
    return path


def library_dir() -> Path:
    """build/perf_libs with the two links perf_analyzer needs, made from the wheel's copies."""
    import pytriton

    wheel_libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    PERF_LIBS.mkdir(parents=True, exist_ok=True)
    for soname, pattern in LIBRARIES.items():
        matches = sorted(wheel_libs.glob(pattern))
        if not matches:
            raise PerfAnalyzerError(f"no {pattern} in {wheel_libs}: is nvidia-pytriton==0.7.0 installed?")
        link = PERF_LIBS / soname
        if link.is_symlink() and link.resolve() != matches[0].resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(matches[0])
    return PERF_LIBS


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(library_dir()), env.get("LD_LIBRARY_PATH")]))
    return env


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


@dataclass
class Point:
    """One concurrency level: perf_analyzer's client-side numbers plus the server's own split."""

    concurrency: int
    requests: int
    throughput: float  # inferences (images) per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    server_queue_ms: float
    server_compute_ms: float
    split: list[dict[str, object]] = field(default_factory=list)
    failed_requests: float = 0.0
    failures_by_reason: dict[str, float] = field(default_factory=dict)
    server_cpu_utilization: float | None = None
    stability_percent: int | None = None  # the criterion the reported windows met
    window_ms: int | None = None
    server_requests: int = 0  # every request the server saw during the point, stabilisation included
    other_cpu_percent: float | None = None  # CPU used by processes outside this run (machine.ForeignCpu)
    attempts: int = 1  # > 1 when earlier attempts were discarded because other processes were busy

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Windows:
    """perf_analyzer's stabilisation: window length, allowed spread, and the looser fallback.

    `quiet_percent` guards against other processes: a point during which they used more than
    that share of the machine is measured again (up to `repeats` times) once they have calmed
    down (waiting at most `quiet_wait_s` each time). None disables the guard.
    """

    window_ms: int
    stability_percent: int
    fallback_stability_percent: int = 100
    max_trials: int = 10
    quiet_percent: float | None = None
    repeats: int = 3
    quiet_wait_s: float = 600.0


def command(target: Target, model: str, concurrency: int, input_data: Path, csv_path: Path) -> list[str]:
    """The common part of every invocation; measurement options are appended by the caller."""
    return [
        str(binary()),
        "-m",
        model,
        "-u",
        target.grpc_url,
        "-i",
        "grpc",
        "--input-data",
        str(input_data),
        "--concurrency-range",
        str(concurrency),
        "-f",
        str(csv_path),
        "--verbose-csv",
        "--collect-metrics",
        "--metrics-url",
        target.metrics_url.removeprefix("http://"),
        # perf_analyzer reads the server's statistics API around each measurement: over gRPC, 2.51's
        # -H adds the header to the metadata too (its --help says otherwise; checked on the server).
        *(["-H", f"{header_name('grpc')}:{target.admin_key}"] if target.admin_key else []),
    ]


def printable(cmd: list[str]) -> str:
    """The command as logs show it: header values (the admin key) redacted."""
    shown = list(cmd)
    for index, arg in enumerate(shown[:-1]):
        if arg == "-H":
            shown[index + 1] = shown[index + 1].partition(":")[0] + ":<redacted>"
    return " ".join(shown)


def window_options(windows: Windows, stability_percent: int) -> list[str]:
    return [
        "--measurement-mode",
        "time_windows",
        "--measurement-interval",
        str(windows.window_ms),
        "--stability-percentage",
        str(stability_percent),
        "--max-trials",
        str(windows.max_trials),
    ]


UNSTABLE = "Failed to obtain stable measurement"


def run(cmd: list[str], log_path: Path, timeout_s: float) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        log.write(printable(cmd) + "\n\n")
        log.flush()
        result = subprocess.run(cmd, env=environment(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise PerfAnalyzerError(f"perf_analyzer exited with {result.returncode}; see {log_path}:\n{tail}")


def read_csv(csv_path: Path) -> dict[str, str]:
    """The single data row perf_analyzer writes for one concurrency level."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise PerfAnalyzerError(f"{csv_path}: expected one measurement row, found {len(rows)}")
    return rows[0]


def client_request_count(log_path: Path) -> int:
    """Requests in the reported (merged) windows, from perf_analyzer's own summary."""
    match = re.search(r"Client:\s*\n\s*Request count: (\d+)", log_path.read_text(errors="replace"))
    return int(match.group(1)) if match else 0


def _ms(row: dict[str, str], column: str) -> float:
    return float(row[column]) / 1000.0  # perf_analyzer writes microseconds


def run_windows(cmd: list[str], windows: Windows, log_path: Path, timeout_s: float) -> int:
    """Run with the strict criterion, then the loose one if the machine was too noisy; returns the one met."""
    try:
        run(cmd + window_options(windows, windows.stability_percent), log_path, timeout_s)
        return windows.stability_percent
    except PerfAnalyzerError:
        if UNSTABLE not in log_path.read_text(errors="replace"):
            raise
    run(cmd + window_options(windows, windows.fallback_stability_percent), log_path, timeout_s)
    return windows.fallback_stability_percent


def measure(
    client,
    target: Target,
    model: str,
    concurrency: int,
    input_data: Path,
    out_dir: Path,
    windows: Windows,
    progress=print,
) -> Point:
    """One point; measured again while other processes took more than windows.quiet_percent of the machine."""
    point = measure_once(client, target, model, concurrency, input_data, out_dir, windows)
    attempts = 1
    limit = windows.quiet_percent
    while limit is not None and (point.other_cpu_percent or 0.0) > limit and attempts <= windows.repeats:
        progress(
            f"  {model} concurrency {concurrency}: other processes used {point.other_cpu_percent:.0f} % "
            f"of the machine; waiting for them to calm down, then measuring again"
        )
        wait_for_quiet(limit, windows.quiet_wait_s)
        point = measure_once(client, target, model, concurrency, input_data, out_dir, windows)
        attempts += 1
    point.attempts = attempts
    return point


def measure_once(
    client,
    target: Target,
    model: str,
    concurrency: int,
    input_data: Path,
    out_dir: Path,
    windows: Windows,
    timeout_s: float = 3600.0,
) -> Point:
    """One point: perf_analyzer at `concurrency`, bracketed by the server's counters."""
    csv_path = out_dir / f"{model}_c{concurrency}.csv"
    log_path = csv_path.with_suffix(".log")
    steps = triton_stats.ensemble_steps(client, model)
    headers = target.admin_headers()
    before, failures_before = triton_stats.snapshot(client, headers), triton_stats.scrape(target.metrics_url)
    foreign = ForeignCpu()
    stability = run_windows(command(target, model, concurrency, input_data, csv_path), windows, log_path, timeout_s)
    foreign.stop()
    after, samples = triton_stats.snapshot(client, headers), triton_stats.scrape(target.metrics_url)
    delta = triton_stats.difference(before, after)
    failures_after = triton_stats.failures_by_reason(samples, model)
    failures_earlier = triton_stats.failures_by_reason(failures_before, model)
    row = read_csv(csv_path)
    ensemble = delta.get(model)
    return Point(
        concurrency=concurrency,
        requests=client_request_count(log_path),
        throughput=float(row["Inferences/Second"]),
        p50_ms=_ms(row, "p50 latency"),
        p90_ms=_ms(row, "p90 latency"),
        p95_ms=_ms(row, "p95 latency"),
        p99_ms=_ms(row, "p99 latency"),
        avg_ms=_ms(row, "Avg latency"),
        server_queue_ms=_ms(row, "Server Queue"),
        server_compute_ms=sum(
            _ms(row, c) for c in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")
        ),
        split=triton_stats.step_split(delta, model, steps),
        failed_requests=float(ensemble.fail if ensemble else 0),
        failures_by_reason={k: v - failures_earlier.get(k, 0.0) for k, v in failures_after.items()},
        server_cpu_utilization=triton_stats.gauge(samples, "nv_cpu_utilization"),
        stability_percent=stability,
        window_ms=windows.window_ms,
        server_requests=ensemble.success if ensemble else 0,
        other_cpu_percent=foreign.percent,
    )


def warm_up(target: Target, model: str, input_data: Path, out_dir: Path, requests: int) -> None:
    """Unrecorded requests first: first calls pay for lazy allocations and page faults in every step."""
    csv_path = out_dir / f"{model}_warmup.csv"
    cmd = [*command(target, model, 2, input_data, csv_path), "--request-count", str(requests)]
    run(cmd, csv_path.with_suffix(".log"), 1800.0)


def sweep(
    client,
    target: Target,
    model: str,
    concurrencies: list[int],
    windows: Windows,
    input_data: Path,
    out_dir: Path,
    progress=print,
) -> list[Point]:
    """One point per concurrency level, in order."""
    points = []
    for concurrency in concurrencies:
        point = measure(client, target, model, concurrency, input_data, out_dir, windows, progress)
        progress(
            f"  {model} concurrency {concurrency}: {point.throughput:.2f} images/s, "
            f"p50 {point.p50_ms:.1f} ms, p95 {point.p95_ms:.1f} ms, p99 {point.p99_ms:.1f} ms"
        )
        points.append(point)
    return points
