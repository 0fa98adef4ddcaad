"""Liveness that sees what Triton 2.51 does not: every Python step process still running.

python -m model_repository.health --repository /repository/models [--http-port 8000]

Triton 2.51 neither restarts a Python-backend stub process that died (out of memory, a crash in a
native library) nor reports anything but live and ready afterwards, while every request the dead
step serves fails. The serving copy records how many stub processes it asks for
(layout.render writes `python_stub_processes` into its marker); this check counts the
tritonserver's stubs and exits 1 when fewer run, so the chart's liveness probe restarts the
container. It also asks Triton's own live endpoint when an HTTP port is given. Standard library
only: the kubelet runs it every few seconds.

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


def problem(repository: Path, pid: int | None = None, http_port: int | None = None) -> str | None:
    """Why the server is not live, or None."""
    pid = pid if pid is not None else server_pid()
    if pid is None:
        return f"no {SERVER} process is running"
    if http_port is not None and (status := live_status(http_port)) != 200:
        return f"{SERVER} live endpoint answered {status or 'nothing'}"
    expected, running = expected_stubs(repository), len(procfs.python_stubs(pid))
    if running < expected:
        return (
            f"{expected - running} of {expected} Python step processes died; tritonserver 2.51 neither "
            "restarts them nor reports it, and every request they serve fails"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.health", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True, help="the serving copy tritonserver serves")
    parser.add_argument("--pid", type=int, help="tritonserver's process id (default: found by name)")
    parser.add_argument("--http-port", type=int, help="also require 200 from Triton's live endpoint on this port")
    args = parser.parse_args(argv)
    found = problem(args.repository, args.pid, args.http_port)
    if found:
        print(f"not live: {found}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
