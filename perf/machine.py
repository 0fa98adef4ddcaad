"""Facts about the machine and software a run measured, recorded beside the numbers.

Ratios are only comparable between runs on similar machines; the report says which machine it was
(CPU model, cores the process may use, memory) and which versions of every moving part ran.
"""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from model_repository.cores import usable_cores

PACKAGES = (
    "tritonclient",
    "nvidia-pytriton",
    "onnxruntime",
    "paddlepaddle",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "locust",
)


def cpu_model() -> str:
    """The `model name` line of /proc/cpuinfo (Linux); the platform string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")) -> list[str]:
    """The instruction-set flags engines choose kernels by: figures from machines with other flags never compare."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15-minute load: a busy machine at the start of a run explains odd numbers."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def facts() -> dict[str, object]:
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),  # affinity mask capped by the cgroup CPU limit, as the server sizes itself
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_average": load_average(),
        "versions": package_versions(),
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU time every process on the machine has used since boot (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _own_seconds() -> float:
    """CPU time of this process and every descendant, living or reaped (cutime/cstime)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
    own, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in own]
        own.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in own)


class ForeignCpu:
    """How much of the machine other processes used while we measured, as a percentage of all cores.

    Anything else running shares the cores a measurement needs; the report prints this next to
    the numbers so a contaminated point is visible instead of silently slow. Linux only (None
    elsewhere).
    """

    def __init__(self) -> None:
        self.start = (time.monotonic(), _busy_seconds(), _own_seconds())
        self.percent: float | None = None

    def stop(self) -> float | None:
        wall0, busy0, own0 = self.start
        wall, busy, own = time.monotonic() - wall0, _busy_seconds(), _own_seconds()
        if busy is None or busy0 is None or wall <= 0:
            return None
        foreign = max(0.0, (busy - busy0) - (own - own0))
        self.percent = 100.0 * foreign / (wall * (os.cpu_count() or 1))
        return self.percent


def wait_for_quiet(threshold_percent: float, max_wait_s: float, sample_s: float = 5.0) -> float | None:
    """Sample other processes' CPU share until it drops to `threshold_percent`, for at most `max_wait_s`.

    Returns the last sample. Used between a contaminated measurement and its repetition, so a
    shared machine's busy minutes are waited out instead of measured.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        sample = ForeignCpu()
        time.sleep(sample_s)
        percent = sample.stop()
        if percent is None or percent <= threshold_percent or time.monotonic() >= deadline:
            return percent
