"""The server a run measures: a URL given by the user (a cluster, a running server), or a local
tritonserver started on free ports for the duration of the run and always stopped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from model_repository.configs import Layout
from model_repository.server import TritonServer, free_port, key_from_environment
from perf.analyzer import Target


def remote(url: str, metrics_url: str | None = None) -> Target:
    """A running server: gRPC at `url` (host:port); metrics default to the same host, port 8002.

    Its admin key (for the statistics API) comes from $PADDLECLAS_TRITON_ADMIN_KEY.
    """
    address = url.removeprefix("grpc://")
    if metrics_url is None:
        host = urlsplit(f"//{address}").hostname or "127.0.0.1"
        metrics_url = f"http://{host}:8002/metrics"
    return Target(grpc_url=address, metrics_url=metrics_url, admin_key=key_from_environment())


@contextlib.contextmanager
def local(repository: Path, log_path: Path, layout: Layout | None = None) -> Iterator[tuple[Target, TritonServer]]:
    """tritonserver 2.51.0 on `repository`, on free ports, sized as the launcher sizes it unless `layout` says
    otherwise; the log goes to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = TritonServer(repository, free_port(), free_port(), free_port(), log_path=log_path, layout=layout)
    with server:
        yield target(server), server


def target(server: TritonServer) -> Target:
    """What the harness needs of a server this process started, its admin key included."""
    return Target(grpc_url=server.grpc_url, metrics_url=server.metrics_url, admin_key=server.admin_key)
