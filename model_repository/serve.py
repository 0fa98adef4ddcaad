"""`python -m model_repository serve`: what `make serve` runs, a TritonServer in the foreground until a signal.

python -m model_repository serve [--repository DIR] [--models NAME ...] [--cores auto|N]
    [--preprocess-instances N ...] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
    [--listen-address 127.0.0.1] [--admin-key-file FILE]
    [--trace-mode triton|opentelemetry [--trace-rate N] [--trace-url URL] [--trace-resource KEY=VALUE ...]]
    [--response-cache-bytes N] [--fast-decode [--fast-decode-margin M]] [--malloc tcmalloc|jemalloc|system]
    [--resize-tier exact|near-exact [--pillow-simd-dir DIR]]

The command adds what a person at a terminal or a supervisor needs around model_repository/server.py:
it prints where the server listens and where its admin key is (never the key), forwards SIGINT and
SIGTERM to tritonserver, and stops the server loudly when a Python step dies (model_repository/health.py
StepWatch), since 2.51 would keep serving errors behind a green health check.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from model_repository import layout, memory
from model_repository.admin import ADMIN_KEY_ENV, ADMIN_KEYS_DIR, header_name
from model_repository.flags import DEFAULT_OTLP_URL, SERVICE_NAME, TRACE_MODES, Tracing, cache_flags, parse_resource
from model_repository.health import StepWatch
from model_repository.paths import DEFAULT_REPOSITORY, PROJECT
from model_repository.server import TRACES_DIR, Ports, TritonServer
from model_repository.wheel import ServerError

STEP_DIED_EXIT = 3  # the exit code when the server was stopped because a Python step died


def serve_command(repository: Path, ports: Ports, *options: str) -> list[str]:
    """This command on `ports`, as the drills and the shutdown tests run it in a subprocess (from the project root)."""
    listeners = ["--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
    return [sys.executable, "-m", "model_repository", "serve", "--repository", str(repository), *listeners, *options]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_repository serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
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
    return parser


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


def server_from_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TritonServer:
    """The server the flags ask for; a bad value stops with the parser's usage message, before anything starts."""
    try:
        cores, resolved = layout.layout_from_arguments(args)
        tracing = tracing_from_arguments(args)
        cache_flags(args.response_cache_bytes)
        fast_decode_margin = layout.fast_decode_margin(args)
        resize_tier, pillow_simd_dir = layout.resize_tier(args)
    except ValueError as err:
        parser.error(str(err))
    return TritonServer(
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


def summary(server: TritonServer, admin_key_file: Path | None) -> list[str]:
    """What the command prints once the server runs: what it serves, where, and where its admin key is."""
    assert server.serving is not None
    addresses = f"HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}"
    lines = [
        f"serving {', '.join(server.served_models)} on {server.serving['cores']} cores: "
        f"{json.dumps(server.serving['layout'])}",
        f"tritonserver: {addresses} (Ctrl-C stops)",
    ]
    if server.fast_decode:
        lines.append(
            f"preprocessing: fast decode, margin {server.fast_decode_margin:g} (large JPEGs at a reduced DCT "
            "scale; not exact)"
        )
    if server.resize_tier != "exact":
        lines.append(f"preprocessing: {server.resize_tier} resize of Pillow-resized models (pillow-simd)")
    if server.listen_address != "127.0.0.1":
        lines.append(f"warning: listening on {server.listen_address}: the server is reachable from that network")
    if server.generated_key_file is not None:
        where = f"a random key for this run in {server.generated_key_file} (mode 0600, removed at stop)"
    elif admin_key_file is not None:
        where = f"the key in {admin_key_file}"
    else:
        where = f"the key in ${ADMIN_KEY_ENV}"
    lines.append(
        f"restricted APIs ({', '.join(server.restricted_groups)}): send {where} as header "
        f"'{header_name('http')}' (HTTP) or '{header_name('grpc')}' (gRPC)"
    )
    return lines + operation_summary(server)


def operation_summary(server: TritonServer) -> list[str]:
    """What the launcher prints about tracing and the cache, so an operator sees they are on."""
    lines = []
    if server.tracing is not None:
        where = server.tracing.url if server.tracing.mode == "opentelemetry" else "the trace file"
        lines.append(f"tracing: {server.tracing.mode}, every {server.tracing.rate}. request, to {where}")
    if server.response_cache_bytes:
        lines.append(f"response cache: {server.response_cache_bytes} bytes on {', '.join(server.served_models)}")
    return lines


def forward_signals(server: TritonServer) -> list[float]:
    """SIGINT and SIGTERM forwarded to tritonserver; the returned list collects when each arrived.

    The handler only forwards and notes the time; the main thread waits for the exit, kills a server
    that outlives its exit timeout, and cleans up (waiting inside the handler too would deadlock on
    the lock the main thread's wait holds). A shell's background job starts with SIGINT ignored, and
    supervisors stop with SIGTERM, hence both.
    """
    signalled: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        signalled.append(time.monotonic())
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    return signalled


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


def main(argv: list[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    try:
        server = server_from_arguments(args, command)
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    signalled = forward_signals(server)
    try:
        server.start()
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert server.process is not None
    if signalled:  # stopped while the serving copy was being rendered: never serve
        server.stop()
        return 130
    for line in summary(server, args.admin_key_file):
        print(line, flush=True)
    watch = StepWatch(server.process.pid, server.http_url)
    try:
        return wait_for_exit(server.process, signalled, server.exit_timeout_secs + 5, watch)
    finally:
        server.stop()
