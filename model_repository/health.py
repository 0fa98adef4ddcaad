"""Liveness that sees what Triton 2.51 does not: every Python step process still running.

python -m model_repository health --repository /repository/models [--http-port 8000]

Triton 2.51 neither restarts a Python-backend stub process that died (out of memory, a crash in a
native library) nor reports anything but live and ready afterwards, while every request the dead
step serves fails. `dead_steps` is the one check for it, used twice: the chart's liveness probe
runs this module's command, which compares the tritonserver's stubs with the count the serving copy
asks for (layout.render writes `python_stub_processes` into its marker) and exits 1 so the kubelet
restarts the container; the local launcher's `StepWatch` counts the stubs once the server is ready
and stops the server when fewer run. Standard library only: the kubelet runs it every few seconds.

The production release (2.73) fails strict readiness on a dead stub, so the readiness probe takes
the pod out of the Service, but it restarts nothing either: this check stays the one that restarts
(docs/security.md, "A dead Python step"; unverified on 2.73).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from model_repository import procfs

SERVER = "tritonserver"
MARKER = ".serving-copy.json"  # what layout.render writes into every serving copy it makes


def expected_stubs(repository: Path) -> int:
    """The Python step processes the serving copy at `repository` asks for."""
    return int(json.loads((repository / MARKER).read_text())["python_stub_processes"])


def server_pid() -> int | None:
    """The tritonserver process visible here (in a pod: the server container's)."""
    for entry in procfs.PROC.glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() == SERVER:
                return int(entry.name)
        except OSError:
            continue
    return None


def live_status(http_port: int) -> int:
    """HTTP status of Triton's /v2/health/live on loopback; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/live", timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


def is_ready(http_url: str) -> bool:
    """One strict-readiness check of a server's HTTP endpoint (host:port): every model loaded and warm."""
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def dead_steps(pid: int, expected: int) -> str | None:
    """What is wrong when fewer than `expected` Python step processes run below tritonserver `pid`, or None."""
    running = len(procfs.python_stubs(pid))
    if running >= expected:
        return None
    return (
        f"{expected - running} of {expected} Python step processes died; tritonserver 2.51 neither "
        "restarts them nor reports it, and every request they serve fails"
    )


def problem(repository: Path, pid: int | None = None, http_port: int | None = None) -> str | None:
    """Why the server is not live, or None."""
    pid = pid if pid is not None else server_pid()
    if pid is None:
        return f"no {SERVER} process is running"
    if http_port is not None and (status := live_status(http_port)) != 200:
        return f"{SERVER} live endpoint answered {status or 'nothing'}"
    return dead_steps(pid, expected_stubs(repository))


class StepWatch:
    """The launcher's view of `dead_steps`: the expected count is what ran when the server first reported ready.

    Before that the steps are still starting; after it, fewer means one died, and the launcher stops
    the server loudly so a supervisor (or the person at the terminal) starts it again.
    """

    def __init__(self, pid: int, http_url: str) -> None:
        self.pid, self.http_url = pid, http_url
        self.expected: int | None = None

    def problem(self) -> str | None:
        if self.expected is None:
            if is_ready(self.http_url):
                self.expected = len(procfs.python_stubs(self.pid))
            return None
        found = dead_steps(self.pid, self.expected)
        return f"{found}; the server is stopped (start it again)" if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository health", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True, help="the serving copy tritonserver serves")
    parser.add_argument("--pid", type=int, help="tritonserver's process id (default: found by name)")
    parser.add_argument("--http-port", type=int, help="also require 200 from Triton's live endpoint on this port")
    args = parser.parse_args(argv)
    found = problem(args.repository, args.pid, args.http_port)
    if found:
        print(f"not live: {found}", file=sys.stderr)
        return 1
    return 0
