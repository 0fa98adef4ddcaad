"""The chart against the real tritonserver 2.51.0: flags, metric names, and the helm test's command.

These need the server binary (and, through the ``triton_server`` fixture, an exported repository),
so they carry the ``server`` marker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from chart_helpers import (
    CHART_DIR,
    HELM_DIR,
    NEWER_RELEASE_ONLY,
    image_code_tree,
    one,
    release_flags,
    render_case,
    server_container,
)

import catalog
from model_repository.server import free_port
from model_repository.wheel import server_binary
from tests.support.deployment import SERVED_MODELS

DASHBOARD = CHART_DIR / "files" / "grafana-dashboard.json"
ADAPTER_VALUES = HELM_DIR / "monitoring" / "prometheus-adapter-values.yaml"
# Ensembles taking encoded images that the session server serves: what the smoke test finds on its own.
SMOKED = [catalog.get(name).triton_name for name in SERVED_MODELS]
# Reported only where NVML sees a GPU; this machine has none.
GPU_ONLY = {"nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"}
PROMQL_FUNCTIONS = {"sum", "max", "rate", "clamp_min", "avg_over_time", "label_values"}
PROMQL_KEYWORDS = r"\bbool\b"  # the comparison modifier, not a metric name


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, ranges, groupings and strings removed).

    Every other identifier must be a known function, so a misread expression fails loudly.
    """
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = re.sub(PROMQL_KEYWORDS, "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.group(1), match.group(2)
        if call:
            assert name in PROMQL_FUNCTIONS, f"unknown function {name} in {expr}"
        else:
            names.add(name)
    return names


def dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    names = set().union(*(promql_metrics(e) for e in exprs))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            names.add(re.match(r"label_values\((\w+)", query["query"]).group(1))
    return names


def adapter_metrics() -> set[str]:
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
    names: set[str] = set()
    for rule in adapter["rules"]["custom"]:
        names |= promql_metrics(rule["seriesQuery"]) | promql_metrics(rule["metricsQuery"])
    return names


def exposed_metrics(metrics_url: str) -> set[str]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def classify_once(server: Any) -> None:
    """One real request so the per-model inference counters exist."""
    import tritonclient.http as httpclient

    ok, png = cv2.imencode(".png", np.full((40, 60, 3), 127, dtype=np.uint8))
    assert ok
    client = httpclient.InferenceServerClient(url=server.http_url)
    model = server.served_models[0]
    batched = client.get_model_config(model).get("max_batch_size", 0) > 0
    shape = [1, 1] if batched else [1]
    tensor = httpclient.InferInput("IMAGE", shape, "BYTES")
    tensor.set_data_from_numpy(np.array([png.tobytes()], dtype=np.object_).reshape(shape))
    client.infer(model, [tensor])


def test_promql_reader_finds_names() -> None:
    expr = (
        'sum by (pod) (rate(a_total{x="y"}[1m])) / clamp_min(sum by (<<.GroupBy>>) '
        "(rate(b_us{<<.LabelMatchers>>}[$__rate_interval])), 1e-9) / 1000 * (max(c) > bool 0)"
    )
    assert promql_metrics(expr) == {"a_total", "b_us", "c"}
    assert {"nv_inference_queue_duration_us", "nv_gpu_utilization"} <= dashboard_metrics()
    assert adapter_metrics() == {
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_failure",
        "nv_inference_request_success",
        "nv_inference_pending_request_count",
    }


@pytest.mark.server
def test_every_dashboard_and_adapter_metric_is_exposed(triton_server: Any) -> None:
    classify_once(triton_server)
    exposed = exposed_metrics(triton_server.metrics_url)
    wanted = dashboard_metrics() | adapter_metrics()
    print(f"{len(wanted)} metric names used, {len(exposed)} exposed by the server")
    assert wanted >= GPU_ONLY, "stale exception list: drop names no longer used"
    assert not GPU_ONLY & exposed, "a GPU metric appeared: remove it from the exceptions"
    assert sorted(wanted - GPU_ONLY - exposed) == []


@pytest.mark.server
def test_helm_test_pod_command_passes_against_the_real_server(triton_server: Any, tmp_path: Path) -> None:
    """The rendered helm test command, run with the code the server image carries and the env the pod sets."""
    (container,) = one(render_case("01-default-gpu-values.yaml"), "Pod")["spec"]["containers"]
    url = next(a for a in container["args"] if a.startswith("--url=")).removeprefix("--url=")
    command = [
        sys.executable if word == "python3" else word.replace(url, triton_server.grpc_url)
        for word in container["command"] + container["args"]
    ]
    command.append("--ready-timeout=30")
    code = image_code_tree(tmp_path / "opt-paddleclas")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {e["name"]: e["value"].replace("/opt/paddleclas", str(code)) for e in container["env"]}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    for model in triton_server.served_models:
        assert (f"ok {model}:" in result.stdout) == (model in SMOKED), model
    # And it can fail: a top-k the server does not return is reported.
    wrong = subprocess.run(
        [*command, "--top-k=3", f"--model={SMOKED[0]}"], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )
    assert wrong.returncode == 1 and "expected 3 of each" in wrong.stdout


ADMIN_KEY = "test-admin-key-0123456789"


@pytest.mark.server
@pytest.mark.parametrize("case", ["01-default-gpu-values.yaml", "02-cpu-dev-values.yaml", "12-grpc-only-values.yaml"])
def test_rendered_flags_start_the_real_server(case: str, tmp_path: Path) -> None:
    """tritonserver accepts every flag the chart passes (an unknown flag stops it at once), with the
    admin key expanded as the kubelet expands $(TRITON_ADMIN_KEY); the restricted repository index
    is refused without the key and listed with it; a gRPC-only server answers the gRPC health check."""
    import grpc as grpc_lib
    import tritonclient.grpc as grpcclient

    args = [a.replace("$(TRITON_ADMIN_KEY)", ADMIN_KEY) for a in server_container(render_case(case))["args"]]
    newer = [a for a in args if a.partition("=")[0] in NEWER_RELEASE_ONLY]
    assert {a.partition("=")[0].removeprefix("--") for a in newer} <= release_flags()
    assert not any(flag in server_help() for flag in NEWER_RELEASE_ONLY)  # else it belongs under test here
    args = [a for a in args if a not in newer]  # 2.73-only: checked against its parser's list instead
    http_on = "--allow-http=false" not in args
    assert args[0] == "tritonserver"
    empty = tmp_path / "models"  # no models: only the flags are under test
    empty.mkdir()
    http, grpc, metrics = free_port(), free_port(), free_port()
    replaced = {
        "--model-repository": str(empty),
        "--http-port": str(http),
        "--grpc-port": str(grpc),
        "--metrics-port": str(metrics),
    }
    flags = [
        f"{a.partition('=')[0]}={replaced[a.partition('=')[0]]}" if a.partition("=")[0] in replaced else a
        for a in args[1:]
    ]
    log = tmp_path / "tritonserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(server_binary()), *flags], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                if not http_on:
                    if grpc_health(f"127.0.0.1:{grpc}") == SERVING:
                        break
                    continue
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (OSError, grpc_lib.RpcError):
                time.sleep(0.5)
        else:
            pytest.fail("not ready in 60 s:\n" + log.read_text(errors="replace")[-2000:])
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc}")
        with pytest.raises(Exception, match="triton-grpc-protocol-admin-key"):
            client.get_model_repository_index()
        client.get_model_repository_index(headers={"triton-grpc-protocol-admin-key": ADMIN_KEY})
        assert client.is_server_live()  # health stays open
        if http_on:
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v2/repository/index", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 403
            request.add_header("admin-key", ADMIN_KEY)
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        else:
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/live", timeout=2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def server_help() -> str:
    """The local tritonserver's --help: the flags 2.51 parses."""
    result = subprocess.run([str(server_binary()), "--help"], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def grpc_health(url: str, service: bytes = b"") -> bytes:
    """One call of the standard ``grpc.health.v1.Health/Check`` (raw bytes: no generated stubs needed).

    The request is a HealthCheckRequest: empty (the whole server) or field 1, the service name. The
    answer is a HealthCheckResponse: field 1, the status enum (1 SERVING, 2 NOT_SERVING).
    """
    import grpc

    request = b"" if not service else b"\x0a" + bytes([len(service)]) + service
    with grpc.insecure_channel(url) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=lambda x: x, response_deserializer=lambda x: x
        )
        return check(request, timeout=10)


SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


@pytest.mark.server
def test_the_real_server_answers_the_standard_grpc_health_check(triton_server: Any) -> None:
    """Kubernetes ``grpc:`` probes call grpc.health.v1.Health/Check; 2.51 must serve it for gRPC-only pods."""
    assert grpc_health(triton_server.grpc_url) == SERVING
    # An unknown service name is answered too: the kubelet sends probe.grpc.service ("" by default).
    import grpc

    try:
        answer = grpc_health(triton_server.grpc_url, b"no.such.Service")
    except grpc.RpcError as error:  # NOT_FOUND is the protocol's answer for an unknown service
        assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED), error
    else:
        assert answer in (SERVING, b"\x08\x02", b"\x08\x03"), answer
