"""Tracing and the response cache in the chart: the flags it renders, the values it refuses, and the real binary.

The chart writes the same --trace-config / --cache-config flags as the launcher
(model_repository/flags.py trace_flags and cache_flags; test_chart_server_flags.py compares every
argument), which tests/server/test_tracing.py and tests/server/test_response_cache.py prove against a
running server; here the rendered flags are checked for other values and started on the real tritonserver 2.51.0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from chart_helpers import one, render, render_case, render_files, server_container

from model_repository.flags import Tracing, trace_flags
from model_repository.server import free_port
from model_repository.wheel import cache_directory, server_binary

CASE = "14-operations-values.yaml"
ADMIN_KEY = "test-admin-key-0123456789"
OPERATION_PREFIXES = ("--trace-config", "--cache-config", "--cache-directory")


def operation_args(objects: list[dict[str, Any]]) -> list[str]:
    return [a for a in server_container(objects)["args"] if a.startswith(OPERATION_PREFIXES)]


def render_args(objects: list[dict[str, Any]]) -> list[str]:
    deployment = one(objects, "Deployment")
    init = next(c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "render-repository")
    return init["args"]


def test_off_by_default() -> None:
    objects = render()
    assert operation_args(objects) == []
    assert "--response-cache" not in render_args(objects)


def test_the_cache_case_renders_the_ensembles_with_the_cache() -> None:
    """Its flags are the launcher's (test_chart_server_flags.py); response_cache is set in the serving copy."""
    assert "--response-cache" in render_args(render_case(CASE))


def test_triton_mode_writes_trace_files_in_the_pods_tmp() -> None:
    values = {"mode": "cpu", "tracing": {"mode": "triton", "rate": 100, "count": 50, "logFrequency": 10}}
    expected = Tracing(mode="triton", rate=100, count=50, file=Path("/tmp/trace.json"), log_frequency=10)
    assert operation_args(render(values)) == trace_flags(expected)


def test_resource_attributes_given_win_over_the_charts() -> None:
    values = {"tracing": {"mode": "opentelemetry", "rate": 1, "count": -1, "resource": {"service.name": "vision"}}}
    names = [a for a in operation_args(render(values)) if "service.name=" in a]
    assert names == ["--trace-config=opentelemetry,resource=service.name=vision"]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"tracing": {"mode": "zipkin"}}, "/tracing/mode"),
        ({"tracing": {"mode": "opentelemetry", "rate": -1}}, "/tracing/rate"),
        ({"tracing": {"mode": "opentelemetry", "otlpUrl": "collector:4317"}}, "/tracing/otlpUrl"),
        ({"tracing": {"resource": {"bad key": "x"}}}, "'bad key' does not match pattern"),
        ({"responseCache": {"enabled": True, "sizeMiB": 0}}, "/responseCache/sizeMiB"),
        ({"responseCache": {"size": 1}}, "'size' not allowed"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render_files(values)
    assert fragment in str(caught.value), str(caught.value)


def test_the_cache_needs_a_rendered_repository() -> None:
    values = {
        "responseCache": {"enabled": True, "sizeMiB": 16},
        "models": [],
        "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://bucket/models"}},
    }
    with pytest.raises(helm.HelmRenderError, match=r"responseCache\.enabled needs a mounted repository"):
        render_files(values)


@pytest.mark.server
def test_the_real_server_starts_with_the_charts_operation_flags(tmp_path: Path) -> None:
    """tritonserver 2.51 accepts the rendered trace and cache flags (an unknown or malformed one stops it),
    reports the trace settings through the (restricted) trace API and loads its local cache."""
    flags = operation_args(render_case(CASE))
    empty = tmp_path / "models"
    empty.mkdir()
    http = free_port()
    command = [
        str(server_binary()),
        f"--model-repository={empty}",
        f"--http-port={http}",
        f"--grpc-port={free_port()}",
        f"--metrics-port={free_port()}",
        f"--http-restricted-api=trace:admin-key={ADMIN_KEY}",
        f"--cache-directory={cache_directory()}",  # the NGC image has it at the default /opt/tritonserver/caches
        *flags,
    ]
    log = tmp_path / "tritonserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        settings = None
        deadline = time.monotonic() + 60
        while settings is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            request = urllib.request.Request(
                f"http://127.0.0.1:{http}/v2/trace/setting", headers={"admin-key": ADMIN_KEY}
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    settings = json.load(response)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert settings is not None, log.read_text(errors="replace")[-2000:]
        assert settings["trace_mode"] == "opentelemetry" and settings["trace_rate"] == "1"
        assert settings["trace_level"] == ["TIMESTAMPS"]
        text = log.read_text(errors="replace")
        assert "Creating TritonCache with name: 'local'" in text and '\\"size\\":\\"33554432\\"' in text, text[-2000:]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
