"""Reliability drills against the real local server: benchmarks, not CI tests.

Each drill (overload, sigterm, kill-step, soak, slow-clients; default: all) starts
`python -m model_repository serve` (what `make serve` runs) on a copy of the repository staged
with today's configs (bounded queues included), on free loopback ports, and stops it afterwards.
Traffic is mixed-size JPEGs (perf.preprocess_bench.benchmark_jpegs: 500x375, 1920x1080, 4000x3000),
one image per request, every request with a deadline, so "goodput" is requests answered within it.
Each drill writes build/perf/drills/<drill>.json and .md (plus PNG plots); --publish gathers every
drill's figures with the command that gave them into docs/reliability.md. `--scale 0.1` shortens
every phase tenfold (a trial run); `--soak-minutes` sets the soak alone.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tritonclient.grpc as syncgrpc
import tritonclient.grpc.aio as grpcclient
import yaml

import catalog
from client.failures import failure_kind, message_cause
from model_repository import configs, health, install, layout, memory, procfs
from model_repository.admin import ADMIN_KEY_ENV, admin_headers
from model_repository.configs import TOP_K_OUTPUTS
from model_repository.flags import GRACE_SPARE_SECONDS, termination_grace_seconds
from model_repository.serve import serve_command
from model_repository.server import Ports, TritonServer
from perf import machine, study, triton_stats
from perf.input_data import image_tensor
from perf.preprocess_bench import benchmark_jpegs
from perf.serving import ensure_exported
from perf.study import PROJECT
from preprocess import DEFAULT_MAX_PIXELS
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES

DOC = study.DOCS / "reliability.md"
DRILLS = ("overload", "sigterm", "kill-step", "soak", "slow-clients", "flood", "huge-images")
DEADLINE_S = 2.0  # the interactive deadline: answered within 2 s
REFUSED_WITHIN_S = 1.0  # or refused within 1 s (the flood's goal)
MIX = {(500, 375): 0.5, (1920, 1080): 0.35, (4000, 3000): 0.15}  # share of requests per JPEG size
SMALL, CAMERA = (500, 375), (4000, 3000)
OFFERED = (0.5, 1.0, 2.0, 5.0, 10.0)  # offered load, multiples of the measured capacity
CHART_VALUES = PROJECT / "helm" / "paddleclas-triton" / "values.yaml"
FLOOD_CONNECTIONS, FLOOD_S, FLOOD_AFTER_S = 40, 45.0, 30.0  # the flood drill: connections, seconds, then quiet


# --- the server under drill ---------------------------------------------------------------------


class Launcher:
    """`python -m model_repository serve` as a subprocess: readiness, its process tree, signals."""

    def __init__(self, repo: Path, model: str, log: Path, malloc: str = memory.DEFAULT_MALLOC) -> None:
        ports = Ports.free()
        self.http, self.grpc, self.metrics = ports
        self.command = serve_command(repo, ports, "--models", model, "--malloc", malloc)
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log.open("wb")
        self.admin_key = secrets.token_urlsafe(24)  # the drill reads per-step statistics (a restricted API)
        env = os.environ | {ADMIN_KEY_ENV: self.admin_key}
        self.process = subprocess.Popen(self.command, cwd=PROJECT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def statistics(self) -> dict[str, triton_stats.ModelCounters]:
        """Triton's cumulative per-model counters (perf.triton_stats), read with the drill's admin key."""
        client = syncgrpc.InferenceServerClient(self.grpc_url)
        try:
            return triton_stats.snapshot(client, admin_headers("grpc", self.admin_key))
        finally:
            client.close()

    def health(self, path: str = "/v2/health/ready") -> int:
        """The HTTP status of a health endpoint, 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def wait_ready(self, timeout: float = 240.0) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the launcher exited with {self.process.returncode}; see {self.log.name}")
            if self.health() == 200:
                return
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {timeout:.0f} s; see {self.log.name}")

    def rss_mb(self) -> float:
        return sum(p.resident_kib for p in procfs.descendants(self.process.pid)) / 1024

    def pss_mb(self) -> float:
        """Proportional set size of tritonserver and its steps (the launcher's own Python excluded)."""
        return procfs.tree_pss_mib(self.tritonserver()[0])

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
def serving(args: argparse.Namespace, name: str) -> Iterator[Launcher]:
    """The drilled model served for one drill, always stopped afterwards; its log is <out>/<name>.server.log."""
    server = Launcher(args.staged, args.model, args.out / f"{name}.server.log", args.allocator)
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


class Requests:
    """Requests to the drilled model with one deadline; each becomes a row: sent and done (s since t0), outcome."""

    def __init__(
        self,
        server: Launcher,
        args,
        deadline: float = DEADLINE_S,
        t0: float | None = None,
        priority: int = 0,
        model: str | None = None,
    ) -> None:
        self.url, self.pool, self.deadline = server.grpc_url, args.pool, deadline
        self.model = model or args.triton_model  # the drilled ensemble, or another entry point of its model
        self.priority = priority  # 0: the default level; configs.INTERACTIVE_PRIORITY: queued apart at the network
        self.t0 = time.monotonic() if t0 is None else t0
        self.rows: list[dict] = []

    async def send(self, client, size: tuple[int, int], data: bytes) -> str:
        sent = time.monotonic()
        try:
            outputs = [grpcclient.InferRequestedOutput(name) for name in TOP_K_OUTPUTS]
            # As client/classify.py does: the deadline also travels as the request's queue timeout.
            tensor, timeout_us = image_tensor(grpcclient, data), int(self.deadline * 1e6)
            await client.infer(
                self.model,
                [tensor],
                outputs=outputs,
                client_timeout=self.deadline,
                timeout=timeout_us,
                priority=self.priority,
            )
            kind, message = "ok", ""
        except Exception as err:  # every failure is a row, named by its cause
            kind, message = failure_kind(err), str(err)[:200]
        done, size_text = time.monotonic() - self.t0, f"{size[0]}x{size[1]}"
        self.rows.append({"sent": sent - self.t0, "done": done, "size": size_text, "kind": kind, "message": message})
        return kind

    def _mixed(self, rng: random.Random) -> tuple[tuple[int, int], bytes]:
        size = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        return size, rng.choice(self.pool[size])

    async def open_loop(self, rate: float, seconds: float, rng: random.Random) -> None:
        """Poisson arrivals at `rate` requests/s for `seconds`, never waiting for answers (offered load)."""
        client = grpcclient.InferenceServerClient(self.url)
        tasks, end = set(), time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                task = asyncio.ensure_future(self.send(client, *self._mixed(rng)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(rng.expovariate(rate))
            await asyncio.gather(*tasks)
        finally:
            await client.close()

    async def closed_loop(self, users: int, seconds: float, rng: random.Random) -> None:
        """`users` clients, each with one request in flight."""
        client = grpcclient.InferenceServerClient(self.url)
        end = time.monotonic() + seconds

        async def user() -> None:
            while time.monotonic() < end:
                if await self.send(client, *self._mixed(rng)) != "ok":
                    await asyncio.sleep(0.05)  # a failed try returns at once (refused, no server): do not spin

        try:
            await asyncio.gather(*(user() for _ in range(users)))
        finally:
            await client.close()

    async def probe(self, seconds: float, size: tuple[int, int] = SMALL, period: float = 0.5) -> None:
        """The interactive user: the first photo of `size` every `period` s (0: back to back)."""
        client = grpcclient.InferenceServerClient(self.url)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                await self.send(client, size, self.pool[size][0])
                if period:
                    await asyncio.sleep(period)
        finally:
            await client.close()


def run_async(*coroutines) -> None:
    async def main() -> None:
        await asyncio.gather(*coroutines)

    asyncio.run(main())


def cause(row: dict) -> str:
    """ok, queue full, queue timeout, deadline, dead step, unavailable, refused."""
    if row["kind"] == "ok":
        return "ok"
    named = message_cause(row["message"])  # the one classifier of Triton's words (client/failures.py)
    if named is not None:
        return named
    return "unavailable" if row["kind"] == "overloaded" else row["kind"]


def _p_ms(seconds: list[float], q: int) -> float | None:
    return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else None


def summary(rows: list[dict], seconds: float) -> dict:
    ok = [r["done"] - r["sent"] for r in rows if r["kind"] == "ok"]
    refused = [r["done"] - r["sent"] for r in rows if cause(r) in ("queue full", "queue timeout")]
    return {
        "requests": len(rows),
        "offered_rps": round(len(rows) / seconds, 2),
        "goodput_rps": round(len(ok) / seconds, 2),
        "p50_ms": _p_ms(ok, 50),
        "p99_ms": _p_ms(ok, 99),
        "causes": dict(Counter(cause(r) for r in rows)),
        "refusal_p99_ms": _p_ms(refused, 99),
    }


def capacity(server: Launcher, args, progress) -> dict:
    """Goodput of 4 closed-loop users (the saturation point of docs/performance.md), mixed sizes."""
    seconds, load = max(5.0, 20 * args.scale), Requests(server, args, deadline=10.0)
    run_async(load.closed_loop(4, seconds, random.Random(1)))
    result = summary(load.rows, seconds)
    progress(f"  capacity: {result['goodput_rps']} requests/s answered (4 users, mixed sizes)")
    if not result["goodput_rps"]:
        raise RuntimeError(f"no request succeeded while measuring capacity: {result['causes']}")
    return result


# --- the drills ---------------------------------------------------------------------------------


def overload(args, progress) -> dict:
    with serving(args, "overload") as server:
        cap = capacity(server, args, progress)
        idle = Requests(server, args)
        run_async(idle.probe(max(3.0, 10 * args.scale)))
        idle_ms = float(np.median([r["done"] - r["sent"] for r in idle.rows if r["kind"] == "ok"])) * 1000
        levels = []
        for factor in OFFERED:
            seconds = (60 if factor == max(OFFERED) else 20) * args.scale
            load = Requests(server, args)
            probe = Requests(server, args, t0=load.t0)
            sampler = Sampler(server)
            sampler.start()
            run_async(load.open_loop(factor * cap["goodput_rps"], seconds, random.Random(2)), probe.probe(seconds))
            burst_end = time.monotonic() - load.t0
            recovery = _recovery(server, args, idle_ms, probe)
            samples = sampler.stop()
            level = {"factor": factor, "seconds": seconds, **summary(load.rows, seconds)}
            level["interactive"] = _interactive(probe.rows, burst_end)
            level["rss_start_mb"], level["rss_peak_mb"] = round(samples[0][1]), round(max(s[1] for s in samples))
            level["rss_after_mb"] = round(samples[-1][1])
            level["ready_throughout"] = all(s[2] == 200 for s in samples)
            level["recovery_s"] = recovery
            level["timeline"] = {
                "samples": samples,
                "probe": [(r["sent"], r["done"] - r["sent"], cause(r)) for r in probe.rows],
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


def _recovery(server: Launcher, args, idle_ms: float, probe: Requests, limit_s: float = 30.0) -> float | None:
    """Seconds after the burst until an interactive request answers within 2x its idle latency."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        once = Requests(server, args, t0=probe.t0)
        run_async(once.probe(0.01))
        probe.rows += once.rows
        first = once.rows[0] if once.rows else None
        if first and first["kind"] == "ok" and (first["done"] - first["sent"]) * 1000 <= 2 * idle_ms:
            return round(time.monotonic() - start, 2)
        time.sleep(0.2)
    return None


def chart_arithmetic() -> dict:
    """server.exitTimeoutSeconds and preStopSleepSeconds from the chart, and the grace period it derives."""
    server = yaml.safe_load(CHART_VALUES.read_text())["server"]
    values = {key: int(server[key]) for key in ("exitTimeoutSeconds", "preStopSleepSeconds")}
    values["terminationGracePeriodSeconds"] = termination_grace_seconds(
        values["preStopSleepSeconds"], values["exitTimeoutSeconds"]
    )
    return values


def sigterm(args, progress) -> dict:
    runs = []
    for run in range(args.sigterm_runs):
        with serving(args, f"sigterm-{run}") as server:
            # 3 users: about 70 % of the 4-user capacity, with a deadline long enough to see every fate.
            load, box = Requests(server, args, deadline=30.0), {}

            def stop_later(server=server, box=box, t0=load.t0) -> None:
                time.sleep(max(3.0, 10 * args.scale))
                box["signal"] = time.monotonic() - t0
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=TritonServer.exit_timeout_secs + 30)
                box["exit"] = time.monotonic() - t0

            killer = threading.Thread(target=stop_later)
            killer.start()
            run_async(load.closed_loop(3, max(3.0, 10 * args.scale) + 15, random.Random(run)))
            killer.join()
        accepted = [r for r in load.rows if r["sent"] < box["signal"]]
        after = [r for r in load.rows if r["sent"] >= box["signal"]]
        clean = ("ok", "queue full", "queue timeout", "refused")
        lost = [r for r in accepted if cause(r) not in clean and "stopping" not in r["message"]]
        result = {
            "run": run,
            "accepted_before_signal": len(accepted),
            "in_flight_at_signal": sum(1 for r in accepted if r["done"] >= box["signal"]),
            "completed": sum(1 for r in accepted if r["kind"] == "ok"),
            "lost": len(lost),
            "lost_messages": sorted({r["message"][:120] for r in lost}),
            "after_signal": dict(Counter(cause(r) for r in after)),
            "after_signal_messages": Counter(r["message"][:100] for r in after).most_common(4),
            "drain_s": round(box["exit"] - box["signal"], 2),
        }
        runs.append(result)
        progress(f"  run {run}: {result}")
    return {"runs": runs, "chart": chart_arithmetic(), "launcher_exit_timeout_s": TritonServer.exit_timeout_secs}


def kill_step(args, progress) -> dict:
    with serving(args, "kill-step") as server:
        network = f"{args.triton_model}_network"
        load = Requests(server, args, deadline=DEADLINE_S * 5)
        sampler = Sampler(server)
        sampler.start()
        box: dict[str, object] = {}

        def kill_later() -> None:
            time.sleep(max(3.0, 10 * args.scale))
            pid, copy = server.tritonserver()
            box["live_check_before"] = health.problem(copy, pid, server.http)
            pids = server.stubs(network)
            box["killed"], box["at"] = pids[0], time.monotonic() - load.t0
            os.kill(pids[0], signal.SIGKILL)
            deadline = box["at"] + 30
            while (found := health.problem(copy, pid, server.http)) is None and time.monotonic() - load.t0 < deadline:
                time.sleep(0.1)
            box["live_check_failed_after_s"] = round(time.monotonic() - load.t0 - box["at"], 2)
            box["live_check_says"] = found

        killer = threading.Thread(target=kill_later)
        killer.start()
        run_async(load.closed_loop(2, max(3.0, 10 * args.scale) + max(10.0, 30 * args.scale), random.Random(3)))
        killer.join()
        samples = sampler.stop()
        stubs_after = server.stubs(network)
    at = float(box["at"])
    after = [r for r in load.rows if r["sent"] >= at]
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


def soak(args, progress) -> dict:
    with serving(args, "soak") as server:
        cap = capacity(server, args, progress)
        seconds, load = args.soak_minutes * 60, Requests(server, args, deadline=DEADLINE_S * 5)
        sampler = Sampler(server, period=5.0)
        sampler.start()
        run_async(load.open_loop(0.7 * cap["goodput_rps"], seconds, random.Random(4)))
        samples = sampler.stop()
    done = sorted(r["done"] for r in load.rows)
    points = [(int(np.searchsorted(done, t)), rss) for t, rss, _, _ in samples]
    steady = points[len(points) // 10 :] or points  # the first tenth warms caches and pools
    slope = float(np.polyfit([p[0] for p in steady], [p[1] for p in steady], 1)[0]) * 1000 if len(steady) > 2 else None
    result = {
        "minutes": args.soak_minutes,
        "capacity_rps": cap["goodput_rps"],
        **summary(load.rows, seconds),
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


def slow_clients(args, progress) -> dict:
    phase = max(5.0, 20 * args.scale)
    with serving(args, "slow-clients") as server:
        baseline = Requests(server, args)
        run_async(baseline.probe(phase))
        stop, counts = threading.Event(), Counter()
        slow = [
            threading.Thread(target=_slow_sender, args=(server.http, args.triton_model, stop, counts), daemon=True)
            for _ in range(16)
        ]
        for thread in slow:
            thread.start()
        during = Requests(server, args)
        # Camera photos, given up on after 0.3 s (the client disconnects), back to back from 4 clients.
        abandoned = Requests(server, args, deadline=0.3, t0=during.t0)
        run_async(during.probe(phase), *(abandoned.probe(phase, CAMERA, period=0) for _ in range(4)))
        stop.set()
        ready_after = server.health()
    result = {
        "baseline": summary(baseline.rows, phase),
        "during": summary(during.rows, phase),
        "abandoning_requests": len(abandoned.rows),
        "abandoned": dict(Counter(cause(r) for r in abandoned.rows)),
        "slow_http_connections": dict(counts),
        "ready_after": ready_after,
    }
    progress(
        f"  baseline p50 {result['baseline']['p50_ms']} ms, during p50 {result['during']['p50_ms']} ms, "
        f"p99 {result['during']['p99_ms']} ms, {result['during']['causes']}; {result['abandoned']}; {dict(counts)}"
    )
    return result


def largest_request(pool: dict[tuple[int, int], list[bytes]]) -> list[bytes]:
    """As many camera photos as one request may carry: up to 8 images, their bytes within the request limit."""
    photos = sorted(pool[CAMERA], key=len, reverse=True)
    chosen: list[bytes] = []
    for data in photos * configs.MAX_BATCH_SIZE:
        if len(chosen) < configs.MAX_BATCH_SIZE and sum(map(len, chosen)) + len(data) <= DEFAULT_MAX_REQUEST_BYTES:
            chosen.append(data)
    return chosen


class PssSampler(threading.Thread):
    """Every `period` s: seconds since `t0`, PSS of tritonserver and its steps in MB."""

    def __init__(self, server: Launcher, t0: float, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.server, self.t0, self.period, self.rows, self.done = server, t0, period, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.rows.append((time.monotonic() - self.t0, self.server.pss_mb()))
            self.done.wait(self.period)

    def stop(self) -> list[tuple[float, float]]:
        self.done.set()
        self.join()
        return self.rows


async def _flood_connections(url: str, model: str, data: list[bytes], connections: int, seconds: float, rows) -> None:
    """`connections` clients, one TCP connection and one request in flight each, for `seconds`.

    No client deadline: tritonserver 2.51 can crash when clients cancel under load (server issue
    7368, fixed by PR 7840 in 2.53); the request's queue timeout still bounds its wait in the server.
    """
    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [len(data), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[d] for d in data], dtype=object))
    end = time.monotonic() + seconds

    async def connection() -> None:
        client = grpcclient.InferenceServerClient(url, channel_args=[("grpc.use_local_subchannel_pool", 1)])
        try:
            while time.monotonic() < end:
                sent = time.monotonic()
                try:
                    await client.infer(model, [tensor], timeout=int(DEADLINE_S * 1e6))
                    kind, message = "ok", ""
                except Exception as err:  # every failure is a row, named by its cause
                    kind, message = failure_kind(err), str(err)[:200]
                rows.append({"sent": sent, "done": time.monotonic(), "kind": kind, "message": message})
                if kind != "ok":
                    await asyncio.sleep(0.05)
        finally:
            await client.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


def _flood_process(url: str, model: str, data: list[bytes], connections: int, seconds: float) -> list[dict]:
    rows: list[dict] = []
    run_async(_flood_connections(url, model, data, connections, seconds, rows))
    return rows


def interactive_goal_met(interactive: dict) -> bool:
    """The flood's goal for the interactive user: every request answered within 2 s or refused within 1 s."""
    answered, refused = interactive["answered_max_ms"] or 0, interactive["refused_max_ms"] or 0
    return answered <= DEADLINE_S * 1000 and refused <= REFUSED_WITHIN_S * 1000


def _step_counts(delta: dict[str, triton_stats.ModelCounters]) -> dict[str, dict]:
    """Per model during the flood: answered and failed requests, mean queueing and compute ms per answered one."""
    counts = {}
    for name, c in sorted(delta.items()):
        if c.success or c.fail:
            compute = c.compute_input + c.compute_infer + c.compute_output
            queue_ms, compute_ms = (round(ns / c.success / 1e6, 1) if c.success else None for ns in (c.queue, compute))
            counts[name] = {"success": c.success, "fail": c.fail, "queue_ms": queue_ms, "compute_ms": compute_ms}
    return counts


def _returned_after(samples: list[tuple[float, float]], end: float, idle: float, within: float = 150) -> float | None:
    """Seconds after the flood until PSS stays within `within` MB of idle."""
    after = [(t, mb) for t, mb in samples if t >= end]
    for index, (t, _) in enumerate(after):
        if all(mb - idle <= within for _, mb in after[index:]):
            return round(t - end, 1)
    return None


def flood(args, progress) -> dict:
    """The largest requests the server accepts from many connections, then quiet: PSS and the interactive user."""
    data = largest_request(args.pool)
    seconds, quiet = FLOOD_S * args.scale, FLOOD_AFTER_S
    with serving(args, "flood") as server:
        capacity(server, args, progress)  # warm: every step has decoded camera photos once
        time.sleep(3)
        idle, pids = server.pss_mb(), {p.pid for p in procfs.descendants(server.process.pid)}
        before = server.statistics()
        t0 = time.monotonic()
        # The interactive user takes the interactive path at the interactive priority, as client.Classifier(
        # interactive=True) does; no cancellation (see _flood_connections): its deadline of 10 s only caps
        # the steps' own timeouts.
        reserved = configs.interactive_ensemble_name(catalog.get(args.model))
        probe = Requests(server, args, deadline=10.0, t0=t0, priority=configs.INTERACTIVE_PRIORITY, model=reserved)
        sampler = PssSampler(server, t0)
        sampler.start()
        url, model = server.grpc_url, args.triton_model
        # The flood from a process of its own: in this one its 40 clients' serialization would delay the probe.
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            flooding = pool.apply_async(_flood_process, (url, model, data, FLOOD_CONNECTIONS, seconds))
            run_async(probe.probe(seconds))
            load_rows = flooding.get()
        flood_end = time.monotonic() - t0
        steps = _step_counts(triton_stats.difference(before, server.statistics()))
        time.sleep(quiet)
        samples = sampler.stop()
        alive = {p.pid for p in procfs.descendants(server.process.pid)} >= pids
        after = Requests(server, args, t0=t0)
        run_async(after.probe(1.0))
    interactive = _interactive(probe.rows, flood_end)
    interactive["goal_met"] = interactive_goal_met(interactive)
    result = {
        "connections": FLOOD_CONNECTIONS,
        "seconds": seconds,
        "malloc": args.allocator,
        "request_images": len(data),
        "request_bytes": sum(map(len, data)),
        "requests": len(load_rows),
        "causes": dict(Counter(cause(r) for r in load_rows)),
        "pss_idle_mb": round(idle),
        "pss_peak_mb": round(max(mb for _, mb in samples)),
        "pss_growth_mb": round(max(mb for _, mb in samples) - idle),
        "pss_after_mb": round(samples[-1][1]),
        "pss_after_minus_idle_mb": round(samples[-1][1] - idle),
        "after_s": quiet,
        "back_within_150mb_after_s": _returned_after(samples, flood_end, idle),
        "bound_mb": round(memory.pod_memory_bytes(_deployment(args, FLOOD_CONNECTIONS)) / 2**20),
        "interactive": interactive,
        "steps": steps,
        "processes_alive": alive,
        "answered_after": dict(Counter(cause(r) for r in after.rows)),
        "samples": [(round(t, 1), round(mb)) for t, mb in samples],
        "probe": [(round(r["sent"], 1), cause(r), round((r["done"] - r["sent"]) * 1000)) for r in probe.rows],
    }
    progress(f"  { ({k: v for k, v in result.items() if k not in ('samples', 'probe')}) }")
    return result


def _deployment(args, requests_in_flight: int) -> memory.Deployment:
    """The drilled server as the memory formula sees it (the launcher's layout for this machine's cores)."""
    _, resolved = layout.resolve(None)
    return memory.Deployment.of(resolved, [args.model], False, 0, requests_in_flight=requests_in_flight)


def huge_jpeg(side: int) -> bytes:
    """A valid one-colour JPEG of side x side: a few hundred kB that decode to 3 x side^2 bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 40, 40)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def outcomes(rows: list[dict]) -> list[dict]:
    """Requests alike in size, kind and message, counted once with their slowest time, in the order first seen."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        key = (row["images"], row["kind"], row["message"])
        group = groups.setdefault(key, {"images": row["images"], "kind": row["kind"], "count": 0, "max_s": 0.0})
        group["count"] += 1
        group["max_s"] = max(group["max_s"], row["s"])
        group["message"] = row["message"]
    return list(groups.values())


def huge_images(args, progress) -> dict:
    """Requests of eight huge images on every instance and queue place at once, then one each: peak PSS vs the bound."""
    huge = huge_jpeg(int(DEFAULT_MAX_PIXELS**0.5))
    with serving(args, "huge-images") as server:
        idle, pids = server.pss_mb(), {p.pid for p in procfs.descendants(server.process.pid)}
        step = configs.preprocess_name(catalog.get(args.model))
        instances = len(server.stubs(step)) - len(server.stubs("pixels_" + step))
        admitted = instances + configs.max_queue_size("preprocess", instances)
        t0, rows = time.monotonic(), []
        sampler = PssSampler(server, t0, period=0.1)
        sampler.start()

        async def send(images: list[bytes]) -> None:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [len(images), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[d] for d in images], dtype=object))
            sent = time.monotonic()
            try:
                await client.infer(args.triton_model, [tensor])
                kind, message = "ok", ""
            except Exception as err:
                kind, message = failure_kind(err), str(err)[:160]
            finally:
                await client.close()
            rows.append(
                {"images": len(images), "s": round(time.monotonic() - sent, 2), "kind": kind, "message": message}
            )

        # Eight per request on every instance and queue place at once, then one each: the decodes themselves.
        run_async(*(send([huge] * configs.MAX_BATCH_SIZE) for _ in range(admitted)))
        run_async(*(send([huge]) for _ in range(admitted)))
        time.sleep(3)
        samples = sampler.stop()
        alive = {p.pid for p in procfs.descendants(server.process.pid)} >= pids
        after = Requests(server, args, t0=t0)
        run_async(after.probe(1.0))
    result = {
        "image": f"{int(DEFAULT_MAX_PIXELS**0.5)}x{int(DEFAULT_MAX_PIXELS**0.5)} JPEG, {len(huge):,} bytes",
        "requests": outcomes(rows),
        "pss_idle_mb": round(idle),
        "pss_peak_mb": round(max(mb for _, mb in samples)),
        "pss_after_3s_mb": round(samples[-1][1]),
        "bound_mb": round(memory.pod_memory_bytes(_deployment(args, 2 * admitted)) / 2**20),
        "processes_alive": alive,
        "answered_after": dict(Counter(cause(r) for r in after.rows)),
    }
    progress(f"  {result}")
    return result


# --- figures ------------------------------------------------------------------------------------


def plot_overload(result: dict, path: Path) -> Path:
    from perf.plots import plt, save

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
    return save(fig, path, dpi=110)


OVERLOAD_COLUMNS = (
    "offered | requests/s offered | goodput/s | p99 ms | outcomes | refusal p99 ms | interactive "
    "(answered max ms / refused max ms) | RSS start/peak/after MB | ready throughout | recovery s"
)
SIGTERM_COLUMNS = "run | accepted before SIGTERM | in flight at SIGTERM | completed | lost | after SIGTERM | drain s"


def markdown(name: str, result: dict) -> list[str]:
    lines = [f"`{result['command']}` ({result['finished_at']}, {result['machine']})", ""]
    if name == "overload":
        cap, rows = result["capacity"], []
        for lv in result["levels"]:
            it, rss = lv["interactive"], f"{lv['rss_start_mb']}/{lv['rss_peak_mb']}/{lv['rss_after_mb']}"
            interactive = f"{it['answered']}/{it['sent']} ({it['answered_max_ms']} / {it['refused_max_ms']})"
            cells = [f"{lv['factor']:g}x", lv["offered_rps"], lv["goodput_rps"], lv["p99_ms"], _causes(lv["causes"])]
            rows.append([*cells, lv["refusal_p99_ms"], interactive, rss, lv["ready_throughout"], lv["recovery_s"]])
        lines += [
            f"Capacity (4 closed-loop users, mixed sizes): **{cap['goodput_rps']} requests/s**; idle "
            f"interactive latency {result['idle_interactive_ms']} ms. Goodput at 10x / goodput at 1x: "
            f"**{result['goodput_ratio_at_10x']}** (goal >= 0.8).",
            "",
            *study.table(OVERLOAD_COLUMNS.split(" | "), rows),
            "![overload](img/reliability_overload.png)",
            "",
        ]
    elif name == "sigterm":
        chart = result["chart"]
        counts = ("run", "accepted_before_signal", "in_flight_at_signal", "completed", "lost")
        rows = [[*(run[k] for k in counts), _causes(run["after_signal"]), run["drain_s"]] for run in result["runs"]]
        lines += [
            f"Chart: preStop sleep {chart['preStopSleepSeconds']} s + exit timeout "
            f"{chart['exitTimeoutSeconds']} s + {GRACE_SPARE_SECONDS} s = terminationGracePeriodSeconds "
            f"{chart['terminationGracePeriodSeconds']} s; the launcher's exit timeout is "
            f"{result['launcher_exit_timeout_s']} s.",
            "",
            *study.table(SIGTERM_COLUMNS.split(" | "), rows),
        ]
    else:
        hidden = ("points", "samples", "probe", "finished_at", "machine", "command")
        shown = {k: v for k, v in result.items() if k not in hidden}
        lines += ["```json", compact_json(shown), "```", ""]
    return lines


def compact_json(value: dict) -> str:
    """One line per top-level key (one per item for a list of objects): the figures stay readable in few bytes."""

    def one(v: object) -> str:
        return json.dumps(v, separators=(", ", ": "))

    def item(v: object) -> str:
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return "[\n" + ",\n".join(f"  {one(x)}" for x in v) + "\n ]"
        return one(v)

    return "{\n" + ",\n".join(f" {one(k)}: {item(v)}" for k, v in value.items()) + "\n}"


def _causes(causes: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(causes.items(), key=lambda kv: -kv[1]))


def publish(out: Path) -> Path:
    """Each drill's figures into its block of docs/reliability.md (the text around them is written by hand)."""
    found = {
        name: json.loads((out / f"{name}.json").read_text()) for name in DRILLS if (out / f"{name}.json").is_file()
    }
    texts = {f"drill-{name}": "\n".join(markdown(name, result)) for name, result in found.items()}
    plot = out / "overload.png"
    return study.publish(DOC, texts, {plot: "reliability_overload.png"} if plot.is_file() else {})


# --- command line -------------------------------------------------------------------------------


def reinstall(source: Path, dest: Path, entry: catalog.ModelEntry) -> Path:
    """`entry`'s exported network installed afresh into `dest`, so the drill serves today's configs."""
    network = source / configs.network_name(entry)
    record = json.loads((network / install.EXPORT_RECORD).read_text())
    shutil.rmtree(dest, ignore_errors=True)
    install.install(entry, network / "1" / "model.onnx", record, dest, "portable")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = study.arguments("perf drills", __doc__, PROJECT / "build" / "perf" / "drills")
    parser.add_argument("drills", nargs="*", metavar="DRILL", help=f"any of {', '.join(DRILLS)} (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's duration (0.1: a trial)")
    parser.add_argument("--soak-minutes", type=float, default=20.0, help="soak duration (default 20)")
    parser.add_argument("--sigterm-runs", type=int, default=3)
    parser.add_argument("--malloc", dest="allocator", choices=memory.MALLOCS, default=memory.DEFAULT_MALLOC)
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
    args.triton_model = entry.triton_name
    ensure_exported(args.repository, [entry])
    args.staged = reinstall(args.repository, args.out / "model_repository", entry)
    args.pool = benchmark_jpegs()
    facts = machine.facts()
    flags = ", ".join(facts.get("cpu_flags") or []) or "CPU flags not recorded"
    where = f"{facts['cpu_model']} ({flags}), {facts['usable_cores']} usable cores, load {facts['load_average']}"
    for name in args.drills or DRILLS:
        print(f"drill {name}:", flush=True)
        result = globals()[name.replace("-", "_")](args, lambda m: print(m, flush=True))
        result |= {"command": study.command("perf drills", argv), "machine": where, "finished_at": machine.utc_now()}
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / f"{name}.md").write_text("\n".join(markdown(name, result)))
        if name == "overload":
            plot_overload(result, args.out / "overload.png")
    if args.publish:
        print(f"wrote {publish(args.out)}")
    return 0
