"""tritonserver's command line, defined once: a pure function from `ServerSettings` to its arguments.

The launcher (model_repository/server.py) runs what `server_arguments` returns; the Helm chart writes
the same arguments with Helm templating, and tests/chart/test_chart_server_flags.py renders every
chart case and compares the container's arguments with `server_arguments` for the same values, so
the two cannot drift. The pod's grace period, which follows from the exit timeout, is here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from model_repository import memory
from model_repository.admin import ADMIN_HEADER, RESTRICTED_GROUPS

TRACE_MODES = ("triton", "opentelemetry")
# Triton 2.51 exports OTLP over HTTP only (JSON body), to this path of a collector's OTLP/HTTP port.
DEFAULT_OTLP_URL = "http://127.0.0.1:4318/v1/traces"
SERVICE_NAME = "paddleclas-triton"  # the resource's service.name unless --trace-resource says otherwise
# What the pod waits beyond the preStop sleep and tritonserver's own exit timeout before SIGKILL.
GRACE_SPARE_SECONDS = 10

# Request size: tritonserver 2.51 has no server-side bound (no --http-max-input-size, which later
# releases added; its gRPC server accepts messages up to 2 GB, with no flag), and its Python backend
# has no ceiling for its shared-memory pool (only shm-default-byte-size and shm-growth-byte-size:
# the pool grows until /dev/shm is full, and that error names the pool's region). What bounds a
# request here: the preprocess step refuses a request over DEFAULT_MAX_REQUEST_BYTES or
# DEFAULT_MAX_REQUEST_PIXELS before any decode (preprocess/decoding.py); what the frontend holds
# meanwhile is requests in flight x their size, which a gateway bounds (model_repository/memory.py).


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


def cache_flags(response_cache_bytes: int, cache_directory: Path | str | None = None) -> list[str]:
    """Triton's local response cache of `response_cache_bytes` (0: none); the serving copy enables it per ensemble."""
    if response_cache_bytes < 0:
        raise ValueError("the response cache size must be >= 0 bytes")
    if not response_cache_bytes:
        return []
    directory = [f"--cache-directory={cache_directory}"] if cache_directory else []
    return [*directory, f"--cache-config=local,size={response_cache_bytes}"]


def restriction_flags(key: str, groups: tuple[str, ...] = RESTRICTED_GROUPS, http: bool = True) -> list[str]:
    """The restriction flags in the one form 2.51.0 accepts: `<group>,<group>:<header>=<key>` (gRPC, then HTTP)."""
    spec = f"{','.join(groups)}:{ADMIN_HEADER}={key}"
    return [f"--grpc-restricted-protocol={spec}", *([f"--http-restricted-api={spec}"] if http else [])]


def _on(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class ServerSettings:
    """What decides tritonserver's arguments, for the local launcher and the chart alike.

    None leaves a flag out: `listen_address` (the launcher binds loopback; a pod binds Triton's
    default, every interface), `backend_directory` (the wheel's, assembled locally; the image's
    default in a pod), and the two flags only the production release (2.73) parses.
    """

    model_repository: str
    admin_key: str  # the key, or the chart's $(TRITON_ADMIN_KEY), which the kubelet expands
    binary: str = "tritonserver"
    backend_directory: str | None = None
    exit_timeout_secs: int = 10
    http: bool = True  # False: gRPC only, no HTTP listener at all
    listen_address: str | None = None
    # HTTP and gRPC alone on another address: the chart's gateway keeps them on loopback behind nginx
    # (model_repository/gateway.py) while metrics stay on the pod's address for the scrapers.
    inference_address: str | None = None
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    restricted_groups: tuple[str, ...] = RESTRICTED_GROUPS
    http_max_input_size: int | None = None  # 2.73 only (2.51 exits on it)
    allow_client_shm: bool | None = None  # 2.73 only; false is its default from 26.05, said explicitly
    gpu: bool = False  # GPU metrics, and the pinned pool below
    log_verbose: int = 0
    pinned_memory_pool_bytes: int | None = None  # gpu only
    tracing: Tracing | None = None  # None: no tracing
    resource_defaults: tuple[tuple[str, str], ...] = ()  # trace resource attributes `tracing` may override
    response_cache_bytes: int = 0  # 0: no response cache
    cache_directory: str | None = None  # the wheel's cache implementations; the image has them at the default
    extra: tuple[str, ...] = ()  # appended last (the chart's server.extraArgs)


def server_arguments(settings: ServerSettings) -> list[str]:
    """tritonserver's full command line, binary first, in the chart's order (the chart test compares it)."""
    s = settings

    def address(listener: str) -> list[str]:
        bound = s.listen_address if listener == "metrics" else (s.inference_address or s.listen_address)
        return [f"--{listener}-address={bound}"] if bound else []

    http = [*address("http"), f"--http-port={s.http_port}"] if s.http else []
    client_shm = [] if s.allow_client_shm is None else [f"--allow-client-shm={_on(s.allow_client_shm)}"]
    pinned = [f"--pinned-memory-pool-byte-size={s.pinned_memory_pool_bytes}"] if s.pinned_memory_pool_bytes else []
    tracing = trace_flags(s.tracing, s.resource_defaults) if s.tracing is not None else []
    return [
        s.binary,
        f"--model-repository={s.model_repository}",
        *([f"--backend-directory={s.backend_directory}"] if s.backend_directory else []),
        "--model-control-mode=none",  # models fixed at start: dynamic loading would let callers run code
        "--strict-readiness=true",  # ready only when every model is
        "--disable-auto-complete-config",  # the rendered configs are complete
        f"--exit-timeout-secs={s.exit_timeout_secs}",
        f"--allow-http={_on(s.http)}",
        *http,
        "--allow-grpc=true",
        *address("grpc"),
        f"--grpc-port={s.grpc_port}",
        *memory.frontend_flags(),
        *([f"--http-max-input-size={s.http_max_input_size}"] if s.http_max_input_size is not None else []),
        "--allow-sagemaker=false",  # alternate endpoints that bypassed the restrictions (docs/security.md)
        "--allow-vertex-ai=false",
        *restriction_flags(s.admin_key, s.restricted_groups, s.http),
        *client_shm,
        *address("metrics"),
        f"--metrics-port={s.metrics_port}",
        "--allow-metrics=true",
        "--allow-cpu-metrics=true",
        f"--allow-gpu-metrics={_on(s.gpu)}",
        f"--log-verbose={s.log_verbose}",
        *(pinned if s.gpu else []),
        *tracing,
        *cache_flags(s.response_cache_bytes, s.cache_directory),
        *s.extra,
    ]


def termination_grace_seconds(pre_stop_sleep_seconds: int, exit_timeout_seconds: int) -> int:
    """The pod's terminationGracePeriodSeconds: the preStop sleep, tritonserver's exit timeout, then a spare."""
    return pre_stop_sleep_seconds + exit_timeout_seconds + GRACE_SPARE_SECONDS
