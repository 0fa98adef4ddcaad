"""A process and its descendants from /proc (Linux), standard library only.

The launcher watches tritonserver's Python-backend stubs with it (Triton 2.51 neither restarts a
stub that died nor reports the server unready), and the benchmarks count processes and memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class Process:
    pid: int
    command: str  # the command line, arguments joined by spaces
    resident_kib: int


def _status(pid: int | str) -> dict[str, str]:
    text = (PROC / str(pid) / "status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def descendants(root_pid: int) -> list[Process]:
    """root_pid first, then every process below it; processes that end meanwhile are skipped."""
    children: dict[int, list[int]] = {}
    for entry in PROC.glob("[0-9]*"):
        try:
            children.setdefault(int(_status(entry.name)["PPid"]), []).append(int(entry.name))
        except (OSError, KeyError, ValueError):
            continue
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop(0)
        todo += children.get(pid, [])
        try:
            status = _status(pid)
            command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(Process(pid, command.strip(), int(status.get("VmRSS", "0 kB").split()[0])))
    return found


def python_stubs(server_pid: int) -> list[Process]:
    """The Python-backend stub processes of a tritonserver: one per instance of every Python model."""
    return [process for process in descendants(server_pid) if STUB in process.command]


def pss_kib(pid: int) -> int:
    """Proportional set size of one process (its share of every page it maps, /dev/shm included), 0 once gone.

    What a pod's memory cgroup charges comes closest to the sum of PSS over its processes: shared
    pages (the Python backend's /dev/shm regions, libraries) count once, split among their users.
    """
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def tree_pss_mib(root_pid: int) -> float:
    """PSS of a process and every descendant, in MiB."""
    return sum(pss_kib(process.pid) for process in descendants(root_pid)) / 1024
