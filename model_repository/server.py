"""A tritonserver process on a model repository: start, wait until ready, stop, and always clean up.

`TritonServer` runs the real tritonserver 2.51.0 (model_repository/wheel.py) on a serving copy
rendered at start (model_repository/layout.py: only the selected models, every step sized for the
cores this machine lets the server use), with the arguments model_repository/flags.py defines for
the chart too: strict readiness, no dynamic model loading, restricted APIs behind an admin key
(model_repository/admin.py). It is a context manager so the process, the serving copy and a per-run
key never outlive their run. `TritonServer.on_free_ports` is the one way the tests, benchmarks and
drills start a server; `python -m model_repository serve` (model_repository/serve.py) is the command.

Secure by default (docs/security.md): every listener binds 127.0.0.1 unless listen_address says
otherwise, the SageMaker and Vertex AI endpoints are off, and the shared-memory, model-repository,
statistics, trace and logging APIs answer only callers that send the admin key. The key comes from
$PADDLECLAS_TRITON_ADMIN_KEY or admin_key_file; otherwise each run makes a random one and writes it
to a 0600 file under build/admin-keys/ (the path is printed by the command, the key never is).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from model_repository import configs, layout, memory
from model_repository.admin import (
    ADMIN_KEYS_DIR,
    RESTRICTED_GROUPS,
    check_key,
    header_name,
    key_from_environment,
    read_key_file,
    write_key_file,
)
from model_repository.flags import SERVICE_NAME, ServerSettings, Tracing, server_arguments
from model_repository.health import is_ready
from model_repository.paths import PROJECT
from model_repository.wheel import (
    BACKENDS_DIR,
    ServerError,
    backend_directory,
    cache_directory,
    check_numpy,
    server_binary,
)
from preprocess import FAST_DECODE_MARGIN
from preprocess.slots import server_directory

TRACES_DIR = PROJECT / "build" / "traces"  # triton-mode trace files of local runs


def free_port() -> int:
    """A loopback port nothing listens on now (another process may take it before it is bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports(NamedTuple):
    """A server's HTTP, gRPC and metrics ports."""

    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> Ports:
        """Three free loopback ports, so runs beside each other (and beside `make serve`) never collide."""
        return cls(free_port(), free_port(), free_port())


@dataclass
class TritonServer:
    """A tritonserver process; use as a context manager so it is always stopped."""

    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_path: Path | None = None
    exit_timeout_secs: int = 10
    models: list[str] | None = None  # catalog names to serve; None: every installed model
    cores: int | None = None  # None: the usable cores (cgroup-aware)
    layout: configs.Layout | None = None  # None: configs.Layout.for_cores(cores)
    warmup: bool = True  # False skips model_warmup: a faster start, and "ready" no longer means warm
    listen_address: str = "127.0.0.1"  # every listener; anything else exposes the server to that network
    admin_key: str | None = field(default=None, repr=False)  # None: $PADDLECLAS_TRITON_ADMIN_KEY, else random per run
    admin_key_file: Path | None = None  # read the key from here (a file the caller owns)
    restricted_groups: tuple[str, ...] = RESTRICTED_GROUPS
    tracing: Tracing | None = None  # None: no tracing (the default)
    response_cache_bytes: int = 0  # 0: no response cache; N: a local cache of N bytes on the public ensembles
    fast_decode: bool = False  # opt-in: large JPEGs decoded at a reduced DCT scale (docs/preprocessing.md)
    fast_decode_margin: float = FAST_DECODE_MARGIN  # fast decode only: decoded short side >= margin x target
    resize_tier: str = "exact"  # opt-in "near-exact": Pillow-resized steps on pillow-simd (preprocess/tiers.py)
    pillow_simd_dir: Path | None = None  # near-exact only; None: layout.default_pillow_simd_dir()
    queue_policies: bool = True  # False: unbounded queues, for benchmarks only (layout.Options)
    malloc: str = memory.DEFAULT_MALLOC  # preloaded into tritonserver and its steps, as production does (memory.py)
    process: subprocess.Popen | None = field(default=None, init=False)
    serving: dict | None = field(default=None, init=False)  # what layout.render wrote
    _serving_dir: Path | None = field(default=None, init=False)
    generated_key_file: Path | None = field(default=None, init=False)  # the per-run key, while running
    _random_key: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.admin_key is not None:
            self.admin_key = check_key(self.admin_key, "admin_key")
        elif self.admin_key_file is not None:
            self.admin_key = read_key_file(self.admin_key_file)
        else:
            self.admin_key = key_from_environment()
        if self.admin_key is None:  # replaced by a fresh one at every start()
            self.admin_key = secrets.token_urlsafe(32)
            self._random_key = True

    @classmethod
    def on_free_ports(cls, repository: Path, log_path: Path | None = None, **options: object) -> TritonServer:
        """A server on three free loopback ports: how tests, benchmarks and drills start one (`options` as fields)."""
        return cls(repository, *Ports.free(), log_path=log_path, **options)

    @property
    def host(self) -> str:
        """Where this machine reaches the listeners."""
        return "127.0.0.1" if self.listen_address in ("0.0.0.0", "::", "") else self.listen_address

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def admin_headers(self, protocol: str) -> dict[str, str]:
        """What a caller of a restricted API sends to this server, e.g. `headers=server.admin_headers("grpc")`."""
        return {header_name(protocol): str(self.admin_key)}

    def _ensure_key(self) -> None:
        """A fresh random key for this run when none was given, in a 0600 file named after the HTTP port."""
        if self._random_key:
            self.admin_key = secrets.token_urlsafe(32)
            self.generated_key_file = write_key_file(ADMIN_KEYS_DIR / f"{self.http_port}.key", self.admin_key)

    @property
    def served_models(self) -> list[str]:
        """Ensembles (public entry points) the running server serves."""
        return list(self.serving["models"]) if self.serving else []

    def settings(self) -> ServerSettings:
        """This server's arguments as settings (model_repository/flags.py, which the chart's test compares with)."""
        assert self._serving_dir is not None, "start() renders the serving copy first"
        tracing = self.tracing
        if tracing is not None and tracing.mode == "triton" and tracing.file is None:
            tracing = replace(tracing, file=TRACES_DIR / f"{self.http_port}.json")
        return ServerSettings(
            model_repository=str(self._serving_dir),
            admin_key=str(self.admin_key),
            binary=str(server_binary()),
            backend_directory=str(backend_directory()),
            exit_timeout_secs=self.exit_timeout_secs,
            listen_address=self.listen_address,
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
            restricted_groups=self.restricted_groups,
            tracing=tracing,
            resource_defaults=(("service.name", SERVICE_NAME), ("paddleclas.models", ",".join(self.served_models))),
            response_cache_bytes=self.response_cache_bytes,
            cache_directory=str(cache_directory()),
        )

    def command(self) -> list[str]:
        return server_arguments(self.settings())

    def environment(self) -> dict[str, str]:
        """Make the backend stub's embedded Python this environment's Python.

        The stub starts Python in isolated mode (PYTHONPATH is ignored) and takes sys.executable
        from PATH; with this venv's bin/ first it finds the venv's pyvenv.cfg, so model.py imports
        numpy, OpenCV and ONNX Runtime from here. LD_LIBRARY_PATH gives it this interpreter's own
        libpython rather than the system's, so library and standard library versions match.
        LD_PRELOAD and the allocator's settings come from `malloc` alone, never from the caller.
        """
        env = {k: v for k, v in os.environ.items() if k not in memory.MALLOC_VARIABLES}
        try:
            env |= memory.malloc_environment(self.malloc)
        except (ValueError, FileNotFoundError) as err:
            raise ServerError(str(err)) from None
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir and Path(libdir, sysconfig.get_config_var("LDLIBRARY") or "").exists():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
        return env

    def _render(self) -> None:
        cores, resolved = layout.resolve(self.cores)
        resolved = self.layout or resolved
        BACKENDS_DIR.parent.mkdir(parents=True, exist_ok=True)
        self._serving_dir = Path(tempfile.mkdtemp(prefix="serving-", dir=BACKENDS_DIR.parent))
        try:
            self.serving = layout.render(
                self.repository,
                self._serving_dir,
                self.models,
                resolved,
                cores,
                self.warmup,
                response_cache=self.response_cache_bytes > 0,
                fast_decode=self.fast_decode,
                fast_decode_margin=self.fast_decode_margin,
                queue_policies=self.queue_policies,
                resize_tier=self.resize_tier,
                pillow_simd_dir=self.pillow_simd_dir,
            )
        except Exception as err:
            self._remove_serving_copy()
            raise ServerError(str(err)) from err

    def _remove_serving_copy(self) -> None:
        if self._serving_dir is not None:
            shutil.rmtree(self._serving_dir, ignore_errors=True)
            self._serving_dir = None

    def start(self) -> None:
        check_numpy()
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} does not exist: export a model first (make export)")
        self._ensure_key()
        self._render()
        settings = self.settings()
        if settings.tracing is not None and settings.tracing.file is not None:  # tritonserver writes it there
            settings.tracing.file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb") if self.log_path else None
        self.process = subprocess.Popen(
            server_arguments(settings), env=self.environment(), stdout=log, stderr=subprocess.STDOUT if log else None
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}{self._log_tail()}")
            if is_ready(self.http_url):
                return
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout:.0f}s{self._log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout_secs + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._remove_serving_copy()
        if self.process is not None:  # the steps' large-decode slots (preprocess/slots.py) die with the server
            shutil.rmtree(server_directory(self.process.pid), ignore_errors=True)
        if self.generated_key_file is not None:  # a per-run key dies with its run
            self.generated_key_file.unlink(missing_ok=True)
            self.generated_key_file = None

    def _log_tail(self, lines: int = 25) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
