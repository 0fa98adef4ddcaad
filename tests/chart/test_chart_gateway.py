"""The gateway in front of tritonserver: on by default, its limits memory.py's, tritonserver behind it on loopback.

The nginx configuration the chart mounts is model_repository/gateway.py's text (files/gateway/*.conf,
checked current here); tests/server/test_gateway.py runs the same text in the real nginx.
"""

from __future__ import annotations

import pytest
from chart_helpers import flags, one, pod_spec, render, server_container

from model_repository import gateway, memory


def gateway_container(objects: list[dict]) -> dict:
    (container,) = [c for c in pod_spec(objects)["containers"] if c["name"] == "gateway"]
    return container


def test_the_chart_files_are_what_the_module_writes_now() -> None:
    for name, text in gateway.chart_files().items():
        assert (gateway.CHART_FILES / name).read_text(encoding="utf-8") == text, (
            f"files/gateway/{name} is stale: run `python -m model_repository.gateway --chart`"
        )


def test_the_limits_are_the_memory_formulas() -> None:
    text = gateway.nginx_conf()
    assert f"client_max_body_size {memory.gateway_body_bytes()};" in text
    assert f"limit_conn inflight {memory.REQUESTS_IN_FLIGHT};" in text
    assert text.count("limit_conn inflight") == 2  # gRPC and HTTP inference routes; health is exempt


@pytest.mark.parametrize("http", [True, False])
def test_the_gateway_takes_the_service_ports_and_tritonserver_listens_on_loopback(http: bool) -> None:
    objects = render({"server": {"httpEnabled": http}})
    front, server = gateway_container(objects), server_container(objects)
    named = {p["name"]: p["containerPort"] for p in front["ports"]}
    assert named == ({"http": 8000} if http else {}) | {"grpc": 8001}
    assert {p["name"] for p in server["ports"]} == {"metrics"}  # the Service's http/grpc reach nginx only
    args = flags(server["args"])
    assert (args["--grpc-port"], args["--grpc-address"]) == (str(gateway.UPSTREAM_GRPC_PORT), "127.0.0.1")
    if http:
        assert (args["--http-port"], args["--http-address"]) == (str(gateway.UPSTREAM_HTTP_PORT), "127.0.0.1")
    config = one(objects, "ConfigMap", "-gateway")["data"]
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "gateway-config")
    (item,) = volume["configMap"]["items"]
    assert config[item["key"]] == gateway.nginx_conf(gateway.Gateway(http_port=8000 if http else None))
    service_ports = {p["targetPort"] for p in one(objects, "Service")["spec"]["ports"]}
    assert service_ports == ({"http"} if http else set()) | {"grpc", "metrics"}


def test_the_gateway_is_bounded_guaranteed_and_unprivileged() -> None:
    objects = render()
    front = gateway_container(objects)
    assert front["resources"]["requests"] == front["resources"]["limits"]
    assert front["resources"]["limits"]["memory"] == f"{memory.GATEWAY_MIB}Mi"
    assert front["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in front["volumeMounts"]}
    assert gateway.POD_STATE_DIR in mounts  # pid and temp paths on an emptyDir


def test_off_restores_tritonserver_on_the_pod_ports() -> None:
    objects = render({"gateway": {"enabled": False}})
    assert [c["name"] for c in pod_spec(objects)["containers"]] == ["tritonserver"]
    server = server_container(objects)
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert "--grpc-address" not in flags(server["args"])
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-gateway")]
