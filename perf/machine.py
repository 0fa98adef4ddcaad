"""The machine a run measured, and how busy other processes kept it: facts recorded beside every number.

Figures compare only between runs on similar machines: the report names the CPU, its instruction-set
flags (engines pick kernels by them), the cores this process may use (cgroup-aware, as the server
sizes itself) and the versions of every moving part. On a shared machine, `measure_quietly` repeats
a measurement during which other processes took a noticeable share of the cores.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from itertools import count
from pathlib import Path
from typing import Generic, TypeVar

from model_repository import procfs
from model_repository.cores import usable_cores

PACKAGES = ("tritonclient", "nvidia-pytriton", "onnxruntime", "numpy", "opencv-python-headless", "pillow", "locust")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def _cpuinfo(key: str) -> str | None:
    """The first `key` line of /proc/cpuinfo, None where there is none (not Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def cpu_flags() -> list[str]:
    """The instruction-set flags engines choose kernels by: figures from machines with other flags never compare."""
    present = set((_cpuinfo("flags") or "").split())
    return [flag for flag in FLAGS if flag in present]


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def utc_now() -> str:
    """When a run started or finished, as every raw file records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def facts() -> dict[str, object]:
    return {
        "cpu_model": _cpuinfo("model name") or platform.processor() or "unknown CPU",
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),  # MemTotal
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "versions": {name: package_version(name) for name in PACKAGES},
    }


def _busy_seconds() -> float:
    """CPU time every process on the machine has used since boot (all cores), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _own_seconds() -> float:
    """CPU time of this process and its descendants, living or reaped (utime, stime, cutime, cstime)."""
    total = 0
    for process in procfs.descendants(os.getpid()):
        try:
            stat = (procfs.PROC / str(process.pid) / "stat").read_text()
        except OSError:
            continue
        total += sum(int(v) for v in stat[stat.rindex(")") + 2 :].split()[11:15])
    return total / CLOCK_TICKS


class ForeignCpu:
    """The share of all cores that processes outside this run used between start and `stop()`, in percent."""

    def __init__(self) -> None:
        self.start = (time.monotonic(), _busy_seconds(), _own_seconds())

    def stop(self) -> float:
        wall0, busy0, own0 = self.start
        wall, foreign = time.monotonic() - wall0, (_busy_seconds() - busy0) - (_own_seconds() - own0)
        return 100.0 * max(0.0, foreign) / (max(wall, 1e-9) * (os.cpu_count() or 1))


def wait_for_quiet(limit_percent: float, max_wait_s: float, sample_s: float = 5.0) -> None:
    """Sample other processes' share until it is at most `limit_percent`, for at most `max_wait_s`."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        sample = ForeignCpu()
        time.sleep(sample_s)
        if sample.stop() <= limit_percent:
            return


@dataclass(frozen=True)
class Measured(Generic[T]):
    """A measurement, the share of the machine other processes took meanwhile, and how many tries it took."""

    value: T
    other_cpu_percent: float
    attempts: int


def measure_quietly(
    measure: Callable[[], T],
    limit_percent: float | None,
    repeats: int = 3,
    max_wait_s: float = 600.0,
    progress: Callable[[str], None] = print,
) -> Measured[T]:
    """`measure()`, repeated (up to `repeats` more times, each after waiting for quiet) while other
    processes used more than `limit_percent` of the machine during it; None measures once."""
    for attempt in count(1):
        foreign = ForeignCpu()
        value = measure()
        other = foreign.stop()
        if limit_percent is None or other <= limit_percent or attempt > repeats:
            return Measured(value, other, attempt)
        progress(f"  other processes used {other:.0f} % of the machine; waiting for quiet, then measuring again")
        wait_for_quiet(limit_percent, max_wait_s)
