"""The server a run measures: a URL given by the user (a cluster, a running server), or the launcher's
own server (model_repository/server.py) on the exported models, on free ports for the run, so perf
measures exactly what `make serve` serves on this machine.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import catalog
from model_repository import configs, install
from model_repository.admin import key_from_environment
from model_repository.server import TritonServer
from perf.analyzer import Target


def ensure_exported(
    repository: Path, entries: list[catalog.ModelEntry], progress: Callable[[str], None] = print
) -> None:
    """Export (seeded random weights, portable) the models `repository` lacks, as `make export` does."""
    missing = [e.name for e in entries if not (repository / configs.network_name(e) / install.EXPORT_RECORD).is_file()]
    if missing:
        progress(f"exporting {', '.join(missing)} into {repository} (random weights; 25-45 s per model)")
        cmd = [sys.executable, "-m", "export", *missing, "--random-weights", "--repository", str(repository)]
        subprocess.run(cmd, check=True)


def remote(url: str, metrics_url: str | None = None) -> Target:
    """A running server: gRPC at `url` (host:port); metrics default to the same host, port 8002.

    Its admin key (for the statistics API) comes from $PADDLECLAS_TRITON_ADMIN_KEY.
    """
    address = url.removeprefix("grpc://")
    if metrics_url is None:
        metrics_url = f"http://{urlsplit(f'//{address}').hostname or '127.0.0.1'}:8002/metrics"
    return Target(grpc_url=address, metrics_url=metrics_url, admin_key=key_from_environment())


def target(server: TritonServer) -> Target:
    """What the harness needs of a server this process started, its admin key included."""
    return Target(grpc_url=server.grpc_url, metrics_url=server.metrics_url, admin_key=server.admin_key)


@contextlib.contextmanager
def local(repository: Path, entries: list[catalog.ModelEntry], log_path: Path) -> Iterator[Target]:
    """tritonserver 2.51.0 serving `entries` from `repository` on free ports; its log goes to `log_path`."""
    ensure_exported(repository, entries)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with TritonServer.on_free_ports(repository, log_path, models=[entry.name for entry in entries]) as started:
        yield target(started)
