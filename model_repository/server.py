"""Run the real tritonserver 2.51.0 binary (from the nvidia-pytriton wheel) on a model repository.

python -m model_repository.server [--repository DIR] [--models NAME ...] [--cores auto|N]
    [--preprocess-instances N ...] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
    [--listen-address 127.0.0.1] [--admin-key-file FILE]
    [--trace-mode triton|opentelemetry [--trace-rate N] [--trace-url URL] [--trace-resource KEY=VALUE ...]]
    [--response-cache-bytes N] [--fast-decode [--fast-decode-margin M]] [--malloc tcmalloc|jemalloc|system]
    [--resize-tier exact|near-exact [--pillow-simd-dir DIR]]

The wheel ships the server, the Python backend and one backend stub per Python version; the
server expects the stub inside the backend directory, so we assemble that directory (symlinks)
under build/. Same flags as production: strict readiness, no dynamic model loading. The server
reads a serving copy of the repository rendered at start (model_repository/layout.py): only the
selected models, every step sized for the cores this machine lets the server use.

Secure by default (docs/security.md): every listener binds 127.0.0.1 unless --listen-address
says otherwise, the SageMaker and Vertex AI endpoints are off, and the shared-memory,
model-repository, statistics, trace and logging APIs answer only callers that send the admin key
(HTTP header `admin-key`, gRPC metadata `triton-grpc-protocol-admin-key`). The key comes from
$PADDLECLAS_TRITON_ADMIN_KEY or --admin-key-file; otherwise each run makes a random one and
writes it to a 0600 file under build/admin-keys/ (the path is printed, the key never is).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from model_repository import configs, layout, memory, procfs
from preprocess import FAST_DECODE_MARGIN
from preprocess.slots import server_directory

PROJECT = Path(__file__).resolve().parent.parent
BACKENDS_DIR = PROJECT / "build" / "triton_backends"


# The restricted API groups: one key guards them all, on HTTP and on gRPC alike. Health, metadata,
# model-config and inference stay open (probes and clients need nothing but the address).
RESTRICTED_GROUPS = ("shared-memory", "model-repository", "statistics", "trace", "logging")
OPEN_GROUPS = ("health", "metadata", "model-config", "inference")
ADMIN_KEY_ENV = "PADDLECLAS_TRITON_ADMIN_KEY"  # the key itself (Kubernetes: from a Secret)
ADMIN_HEADER = "admin-key"  # HTTP header name; gRPC adds Triton's prefix (header_name)
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # tritonserver 2.51 expects it on gRPC metadata
ADMIN_KEYS_DIR = PROJECT / "build" / "admin-keys"  # random per-run keys, 0600, removed at stop
# What a key may hold: it travels in a command-line flag (`<groups>:<header>=<key>`) and a header.
_KEY = re.compile(r"[A-Za-z0-9._~+/-]{16,512}")

# Request size: tritonserver 2.51 has no server-side bound (no --http-max-input-size, which later
# releases added; its gRPC server accepts messages up to 2 GB, with no flag), and its Python backend
# has no ceiling for its shared-memory pool (only shm-default-byte-size and shm-growth-byte-size:
# the pool grows until /dev/shm is full, and that error names the pool's region). What bounds a
# request here: the preprocess step refuses a request over DEFAULT_MAX_REQUEST_BYTES or
# DEFAULT_MAX_REQUEST_PIXELS before any decode (preprocess/decoding.py); what the frontend holds
# meanwhile is requests in flight x their size, which a gateway bounds (model_repository/memory.py).


class ServerError(RuntimeError):
    """The server could not start or did not become ready; the message carries its log tail."""


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerError("nvidia-pytriton is not installed (it carries tritonserver): run `make setup`") from None
    return Path(pytriton.__file__).parent / "tritonserver"


def server_binary() -> Path:
    return _pytriton_dir() / "bin" / "tritonserver"


def cache_directory() -> Path:
    """The wheel's cache implementations (local/libtritoncache_local.so); the NGC image has them at the default."""
    return _pytriton_dir() / "caches"


def backend_directory() -> Path:
    """build/triton_backends/python: the wheel's Python backend plus the stub for this Python."""
    source = _pytriton_dir()
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"the nvidia-pytriton wheel has no Python backend stub for Python {sys.version.split()[0]}")
    python_dir = BACKENDS_DIR / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": source / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": source / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    for name, target in links.items():
        link = python_dir / name
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(target)
    return BACKENDS_DIR


def check_numpy() -> None:
    """The 2.51 Python backend stub is built for numpy 1: under numpy 2 every tensor arrives corrupt."""
    from importlib.metadata import version

    numpy_version = version("numpy")
    if int(numpy_version.split(".")[0]) >= 2:
        raise ServerError(
            f"numpy {numpy_version} is installed, but tritonserver 2.51's Python backend stub needs numpy 1.x "
            "(under numpy 2 it silently corrupts tensors): run `make setup` to restore the pinned versions"
        )


def header_name(protocol: str) -> str:
    """The admin header as the protocol carries it: `admin-key` (HTTP), `triton-grpc-protocol-admin-key` (gRPC)."""
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    return ADMIN_HEADER if protocol == "http" else GRPC_HEADER_PREFIX + ADMIN_HEADER


def admin_headers(protocol: str, key: str | None) -> dict[str, str] | None:
    """Headers for a restricted call (tritonclient's `headers=`); None without a key."""
    return {header_name(protocol): key} if key else None


def check_key(key: str, source: str) -> str:
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise ServerError(
            f"the admin key from {source} must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / - "
            "(it travels in a tritonserver flag and a header)"
        )
    return key


def read_key_file(path: Path) -> str:
    try:
        return check_key(Path(path).read_text(), str(path))
    except OSError as err:
        raise ServerError(f"cannot read the admin key file {path}: {err.strerror}") from None


def key_from_environment(env: dict[str, str] | None = None) -> str | None:
    """$PADDLECLAS_TRITON_ADMIN_KEY, checked; None when unset or empty."""
    value = (os.environ if env is None else env).get(ADMIN_KEY_ENV, "")
    return check_key(value, f"${ADMIN_KEY_ENV}") if value.strip() else None


def write_key_file(path: Path, key: str) -> Path:
    """Write `key` to a new file only its owner can read (0600, in a 0700 directory)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path


def restriction_flags(key: str, groups: tuple[str, ...] = RESTRICTED_GROUPS) -> list[str]:
    """The two restriction flags in the one form 2.51.0 accepts: `<group>,<group>:<header>=<key>`."""
    spec = f"{','.join(groups)}:{ADMIN_HEADER}={key}"
    return [f"--grpc-restricted-protocol={spec}", f"--http-restricted-api={spec}"]


# --- operations: tracing and the response cache (docs/operations.md) ----------------------------

TRACE_MODES = ("triton", "opentelemetry")
TRACES_DIR = PROJECT / "build" / "traces"  # triton-mode trace files of local runs
# Triton 2.51 exports OTLP over HTTP only (JSON body), to this path of a collector's OTLP/HTTP port.
DEFAULT_OTLP_URL = "http://127.0.0.1:4318/v1/traces"
SERVICE_NAME = "paddleclas-triton"  # the resource's service.name unless --trace-resource says otherwise


@dataclass(frozen=True)
class Tracing:
    """Triton's own request tracing, set by start flags (--trace-config), so the trace API stays restricted.

    One sampled request gives one span per model it passes (the ensemble, then each step) with
    REQUEST_START, QUEUE_START and REQUEST_END events, and a compute span per step: queue time is
    QUEUE_START to COMPUTE_START, compute time COMPUTE_START to COMPUTE_END. `rate` samples every
    rate-th request (1: all of them); `count` stops after that many traces (-1: never).
    """

    mode: str = "opentelemetry"
    rate: int = 1000
    count: int = -1
    file: Path | None = None  # triton mode: JSON trace file (default build/traces/<http-port>.json)
    log_frequency: int = 0  # triton mode: write every N traces to <file>.<i>; 0 writes at shutdown
    url: str = DEFAULT_OTLP_URL  # opentelemetry mode: the collector's OTLP/HTTP traces endpoint
    resource: tuple[tuple[str, str], ...] = ()  # opentelemetry mode: resource attributes (release, models, ...)

    def __post_init__(self) -> None:
        if self.mode not in TRACE_MODES:
            raise ValueError(f"trace mode must be one of {', '.join(TRACE_MODES)}, not {self.mode!r}")
        if self.rate < 0 or self.count < -1 or self.log_frequency < 0:
            raise ValueError("trace rate and log frequency must be >= 0 and count >= -1")
        if not re.fullmatch(r"https?://[^\s,]+", self.url):
            raise ValueError(f"trace URL must be an http(s):// URL without spaces or commas, not {self.url!r}")
        for key, value in self.resource:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", key) or not value or "\n" in value:
                raise ValueError(f"resource attribute {key}={value!r}: KEY of A-Z a-z 0-9 . _ - and a non-empty value")


def parse_resource(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """KEY=VALUE strings (the --trace-resource flag) as resource attribute pairs."""
    pairs = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--trace-resource takes KEY=VALUE, not {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


def trace_flags(tracing: Tracing, resource_defaults: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """--trace-config flags of 2.51 (TIMESTAMPS level); `resource_defaults` fill keys `tracing` leaves unset."""
    flags = [
        f"--trace-config=mode={tracing.mode}",
        "--trace-config=level=TIMESTAMPS",
        f"--trace-config=rate={tracing.rate}",
        f"--trace-config=count={tracing.count}",
    ]
    if tracing.mode == "triton":
        assert tracing.file is not None, "triton mode needs a trace file"
        frequency = f"--trace-config=triton,log-frequency={tracing.log_frequency}"
        return [*flags, f"--trace-config=triton,file={tracing.file}", frequency]
    given = dict(tracing.resource)
    attributes = [(k, v) for k, v in resource_defaults if k not in given] + list(tracing.resource)
    flags.append(f"--trace-config=opentelemetry,url={tracing.url}")
    flags += [f"--trace-config=opentelemetry,resource={key}={value}" for key, value in attributes]
    return flags


def cache_flags(response_cache_bytes: int, cache_directory: Path | None = None) -> list[str]:
    """Triton's local response cache of `response_cache_bytes` (0: none); the serving copy enables it per ensemble."""
    if response_cache_bytes < 0:
        raise ValueError("the response cache size must be >= 0 bytes")
    if not response_cache_bytes:
        return []
    directory = [f"--cache-directory={cache_directory}"] if cache_directory else []
    return [*directory, f"--cache-config=local,size={response_cache_bytes}"]


def is_ready(http_url: str) -> bool:
    """One strict-readiness check of a server's HTTP endpoint (host:port): every model loaded and warm."""
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    queue_policies: bool = True  # False: unbounded queues, for benchmarks only (layout.sized_config)
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

    def command(self) -> list[str]:
        assert self._serving_dir is not None, "start() renders the serving copy first"
        return [
            str(server_binary()),
            f"--model-repository={self._serving_dir}",
            f"--backend-directory={backend_directory()}",
            f"--http-address={self.listen_address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.listen_address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.listen_address}",
            f"--metrics-port={self.metrics_port}",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            *restriction_flags(str(self.admin_key), self.restricted_groups),
            "--strict-readiness=true",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_secs}",
            *memory.frontend_flags(),
            *self._operation_flags(),
        ]

    def _operation_flags(self) -> list[str]:
        """Tracing and response-cache flags; none unless asked for."""
        flags = cache_flags(self.response_cache_bytes, cache_directory())
        if self.tracing is not None:
            tracing = self.tracing
            if tracing.mode == "triton" and tracing.file is None:
                tracing = replace(tracing, file=TRACES_DIR / f"{self.http_port}.json")
            if tracing.file is not None:
                tracing.file.parent.mkdir(parents=True, exist_ok=True)
            defaults = (("service.name", SERVICE_NAME), ("paddleclas.models", ",".join(self.served_models)))
            flags += trace_flags(tracing, defaults)
        return flags

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
        log = self.log_path.open("wb") if self.log_path else None
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT if log else None
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument(
        "--listen-address",
        default="127.0.0.1",
        help="address every listener binds (default 127.0.0.1; 0.0.0.0 or a LAN address EXPOSES the server "
        "to that network: see docs/security.md)",
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        help=f"file holding the key of the restricted APIs (default ${ADMIN_KEY_ENV}, else a random key per run "
        f"written to {ADMIN_KEYS_DIR.relative_to(PROJECT)}/<http-port>.key, mode 0600)",
    )
    parser.add_argument(
        "--malloc",
        choices=memory.MALLOCS,
        default=memory.DEFAULT_MALLOC,
        help=f"allocator preloaded into tritonserver and its steps (default {memory.DEFAULT_MALLOC}, as production; "
        'docs/reliability.md, "Memory")',
    )
    add_operation_arguments(parser)
    layout.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cores, resolved = layout.layout_from_arguments(args)
        tracing = tracing_from_arguments(args)
        cache_flags(args.response_cache_bytes)
        fast_decode_margin = layout.fast_decode_margin(args)
        resize_tier, pillow_simd_dir = layout.resize_tier(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        server = TritonServer(
            args.repository,
            args.http_port,
            args.grpc_port,
            args.metrics_port,
            models=args.models,
            cores=cores,
            layout=resolved,
            warmup=args.warmup,
            listen_address=args.listen_address,
            admin_key_file=args.admin_key_file,
            tracing=tracing,
            response_cache_bytes=args.response_cache_bytes,
            fast_decode=args.fast_decode,
            fast_decode_margin=fast_decode_margin,
            resize_tier=resize_tier,
            pillow_simd_dir=pillow_simd_dir,
            malloc=args.malloc,
        )
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    # A signal only forwards itself to tritonserver and notes the time; the main thread waits for the
    # exit, kills a server that outlives its exit timeout, and cleans up. (Waiting inside the handler
    # too would deadlock on the lock the main thread's wait holds.) A shell's background job starts
    # with SIGINT ignored, and supervisors stop with SIGTERM.
    signalled: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        signalled.append(time.monotonic())
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    try:
        server.start()
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert server.process is not None and server.serving is not None
    if signalled:  # stopped while the serving copy was being rendered: never serve
        server.stop()
        return 130
    addresses = f"HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}"
    print(
        f"serving {', '.join(server.served_models)} on {server.serving['cores']} cores: "
        f"{json.dumps(server.serving['layout'])}",
        flush=True,
    )
    print(f"tritonserver: {addresses} (Ctrl-C stops)", flush=True)
    if server.fast_decode:
        print(
            f"preprocessing: fast decode, margin {server.fast_decode_margin:g} (large JPEGs at a reduced DCT "
            "scale; not exact)",
            flush=True,
        )
    if server.resize_tier != "exact":
        print(f"preprocessing: {server.resize_tier} resize of Pillow-resized models (pillow-simd)", flush=True)
    if server.listen_address != "127.0.0.1":
        print(f"warning: listening on {server.listen_address}: the server is reachable from that network", flush=True)
    if server.generated_key_file is not None:
        where = f"a random key for this run in {server.generated_key_file} (mode 0600, removed at stop)"
    elif args.admin_key_file is not None:
        where = f"the key in {args.admin_key_file}"
    else:
        where = f"the key in ${ADMIN_KEY_ENV}"
    print(
        f"restricted APIs ({', '.join(server.restricted_groups)}): send {where} as header "
        f"'{header_name('http')}' (HTTP) or '{header_name('grpc')}' (gRPC)",
        flush=True,
    )
    for line in operation_summary(server):
        print(line, flush=True)
    try:
        return wait_for_exit(server.process, signalled, server.exit_timeout_secs + 5, StepWatch(server))
    finally:
        server.stop()


def add_operation_arguments(parser: argparse.ArgumentParser) -> None:
    """Tracing and response-cache flags of the launcher (docs/operations.md); all off by default."""
    group = parser.add_argument_group("tracing and response cache (off by default; docs/operations.md)")
    group.add_argument(
        "--trace-mode",
        choices=TRACE_MODES,
        help="trace requests: opentelemetry exports spans over OTLP/HTTP to --trace-url; triton writes a JSON file",
    )
    group.add_argument("--trace-rate", type=int, default=1000, metavar="N", help="trace every N-th request (1: all)")
    group.add_argument("--trace-count", type=int, default=-1, metavar="N", help="stop after N traces (-1: never)")
    group.add_argument(
        "--trace-file",
        type=Path,
        help=f"triton mode: trace file (default {TRACES_DIR.relative_to(PROJECT)}/<http-port>.json, written at stop)",
    )
    group.add_argument(
        "--trace-log-frequency", type=int, default=0, metavar="N", help="triton mode: write every N traces"
    )
    group.add_argument("--trace-url", default=DEFAULT_OTLP_URL, help="opentelemetry mode: OTLP/HTTP traces endpoint")
    group.add_argument(
        "--trace-resource",
        action="append",
        metavar="KEY=VALUE",
        help=f"opentelemetry mode: a resource attribute, repeatable (defaults: service.name={SERVICE_NAME}, "
        "paddleclas.models=<served ensembles>)",
    )
    group.add_argument(
        "--response-cache-bytes",
        type=int,
        default=0,
        metavar="N",
        help="cache answers of the public ensembles in a local cache of N bytes (default 0: no cache)",
    )


def operation_summary(server: TritonServer) -> list[str]:
    """What the launcher prints about tracing and the cache, so an operator sees they are on."""
    lines = []
    if server.tracing is not None:
        where = server.tracing.url if server.tracing.mode == "opentelemetry" else "the trace file"
        lines.append(f"tracing: {server.tracing.mode}, every {server.tracing.rate}. request, to {where}")
    if server.response_cache_bytes:
        lines.append(f"response cache: {server.response_cache_bytes} bytes on {', '.join(server.served_models)}")
    return lines


def tracing_from_arguments(args: argparse.Namespace) -> Tracing | None:
    if args.trace_mode is None:
        return None
    return Tracing(
        mode=args.trace_mode,
        rate=args.trace_rate,
        count=args.trace_count,
        file=args.trace_file,
        log_frequency=args.trace_log_frequency,
        url=args.trace_url,
        resource=parse_resource(args.trace_resource),
    )


STEP_DIED_EXIT = 3  # the launcher's exit code when it stopped the server because a Python step died


class StepWatch:
    """Notices a Python step process that died: Triton 2.51 neither restarts it nor reports unready.

    After the server first reports ready, its stub processes are counted once; fewer later means a
    step is gone and every request it serves fails, so the launcher stops the server loudly and a
    supervisor (or the person at the terminal) starts it again.
    """

    def __init__(self, server: TritonServer) -> None:
        self.server = server
        self.expected: int | None = None

    def problem(self) -> str | None:
        assert self.server.process is not None
        if self.expected is None:
            if is_ready(self.server.http_url):
                self.expected = len(procfs.python_stubs(self.server.process.pid))
            return None
        alive = len(procfs.python_stubs(self.server.process.pid))
        if alive >= self.expected:
            return None
        return (
            f"{self.expected - alive} of {self.expected} Python step processes died; tritonserver 2.51 does not "
            "restart them and keeps reporting ready, so the server is stopped (start it again)"
        )


def wait_for_exit(process: subprocess.Popen, signalled: list[float], grace_s: float, watch: StepWatch) -> int:
    """The server's exit code; a server still running `grace_s` after the first signal is killed.

    Until a signal arrives, `watch` looks for dead Python steps once a second; finding one stops the
    server and the exit code is STEP_DIED_EXIT.
    """
    died = False
    while True:
        try:
            code = process.wait(timeout=1)
            return STEP_DIED_EXIT if died else code
        except subprocess.TimeoutExpired:
            if signalled:
                if time.monotonic() - signalled[0] > grace_s:
                    process.kill()
                continue
            problem = watch.problem()
            if problem:
                print(f"error: {problem}", file=sys.stderr, flush=True)
                died = True
                signalled.append(time.monotonic())
                process.send_signal(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
