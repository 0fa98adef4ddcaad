"""Secure by default (docs/security.md), checked on the real tritonserver 2.51.0.

The session server (`triton_server`, started by the project's launcher) restricts the
shared-memory, model-repository, statistics, trace and logging APIs behind one admin key on HTTP
and gRPC: each is refused without the key, with a message naming the header, and works with it.
Health, metadata, model-config and inference stay open. The listeners bind 127.0.0.1 only, a
malformed restriction stops the server, the per-run key lives in a 0600 file and is never
printed, and an oversized image is refused with a clear error while the server stays up.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from model_repository import admin
from model_repository.admin import RESTRICTED_GROUPS, header_name
from model_repository.serve import serve_command
from model_repository.server import Ports, ServerError, TritonServer
from perf import analyzer
from preprocess import DEFAULT_MAX_IMAGE_BYTES, ImageDecodeError, decode
from tests.support import images

PROJECT = Path(__file__).resolve().parents[2]
MODEL = "nextvit_small_224"
PHOTO = images.jpeg(images.photo("rocket.jpg"))
KEY = "k" * 24


# Each restricted group, as the tritonclient call that reaches it (HTTP and gRPC have the same names).
RESTRICTED_CALLS: dict[str, Callable] = {
    "shared-memory": lambda c, h: c.get_system_shared_memory_status(headers=h),
    "model-repository": lambda c, h: c.get_model_repository_index(headers=h),
    "statistics": lambda c, h: c.get_inference_statistics(MODEL, headers=h),
    "trace": lambda c, h: c.get_trace_settings(headers=h),
    "logging": lambda c, h: c.get_log_settings(headers=h),
}


def clients(server: TritonServer, protocol: str):
    return (grpcclient if protocol == "grpc" else httpclient).InferenceServerClient(
        server.grpc_url if protocol == "grpc" else server.http_url
    )


def image_inputs(module, *datas: bytes) -> list:
    tensor = module.InferInput("IMAGE", [len(datas), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(datas, dtype=np.object_).reshape(len(datas), 1))
    return [tensor]


# --- the launcher's command line (no server) ---------------------------------------------------


def command_of(**kwargs) -> list[str]:
    server = TritonServer(Path("unused"), **kwargs)
    server._serving_dir = Path("unused")  # start() sets it once it has rendered the serving copy
    return server.command()


def test_command_binds_loopback_disables_cloud_endpoints_and_restricts_with_the_colon_form() -> None:
    cmd = command_of(admin_key=KEY)
    for listener in ("http", "grpc", "metrics"):
        assert f"--{listener}-address=127.0.0.1" in cmd
    assert "--allow-sagemaker=false" in cmd and "--allow-vertex-ai=false" in cmd
    spec = f"shared-memory,model-repository,statistics,trace,logging:admin-key={KEY}"
    assert f"--grpc-restricted-protocol={spec}" in cmd and f"--http-restricted-api={spec}" in cmd
    for flag in ("--strict-readiness=true", "--model-control-mode=none", "--disable-auto-complete-config"):
        assert flag in cmd
    assert "--http-address=0.0.0.0" in command_of(admin_key=KEY, listen_address="0.0.0.0")


def test_header_names_and_key_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert header_name("http") == "admin-key" and header_name("grpc") == "triton-grpc-protocol-admin-key"
    monkeypatch.setenv(admin.ADMIN_KEY_ENV, KEY)
    server = TritonServer(Path("unused"))
    assert server.admin_key == KEY and server.admin_headers("grpc") == {"triton-grpc-protocol-admin-key": KEY}
    assert KEY not in repr(server)
    key_file = tmp_path / "key"
    key_file.write_text("f" * 32 + "\n")
    assert TritonServer(Path("unused"), admin_key_file=key_file).admin_key == "f" * 32
    monkeypatch.delenv(admin.ADMIN_KEY_ENV)
    random = TritonServer(Path("unused")).admin_key
    assert random and random != TritonServer(Path("unused")).admin_key  # random unless given
    for bad in ("short", "has,comma-and-long-enough", "a:b=c-long-enough-key"):
        with pytest.raises(ServerError, match="admin key"):
            TritonServer(Path("unused"), admin_key=bad)


def test_perf_analyzer_gets_the_header_and_logs_redact_it() -> None:
    target = analyzer.Target("127.0.0.1:1", "http://127.0.0.1:2/metrics", admin_key=KEY)
    cmd = analyzer.command(target, MODEL, 1, Path("in.json"), Path("out.csv"))
    assert cmd[cmd.index("-H") + 1] == f"triton-grpc-protocol-admin-key:{KEY}"
    assert KEY not in analyzer.printable(cmd) and KEY not in repr(target)
    assert target.admin_headers() == {"triton-grpc-protocol-admin-key": KEY}


def test_perf_analyzer_never_registers_client_shared_memory() -> None:
    """A production server (26.05+) refuses client shared memory unless --allow-client-shm (chart: off)."""
    from perf.analyze import PERF_ANALYZER_FLAGS

    cmd = analyzer.command(analyzer.Target("127.0.0.1:1", "http://127.0.0.1:2/metrics"), MODEL, 1, Path("i"), Path("o"))
    assert cmd[cmd.index("--shared-memory") + 1] == "none" == PERF_ANALYZER_FLAGS["shared-memory"]


def test_oversized_image_is_refused_before_sniffing() -> None:
    with pytest.raises(ImageDecodeError, match=f"over the limit of {DEFAULT_MAX_IMAGE_BYTES:,} bytes"):
        decode(PHOTO + bytes(DEFAULT_MAX_IMAGE_BYTES))
    assert decode(PHOTO).shape[2] == 3


# --- the real server ---------------------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("group", sorted(RESTRICTED_CALLS))
def test_restricted_group_needs_the_key(triton_server: TritonServer, protocol: str, group: str) -> None:
    call = RESTRICTED_CALLS[group]
    client = clients(triton_server, protocol)
    with pytest.raises(InferenceServerException) as refused:
        call(client, None)
    assert f"expecting header '{header_name(protocol)}'" in str(refused.value)
    wrong = {header_name(protocol): "w" * 24}
    with pytest.raises(InferenceServerException, match="restricted"):
        call(client, wrong)
    call(client, triton_server.admin_headers(protocol))  # the right key opens it


@pytest.mark.server
def test_restricted_writes_are_refused_without_the_key(triton_server: TritonServer) -> None:
    """The advisories' first steps: switching error logging off, registering a shared-memory region."""
    http = clients(triton_server, "http")
    with pytest.raises(InferenceServerException, match="expecting header 'admin-key'"):
        http.update_log_settings({"log_error": False})
    with pytest.raises(InferenceServerException, match="expecting header 'admin-key'"):
        http.register_system_shared_memory("probe", "/triton_python_backend_shm_region_1", 1024)
    grpc = clients(triton_server, "grpc")
    with pytest.raises(InferenceServerException, match="triton-grpc-protocol-admin-key"):
        grpc.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
    assert http.get_log_settings(headers=triton_server.admin_headers("http"))["log_error"] is True


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_health_metadata_config_and_inference_stay_open(triton_server: TritonServer, protocol: str) -> None:
    client = clients(triton_server, protocol)
    module = grpcclient if protocol == "grpc" else httpclient
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_server_metadata()
    assert client.get_model_metadata(MODEL)
    assert client.get_model_config(MODEL)
    result = client.infer(MODEL, image_inputs(module, PHOTO))
    assert result.as_numpy("CLASS_IDS").shape == (1, 5)


def listening(ports: set[int]) -> dict[int, set[str]]:
    """Local addresses of the listening TCP sockets on `ports`, from /proc/net/tcp{,6}."""
    bound: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port, 16) in ports:  # 0A: LISTEN
                bound.setdefault(int(port, 16), set()).add(address)
    return bound


@pytest.mark.server
def test_listeners_bind_loopback_only(triton_server: TritonServer) -> None:
    ports = {triton_server.http_port, triton_server.grpc_port, triton_server.metrics_port}
    cmdline = Path(f"/proc/{triton_server.process.pid}/cmdline").read_bytes().split(b"\0")
    assert {b"--http-address=127.0.0.1", b"--grpc-address=127.0.0.1", b"--metrics-address=127.0.0.1"} <= set(cmdline)
    bound = listening(ports)
    assert set(bound) == ports
    # 127.0.0.1 in /proc's little-endian hex, on tcp (HTTP, metrics) or IPv4-mapped on tcp6 (gRPC)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    assert all(addresses <= loopback for addresses in bound.values()), bound


@pytest.mark.server
def test_per_run_key_file_is_private_and_the_key_is_not_logged(triton_server: TritonServer) -> None:
    key_file = triton_server.generated_key_file
    assert key_file is not None and key_file.parent == admin.ADMIN_KEYS_DIR
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == triton_server.admin_key
    assert triton_server.admin_key not in triton_server.log_path.read_text(errors="replace")


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_oversized_image_is_refused_and_the_server_stays_up(triton_server: TritonServer, protocol: str) -> None:
    client = clients(triton_server, protocol)
    module = grpcclient if protocol == "grpc" else httpclient
    oversized = PHOTO + bytes(DEFAULT_MAX_IMAGE_BYTES)  # a valid JPEG start, more padding than the limit
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, image_inputs(module, PHOTO, oversized))
    message = str(refused.value)
    assert f"over the limit of {DEFAULT_MAX_IMAGE_BYTES:,} bytes" in message
    assert "shm_region" not in message and "shared memory" not in message
    assert client.is_server_ready()
    assert client.infer(MODEL, image_inputs(module, PHOTO)).as_numpy("CLASS_IDS").shape == (1, 5)


@pytest.mark.server
def test_malformed_restriction_stops_the_server(exported_repository: Path, tmp_path: Path) -> None:
    log = tmp_path / "triton.log"
    server = TritonServer.on_free_ports(
        exported_repository,
        log,
        models=["NextViT_small_224"],
        warmup=False,
        restricted_groups=(*RESTRICTED_GROUPS, "bogus"),
    )
    with pytest.raises(ServerError, match="exited with code 1") as stopped, server:
        pass
    assert "unknown restricted protocol 'bogus'" in str(stopped.value)
    assert server.generated_key_file is None  # the run's key file went with it


@pytest.mark.server
def test_make_serve_prints_where_the_key_is_never_the_key(exported_repository: Path) -> None:
    """`python -m model_repository serve`, as `make serve` runs it: the key file path, not the key."""
    ports = Ports.free()
    cmd = serve_command(exported_repository, ports, "--models", "NextViT_small_224", "--no-warmup", "--cores", "1")
    env = {k: v for k, v in os.environ.items() if k != admin.ADMIN_KEY_ENV}
    process = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    key_file = admin.ADMIN_KEYS_DIR / f"{ports.http}.key"
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("restricted APIs"):
                break
        printed = "".join(lines)
        assert str(key_file) in printed and "'triton-grpc-protocol-admin-key' (gRPC)" in printed, printed
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key not in printed
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert key not in out + err
    assert not key_file.exists(), "the per-run key outlived its run"
