"""Reliability drills against the real local server (issue 12): benchmarks, not CI tests.

python -m perf.drills [DRILL ...] [--model NAME] [--repository DIR] [--out build/perf/drills]
    [--scale 1.0] [--soak-minutes 20] [--sigterm-runs 3] [--malloc system|tcmalloc|jemalloc] [--publish]

DRILL is any of overload, sigterm, kill-step, soak, slow-clients (default: all). Each drill starts
`python -m model_repository.server` (what `make serve` runs) on a copy of the repository staged
with today's configs (bounded queues included), on free loopback ports, and stops it afterwards.
Traffic is mixed-size JPEGs (perf.capacity.benchmark_jpegs: 500x375, 1920x1080, 4000x3000), one
image per request, every request with a deadline, so "goodput" is requests answered within it.
Each drill writes build/perf/drills/<drill>.json and .md (plus PNG plots); --publish gathers every
drill's figures with the command that gave them into docs/reliability.md. `--scale 0.1` shortens
every phase tenfold (a trial run); `--soak-minutes` sets the soak alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import catalog
from client.classify import failure_kind
from docs import blocks
from model_repository import configs, health, install, procfs
from model_repository.configs import IMAGE_INPUT, TOP_K_OUTPUTS
from model_repository.server import TritonServer, free_port
from perf import machine
from perf.preprocess_bench import benchmark_jpegs
from perf.serving import ensure_exported

PROJECT = Path(__file__).resolve().parent.parent
DOC = PROJECT / "docs" / "reliability.md"
DRILLS = ("overload", "sigterm", "kill-step", "soak", "slow-clients")
DEADLINE_S = 2.0  # the interactive deadline the issue judges by: answered within 2 s
MIX = {(500, 375): 0.5, (1920, 1080): 0.35, (4000, 3000): 0.15}  # share of requests per JPEG size
OFFERED = (0.5, 1.0, 2.0, 5.0, 10.0)  # offered load, multiples of the measured capacity
CHART_VALUES = PROJECT / "helm" / "paddleclas-triton" / "values.yaml"
ALLOCATORS = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "jemalloc": ("libjemalloc.so.2",),
}


# --- the server under drill ---------------------------------------------------------------------


class Launcher:
    """`python -m model_repository.server` as a subprocess: readiness, its process tree, signals."""

    def __init__(self, repo: Path, model: str, log: Path, preload: str | None = None) -> None:
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.command = [sys.executable, "-m", "model_repository.server", "--repository", str(repo)]
        self.command += ["--models", model, "--http-port", str(self.http), "--grpc-port", str(self.grpc)]
        self.command += ["--metrics-port", str(self.metrics)]
        env = dict(os.environ) | ({"LD_PRELOAD": preload} if preload else {})
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log.open("wb")
        self.process = subprocess.Popen(self.command, cwd=PROJECT, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def health(self, path: str = "/v2/health/ready") -> int:
        """The HTTP status of a health endpoint, 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def wait_ready(self, timeout: float = 240.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the launcher exited with {self.process.returncode}; see {self.log.name}")
            if self.health() == 200:
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {timeout:.0f} s; see {self.log.name}")

    def rss_mb(self) -> float:
        return sum(p.resident_kib for p in procfs.descendants(self.process.pid)) / 1024

    def tritonserver(self) -> tuple[int, Path]:
        """tritonserver's pid and the serving copy it reads (from its command line)."""
        for process in procfs.descendants(self.process.pid):
            if process.command.split(" ", 1)[0].endswith("/tritonserver"):
                flag = next(a for a in process.command.split() if a.startswith("--model-repository="))
                return process.pid, Path(flag.split("=", 1)[1])
        raise RuntimeError("no tritonserver below the launcher")

    def stubs(self, name: str = "") -> list[int]:
        return [p.pid for p in procfs.python_stubs(self.process.pid) if name in p.command]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=TritonServer.exit_timeout_secs + 20)
            except subprocess.TimeoutExpired:
                for process in procfs.descendants(self.process.pid):
                    os.kill(process.pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        self.log.close()


@contextmanager
def serving(args: argparse.Namespace, name: str):
    server = Launcher(args.staged, args.model, args.out / f"{name}.server.log", args.preload)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Sampler(threading.Thread):
    """Every `period` s: seconds since start, resident MB of the server tree, ready and live status."""

    def __init__(self, server: Launcher, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.server, self.period, self.rows, self.start_t = server, period, [], time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            ready, live = self.server.health(), self.server.health("/v2/health/live")
            self.rows.append((time.monotonic() - self.start_t, self.server.rss_mb(), ready, live))
            self.done.wait(self.period)

    def stop(self) -> list[tuple[float, float, int, int]]:
        self.done.set()
        self.join()
        return self.rows


# --- traffic ------------------------------------------------------------------------------------


def images() -> dict[tuple[int, int], list[bytes]]:
    return benchmark_jpegs()


def _request(grpcclient, data: bytes):
    tensor = grpcclient.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    return tensor


async def _one(client, grpcclient, model: str, size, data: bytes, deadline: float, t0: float, rows: list) -> str:
    sent = time.monotonic()
    try:
        outputs = [grpcclient.InferRequestedOutput(name) for name in TOP_K_OUTPUTS]
        # As client/classify.py does: the deadline also travels as the request's queue timeout.
        await client.infer(
            model, [_request(grpcclient, data)], outputs=outputs, client_timeout=deadline, timeout=int(deadline * 1e6)
        )
        kind, message = "ok", ""
    except Exception as err:  # every failure is a row, named by its cause
        kind, message = failure_kind(err), str(err)[:200]
    rows.append(
        {
            "sent": sent - t0,
            "done": time.monotonic() - t0,
            "size": f"{size[0]}x{size[1]}",
            "kind": kind,
            "message": message,
        }
    )
    return kind


def cause(row: dict) -> str:
    """ok, queue full, queue timeout, deadline, dead step, unavailable, refused."""
    if row["kind"] == "ok":
        return "ok"
    text = row["message"]
    for words, name in (
        ("Exceeds maximum queue size", "queue full"),
        ("Request timeout expired", "queue timeout"),
        ("is not healthy", "dead step"),
        ("Deadline", "deadline"),
    ):
        if words in text:
            return name
    return "unavailable" if row["kind"] == "overloaded" else row["kind"]


async def _open_loop(url, model, rate, seconds, pool, deadline, t0, rows, rng) -> None:
    """Poisson arrivals at `rate` requests/s for `seconds`, never waiting for answers (offered load)."""
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tasks, end = set(), time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            size = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            task = asyncio.ensure_future(
                _one(client, grpcclient, model, size, rng.choice(pool[size]), deadline, t0, rows)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
    finally:
        await client.close()


async def _closed_loop(url, model, users, seconds, pool, deadline, t0, rows, rng) -> None:
    """`users` clients, each with one request in flight."""
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    end = time.monotonic() + seconds

    async def user() -> None:
        while time.monotonic() < end:
            size = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            if await _one(client, grpcclient, model, size, rng.choice(pool[size]), deadline, t0, rows) != "ok":
                await asyncio.sleep(0.05)  # a failed try returns at once (refused, no server): do not spin

    try:
        await asyncio.gather(*(user() for _ in range(users)))
    finally:
        await client.close()


async def _probe(url, model, seconds, photo, deadline, t0, rows, period: float = 0.5) -> None:
    """The interactive user: one small photo every `period` s."""
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(url)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            await _one(client, grpcclient, model, (500, 375), photo, deadline, t0, rows)
            await asyncio.sleep(period)
    finally:
        await client.close()


def run_async(*coroutines) -> None:
    async def main() -> None:
        await asyncio.gather(*coroutines)

    asyncio.run(main())


def summary(rows: list[dict], seconds: float) -> dict:
    ok = [r["done"] - r["sent"] for r in rows if r["kind"] == "ok"]
    return {
        "requests": len(rows),
        "offered_rps": round(len(rows) / seconds, 2),
        "goodput_rps": round(len(ok) / seconds, 2),
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 1) if ok else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 1) if ok else None,
        "causes": dict(Counter(cause(r) for r in rows)),
        "refusal_p99_ms": _refusal_p99(rows),
    }


def _refusal_p99(rows: list[dict]) -> float | None:
    refused = [r["done"] - r["sent"] for r in rows if cause(r) in ("queue full", "queue timeout")]
    return round(float(np.percentile(refused, 99)) * 1000, 1) if refused else None


def capacity(server: Launcher, args, pool, progress) -> dict:
    """Goodput of 4 closed-loop users (the saturation point of docs/performance.md), mixed sizes."""
    rows: list[dict] = []
    seconds = max(5.0, 20 * args.scale)
    run_async(
        _closed_loop(
            server.grpc_url, args.triton_model, 4, seconds, pool, 10.0, time.monotonic(), rows, random.Random(1)
        )
    )
    result = summary(rows, seconds)
    progress(f"  capacity: {result['goodput_rps']} requests/s answered (4 users, mixed sizes)")
    if not result["goodput_rps"]:
        raise RuntimeError(f"no request succeeded while measuring capacity: {result['causes']}")
    return result


# --- the drills ---------------------------------------------------------------------------------


def overload(args, pool, progress) -> dict:
    with serving(args, "overload") as server:
        cap = capacity(server, args, pool, progress)
        idle: list[dict] = []
        run_async(
            _probe(
                server.grpc_url,
                args.triton_model,
                max(3.0, 10 * args.scale),
                pool[(500, 375)][0],
                DEADLINE_S,
                time.monotonic(),
                idle,
            )
        )
        idle_ms = float(np.median([r["done"] - r["sent"] for r in idle if r["kind"] == "ok"])) * 1000
        levels = []
        for factor in OFFERED:
            seconds = (60 if factor == max(OFFERED) else 20) * args.scale
            rows, probe, t0 = [], [], time.monotonic()
            sampler = Sampler(server)
            sampler.start()
            run_async(
                _open_loop(
                    server.grpc_url,
                    args.triton_model,
                    factor * cap["goodput_rps"],
                    seconds,
                    pool,
                    DEADLINE_S,
                    t0,
                    rows,
                    random.Random(2),
                ),
                _probe(server.grpc_url, args.triton_model, seconds, pool[(500, 375)][0], DEADLINE_S, t0, probe),
            )
            burst_end = time.monotonic() - t0
            recovery = _recovery(server, args, pool, idle_ms, t0, probe)
            samples = sampler.stop()
            level = {"factor": factor, "seconds": seconds, **summary(rows, seconds)}
            level["interactive"] = _interactive(probe, burst_end)
            level["rss_start_mb"], level["rss_peak_mb"] = round(samples[0][1]), round(max(s[1] for s in samples))
            level["rss_after_mb"] = round(samples[-1][1])
            level["ready_throughout"] = all(s[2] == 200 for s in samples)
            level["recovery_s"] = recovery
            level["timeline"] = {
                "samples": samples,
                "probe": [(r["sent"], r["done"] - r["sent"], cause(r)) for r in probe],
            }
            levels.append(level)
            progress(
                f"  {factor:g}x: offered {level['offered_rps']}/s, goodput {level['goodput_rps']}/s, "
                f"{level['causes']}, interactive {level['interactive']}, RSS peak {level['rss_peak_mb']} MB, "
                f"recovered in {recovery} s"
            )
    at_cap = next(level["goodput_rps"] for level in levels if level["factor"] == 1.0)
    top = levels[-1]
    return {
        "capacity": cap,
        "idle_interactive_ms": round(idle_ms, 1),
        "levels": levels,
        "goodput_ratio_at_10x": round(top["goodput_rps"] / at_cap, 3) if at_cap else None,
    }


def _interactive(probe: list[dict], burst_end: float) -> dict:
    during = [r for r in probe if r["sent"] < burst_end]
    answered = [r["done"] - r["sent"] for r in during if r["kind"] == "ok"]
    refused = [r["done"] - r["sent"] for r in during if r["kind"] != "ok"]
    return {
        "sent": len(during),
        "answered": len(answered),
        "answered_max_ms": round(max(answered) * 1000) if answered else None,
        "refused": len(refused),
        "refused_max_ms": round(max(refused) * 1000) if refused else None,
        "causes": dict(Counter(cause(r) for r in during if r["kind"] != "ok")),
    }


def _recovery(server, args, pool, idle_ms, t0, probe, limit_s: float = 30.0) -> float | None:
    """Seconds after the burst until an interactive request answers within 2x its idle latency."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        rows: list[dict] = []
        run_async(_probe(server.grpc_url, args.triton_model, 0.01, pool[(500, 375)][0], DEADLINE_S, t0, rows))
        probe += rows
        if rows and rows[0]["kind"] == "ok" and (rows[0]["done"] - rows[0]["sent"]) * 1000 <= 2 * idle_ms:
            return round(time.monotonic() - start, 2)
        time.sleep(0.2)
    return None


def chart_arithmetic() -> dict:
    """server.preStopSleepSeconds and exitTimeoutSeconds from the chart, and the grace period it derives."""
    values = {}
    for line in CHART_VALUES.read_text().splitlines():
        for key in ("exitTimeoutSeconds", "preStopSleepSeconds"):
            if line.strip().startswith(f"{key}:"):
                values[key] = int(line.split(":")[1])
    values["terminationGracePeriodSeconds"] = values["preStopSleepSeconds"] + values["exitTimeoutSeconds"] + 10
    return values


def sigterm(args, pool, progress) -> dict:
    runs = []
    for run in range(args.sigterm_runs):
        with serving(args, f"sigterm-{run}") as server:
            rows, t0 = [], time.monotonic()
            box: dict[str, float] = {}

            def stop_later(server=server, box=box, t0=t0) -> None:
                time.sleep(max(3.0, 10 * args.scale))
                box["signal"] = time.monotonic() - t0
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=TritonServer.exit_timeout_secs + 30)
                box["exit"] = time.monotonic() - t0

            killer = threading.Thread(target=stop_later)
            killer.start()
            # 3 users: about 70 % of the 4-user capacity, with a deadline long enough to see every fate.
            run_async(
                _closed_loop(
                    server.grpc_url,
                    args.triton_model,
                    3,
                    max(3.0, 10 * args.scale) + 15,
                    pool,
                    30.0,
                    t0,
                    rows,
                    random.Random(run),
                )
            )
            killer.join()
        accepted = [r for r in rows if r["sent"] < box["signal"]]
        clean = ("ok", "queue full", "queue timeout", "refused")
        lost = [r for r in accepted if cause(r) not in clean and "stopping" not in r["message"]]
        result = {
            "run": run,
            "accepted_before_signal": len(accepted),
            "in_flight_at_signal": sum(1 for r in accepted if r["done"] >= box["signal"]),
            "completed": sum(1 for r in accepted if r["kind"] == "ok"),
            "lost": len(lost),
            "lost_messages": sorted({r["message"][:120] for r in lost}),
            "after_signal": dict(Counter(cause(r) for r in rows if r["sent"] >= box["signal"])),
            "after_signal_messages": Counter(
                r["message"][:100] for r in rows if r["sent"] >= box["signal"]
            ).most_common(4),
            "drain_s": round(box["exit"] - box["signal"], 2),
        }
        runs.append(result)
        progress(f"  run {run}: {result}")
    return {"runs": runs, "chart": chart_arithmetic(), "launcher_exit_timeout_s": TritonServer.exit_timeout_secs}


def kill_step(args, pool, progress) -> dict:
    with serving(args, "kill-step") as server:
        network = f"{args.triton_model}_network"
        rows, t0 = [], time.monotonic()
        sampler = Sampler(server)
        sampler.start()
        box: dict[str, object] = {}

        def kill_later() -> None:
            time.sleep(max(3.0, 10 * args.scale))
            pid, copy = server.tritonserver()
            box["live_check_before"] = health.problem(copy, pid, server.http)
            pids = server.stubs(network)
            box["killed"], box["at"] = pids[0], time.monotonic() - t0
            os.kill(pids[0], signal.SIGKILL)
            while (found := health.problem(copy, pid, server.http)) is None and time.monotonic() - t0 < box["at"] + 30:
                time.sleep(0.1)
            box["live_check_failed_after_s"] = round(time.monotonic() - t0 - box["at"], 2)
            box["live_check_says"] = found

        killer = threading.Thread(target=kill_later)
        killer.start()
        run_async(
            _closed_loop(
                server.grpc_url,
                args.triton_model,
                2,
                max(3.0, 10 * args.scale) + max(10.0, 30 * args.scale),
                pool,
                DEADLINE_S * 5,
                t0,
                rows,
                random.Random(3),
            )
        )
        killer.join()
        samples = sampler.stop()
        stubs_after = server.stubs(network)
    at = float(box["at"])
    after = [r for r in rows if r["sent"] >= at]
    first_ok = next((r["done"] - at for r in after if r["kind"] == "ok"), None)
    first_error = next((r["done"] - at for r in after if r["kind"] != "ok"), None)
    unready = next((t - (at - samples[0][0]) for t, _, ready, _ in samples if t >= at and ready != 200), None)
    result = {
        "killed": f"{network} stub (pid {box['killed']})",
        "requests_after": len(after),
        "after": dict(Counter(cause(r) for r in after)),
        "first_error_after_s": first_error,
        "first_success_after_s": first_ok,
        "unready_after_s": unready,
        "ready_codes_after": dict(Counter(ready for t, _, ready, _ in samples if t >= at)),
        "live_codes_after": dict(Counter(live for t, _, _, live in samples if t >= at)),
        "network_stubs_after": len(stubs_after),
        # The chart's liveness check (model_repository/health.py) on the same server: passes before, fails after.
        "chart_liveness_before": box["live_check_before"] or "live",
        "chart_liveness_failed_after_s": box["live_check_failed_after_s"],
        "chart_liveness_says": box["live_check_says"],
    }
    progress(f"  {result}")
    return result


def soak(args, pool, progress) -> dict:
    with serving(args, "soak") as server:
        cap = capacity(server, args, pool, progress)
        seconds, rows, t0 = args.soak_minutes * 60, [], time.monotonic()
        sampler = Sampler(server, period=5.0)
        sampler.start()
        run_async(
            _open_loop(
                server.grpc_url,
                args.triton_model,
                0.7 * cap["goodput_rps"],
                seconds,
                pool,
                DEADLINE_S * 5,
                t0,
                rows,
                random.Random(4),
            )
        )
        samples = sampler.stop()
    done = sorted(r["done"] for r in rows)
    points = [(int(np.searchsorted(done, t)), rss) for t, rss, _, _ in samples]
    steady = points[len(points) // 10 :] or points  # the first tenth warms caches and pools
    slope = float(np.polyfit([p[0] for p in steady], [p[1] for p in steady], 1)[0]) * 1000 if len(steady) > 2 else None
    result = {
        "minutes": args.soak_minutes,
        "capacity_rps": cap["goodput_rps"],
        **summary(rows, seconds),
        "allocator": args.allocator,
        "rss_start_mb": round(samples[0][1]),
        "rss_end_mb": round(samples[-1][1]),
        "mb_per_1000_requests": round(slope, 3) if slope is not None else None,
        "points": points,
    }
    progress(
        f"  soak: {result['goodput_rps']}/s for {args.soak_minutes} min, {result['causes']}, RSS "
        f"{result['rss_start_mb']} -> {result['rss_end_mb']} MB, {result['mb_per_1000_requests']} MB/1000"
    )
    return result


def _slow_sender(port: int, model: str, stop: threading.Event, counts: Counter) -> None:
    """An HTTP client that announces a large body and trickles it, 64 bytes every 0.5 s."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(
                    f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    f"\r\nContent-Length: 1000000\r\n\r\n".encode()
                )
                counts["slow connections"] += 1
                while not stop.wait(0.5):
                    sock.sendall(b" " * 64)
        except OSError:
            counts["slow connection dropped by the server"] += 1
            stop.wait(0.5)


def slow_clients(args, pool, progress) -> dict:
    phase = max(5.0, 20 * args.scale)
    with serving(args, "slow-clients") as server:
        baseline: list[dict] = []
        run_async(
            _probe(
                server.grpc_url, args.triton_model, phase, pool[(500, 375)][0], DEADLINE_S, time.monotonic(), baseline
            )
        )
        stop, counts = threading.Event(), Counter()
        slow = [
            threading.Thread(target=_slow_sender, args=(server.http, args.triton_model, stop, counts), daemon=True)
            for _ in range(16)
        ]
        for thread in slow:
            thread.start()
        during, abandoned, t0 = [], [], time.monotonic()

        async def abandoning() -> None:  # camera photos, given up on after 0.3 s (the client disconnects)
            import tritonclient.grpc.aio as grpcclient

            client = grpcclient.InferenceServerClient(server.grpc_url)
            end = time.monotonic() + phase
            while time.monotonic() < end:
                await _one(
                    client, grpcclient, args.triton_model, (4000, 3000), pool[(4000, 3000)][0], 0.3, t0, abandoned
                )
            await client.close()

        run_async(
            _probe(server.grpc_url, args.triton_model, phase, pool[(500, 375)][0], DEADLINE_S, t0, during),
            *(abandoning() for _ in range(4)),
        )
        stop.set()
        ready_after = server.health()
    result = {
        "baseline": summary(baseline, phase),
        "during": summary(during, phase),
        "abandoning_requests": len(abandoned),
        "abandoned": dict(Counter(cause(r) for r in abandoned)),
        "slow_http_connections": dict(counts),
        "ready_after": ready_after,
    }
    progress(
        f"  baseline p50 {result['baseline']['p50_ms']} ms, during p50 {result['during']['p50_ms']} ms, "
        f"p99 {result['during']['p99_ms']} ms, {result['during']['causes']}; {result['abandoned']}; {dict(counts)}"
    )
    return result


# --- figures ------------------------------------------------------------------------------------


def plot_overload(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    levels = result["levels"]
    left.plot([lv["offered_rps"] for lv in levels], [lv["goodput_rps"] for lv in levels], "o-", label="goodput")
    left.plot([lv["offered_rps"] for lv in levels], [lv["offered_rps"] for lv in levels], ":", label="offered")
    left.set(xlabel="offered requests/s", ylabel="answered within 2 s, /s", title="goodput vs offered load")
    left.legend()
    top = levels[-1]["timeline"]
    ok = [(t, latency) for t, latency, kind in top["probe"] if kind == "ok"]
    bad = [(t, latency) for t, latency, kind in top["probe"] if kind != "ok"]
    right.scatter([t for t, _ in ok], [1000 * x for _, x in ok], s=8, label="interactive answered")
    right.scatter([t for t, _ in bad], [1000 * x for _, x in bad], s=8, marker="x", label="interactive refused")
    right.axvline(levels[-1]["seconds"], color="grey", ls="--")
    right.set(xlabel="s", ylabel="ms", title=f"{levels[-1]['factor']:g}x burst")
    twin = right.twinx()
    twin.plot([s[0] for s in top["samples"]], [s[1] for s in top["samples"]], color="tab:red", lw=1)
    twin.set_ylabel("resident MB", color="tab:red")
    right.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(name: str, result: dict, command: str) -> list[str]:
    lines = [f"`{command}` ({result['finished_at']}, {result['machine']})", ""]
    if name == "overload":
        cap = result["capacity"]
        lines += [
            f"Capacity (4 closed-loop users, mixed sizes): **{cap['goodput_rps']} requests/s**; idle "
            f"interactive latency {result['idle_interactive_ms']} ms. Goodput at 10x / goodput at 1x: "
            f"**{result['goodput_ratio_at_10x']}** (goal >= 0.8).",
            "",
            "| offered | requests/s offered | goodput/s | p99 ms | outcomes | refusal p99 ms | interactive "
            "(answered max ms / refused max ms) | RSS start/peak/after MB | ready throughout | recovery s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in result["levels"]:
            it = lv["interactive"]
            lines.append(
                f"| {lv['factor']:g}x | {lv['offered_rps']} | {lv['goodput_rps']} | {lv['p99_ms']} | "
                f"{_causes(lv['causes'])} | {lv['refusal_p99_ms']} | {it['answered']}/{it['sent']} "
                f"({it['answered_max_ms']} / {it['refused_max_ms']}) | {lv['rss_start_mb']}/"
                f"{lv['rss_peak_mb']}/{lv['rss_after_mb']} | {lv['ready_throughout']} | {lv['recovery_s']} |"
            )
        lines += ["", "![overload](img/reliability_overload.png)"]
    elif name == "sigterm":
        chart = result["chart"]
        lines += [
            f"Chart: preStop sleep {chart['preStopSleepSeconds']} s + exit timeout "
            f"{chart['exitTimeoutSeconds']} s + 10 s = terminationGracePeriodSeconds "
            f"{chart['terminationGracePeriodSeconds']} s; the launcher's exit timeout is "
            f"{result['launcher_exit_timeout_s']} s.",
            "",
            "| run | accepted before SIGTERM | in flight at SIGTERM | completed | lost | after SIGTERM | drain s |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in result["runs"]:
            lines.append(
                f"| {run['run']} | {run['accepted_before_signal']} | {run['in_flight_at_signal']} | "
                f"{run['completed']} | {run['lost']} | {_causes(run['after_signal'])} | {run['drain_s']} |"
            )
    else:
        shown = {k: v for k, v in result.items() if k not in ("points", "finished_at", "machine", "command")}
        lines += ["```json", json.dumps(shown, indent=1), "```"]
    return [*lines, ""]


def _causes(causes: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(causes.items(), key=lambda kv: -kv[1]))


def publish(out: Path) -> Path:
    """Each drill's figures into its block of docs/reliability.md (the text around them is written by hand)."""
    for name in DRILLS:
        path = out / f"{name}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            blocks.update(DOC, f"drill-{name}", "\n".join(markdown(name, result, result["command"])))
    if (out / "overload.png").is_file():
        (DOC.parent / "img").mkdir(exist_ok=True)
        (DOC.parent / "img" / "reliability_overload.png").write_bytes((out / "overload.png").read_bytes())
    return DOC


# --- command line -------------------------------------------------------------------------------


def allocator_preload(name: str) -> str | None:
    if name == "system":
        return None
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        for library in ALLOCATORS[name]:
            if Path(directory, library).is_file():
                return str(Path(directory, library))
    raise SystemExit(f"error: no {name} library on this machine ({', '.join(ALLOCATORS[name])}); use --malloc system")


def reinstall(source: Path, dest: Path, entry: catalog.ModelEntry) -> Path:
    """`entry`'s exported network installed afresh into `dest`, so the drill serves today's configs."""
    network = source / configs.network_name(entry)
    record = json.loads((network / install.EXPORT_RECORD).read_text())
    shutil.rmtree(dest, ignore_errors=True)
    install.install(entry, network / "1" / "model.onnx", record, dest, "portable")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.drills", description=__doc__.split("\n\n")[0])
    parser.add_argument("drills", nargs="*", metavar="DRILL", help=f"any of {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--model", default="NextViT_small_224")
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "perf" / "drills")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's duration (0.1: a trial)")
    parser.add_argument("--soak-minutes", type=float, default=20.0, help="soak duration (default 20)")
    parser.add_argument("--sigterm-runs", type=int, default=3)
    parser.add_argument("--malloc", dest="allocator", choices=("system", *ALLOCATORS), default="system")
    parser.add_argument("--publish", action="store_true", help="write docs/reliability.md from the drills' JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.drills) - set(DRILLS))
    if unknown:
        parser.error(f"unknown drill {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.publish and not args.drills:
        print(f"wrote {publish(args.out)}")
        return 0
    entry = catalog.get(args.model)
    args.triton_model, args.preload = entry.triton_name, allocator_preload(args.allocator)
    ensure_exported(args.repository, [entry])
    args.staged = reinstall(args.repository, args.out / "model_repository", entry)
    pool = images()
    command = "python -m perf.drills " + shlex.join(argv if argv is not None else sys.argv[1:])
    facts = machine.facts()
    flags = ", ".join(facts.get("cpu_flags") or []) or "CPU flags not recorded"
    where = f"{facts['cpu_model']} ({flags}), {facts['usable_cores']} usable cores, load {facts['load_average']}"
    for name in args.drills or DRILLS:
        print(f"drill {name}:", flush=True)
        result = globals()[name.replace("-", "_")](args, pool, lambda m: print(m, flush=True))
        result |= {
            "command": command,
            "machine": where,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / f"{name}.md").write_text("\n".join(markdown(name, result, command)))
        if name == "overload":
            plot_overload(result, args.out / "overload.png")
    if args.publish:
        print(f"wrote {publish(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
