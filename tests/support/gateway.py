"""The real nginx (Debian's `nginx` package, which `make setup` unpacks) in front of a local tritonserver.

It runs model_repository/gateway.py's configuration, the chart's gateway text with free loopback
ports, so a test sees what the pod's gateway does: the same limits, the same refusals.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from model_repository import gateway

# Where `make setup` unpacks Debian's package (apt-get download + dpkg -x: the binary, no service).
UNPACKED = Path(sys.prefix) / "nginx" / "usr" / "sbin" / "nginx"


def binary() -> Path:
    """The nginx binary `make setup` unpacked, else one on PATH."""
    found = UNPACKED if UNPACKED.is_file() else shutil.which("nginx")
    if not found:
        raise FileNotFoundError(f"no nginx binary at {UNPACKED} or on PATH: run `make setup`")
    return Path(found)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running(config: gateway.Gateway, directory: Path) -> Iterator[gateway.Gateway]:
    """nginx serving `config` (its state_dir is replaced by `directory`) until the block ends."""
    config = gateway.Gateway(**{**config.__dict__, "state_dir": str(directory), "listen_address": "127.0.0.1"})
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(gateway.nginx_conf(config), encoding="utf-8")
    # In the foreground, so stopping this process stops nginx. As root, nginx's workers switch to an
    # unprivileged user that could not write the state directory. nginx takes one -g: a second replaces it.
    directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    command = [str(binary()), "-p", str(directory), "-e", "stderr", "-c", str(conf), "-g", directives]
    log = (directory / "nginx.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        ports = [p for p in (config.grpc_port, config.http_port) if p is not None]
        deadline = time.monotonic() + 10
        while not all(map(_listening, ports)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(directory / 'nginx.log').read_text()}")
            time.sleep(0.05)
        yield config
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
