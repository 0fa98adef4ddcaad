"""Restricted APIs, the admin key's Secret, gRPC-only listeners and request-size limits, as rendered."""

from __future__ import annotations

import base64
import re

import yaml
from chart_helpers import CHART_DIR, CI_CASES, one, pod_spec, render, render_case, server_container, walk

RESTRICTED = "shared-memory,model-repository,statistics,trace,logging"
KEY_REF = "$(TRITON_ADMIN_KEY)"


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(container: dict) -> dict:
    return env_of(container)["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]


def test_restricted_groups_are_on_by_default_on_both_protocols() -> None:
    args = server_container(render_case("01-default-gpu-values.yaml"))["args"]
    assert f"--grpc-restricted-protocol={RESTRICTED}:admin-key={KEY_REF}" in args
    assert f"--http-restricted-api={RESTRICTED}:admin-key={KEY_REF}" in args
    # Health, metadata, model-config and inference stay open.
    for group in ("health", "metadata", "model-config", "inference"):
        assert not [a for a in args if "restricted" in a and re.search(rf"[=,]{group}[,:]", a)], group


def test_alternate_endpoints_are_off_explicitly() -> None:
    for case in CI_CASES:
        args = server_container(render_case(case))["args"]
        assert "--allow-sagemaker=false" in args and "--allow-vertex-ai=false" in args, case


def test_created_secret_feeds_the_server_through_the_environment_and_nothing_else() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    secret = one(objects, "Secret", "-admin-key")
    (stored,) = secret["data"].values()
    key = base64.b64decode(stored).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", key)
    assert "helm.sh/resource-policy" not in secret["metadata"].get("annotations", {})
    server = server_container(objects)
    test_pod = one(objects, "Pod", "-test-inference")["spec"]["containers"][0]
    assert secret_ref(server) == {"name": secret["metadata"]["name"], "key": "admin-key"}
    # The helm test uses the open APIs only (python -m client smoke): it gets no key at all.
    assert "TRITON_ADMIN_KEY" not in env_of(test_pod) and "secretKeyRef" not in yaml.safe_dump(test_pod)
    # The key itself is nowhere but the Secret: the args name only the variable.
    for obj in objects:
        if obj["kind"] != "Secret":
            assert key not in yaml.safe_dump(obj), obj["kind"]
    assert [a for a in server["args"] if "admin-key=" in a] == [
        f"--grpc-restricted-protocol={RESTRICTED}:admin-key={KEY_REF}",
        f"--http-restricted-api={RESTRICTED}:admin-key={KEY_REF}",
    ]


def test_no_key_in_any_configmap_or_in_values() -> None:
    """ConfigMaps are readable by far more roles than Secrets; values files end up in git."""
    values_text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(values_text)
    assert set(values["security"]["adminKey"]) == {"existingSecret", "secretKey", "keep"}
    assert not [v for v in walk(values["security"]) if isinstance(v, str) and len(v) >= 24]
    for case in CI_CASES:
        objects = render_case(case)
        keys = [base64.b64decode(v).decode() for o in objects if o["kind"] == "Secret" for v in o["data"].values()]
        for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
            text = yaml.safe_dump(config_map)
            assert not [k for k in keys if k in text], (case, config_map["metadata"]["name"])
            assert "admin-key=" not in text.replace(f"admin-key={KEY_REF}", ""), case
        assert not [k for k in keys if k in values_text]


def test_existing_secret_replaces_the_created_one() -> None:
    objects = render_case("13-existing-admin-key-values.yaml")
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert secret_ref(server_container(objects)) == {"name": "triton-admin", "key": "token"}


def test_keep_annotates_the_created_secret() -> None:
    secret = one(render({"security": {"adminKey": {"keep": True}}}), "Secret", "-admin-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_restricted_groups_follow_the_values() -> None:
    args = server_container(render({"security": {"restrictedApis": ["shared-memory", "logging"]}}))["args"]
    assert f"--grpc-restricted-protocol=shared-memory,logging:admin-key={KEY_REF}" in args


def test_grpc_only_turns_http_off_everywhere_and_probes_over_grpc() -> None:
    objects = render_case("12-grpc-only-values.yaml")
    server = server_container(objects)
    assert "--allow-http=false" in server["args"]
    assert not [a for a in server["args"] if a.startswith(("--http-port", "--http-restricted-api"))]
    assert f"--grpc-restricted-protocol={RESTRICTED}:admin-key={KEY_REF}" in server["args"]
    assert {p["name"] for c in pod_spec(objects)["containers"] for p in c["ports"]} == {"grpc", "metrics"}
    for probe in ("startupProbe", "readinessProbe"):
        assert server[probe]["grpc"] == {"port": 8001}, probe
        assert "httpGet" not in server[probe]
    # Liveness counts the Python step processes (model_repository/health.py); no HTTP endpoint to ask.
    assert not [a for a in server["livenessProbe"]["exec"]["command"] if a.startswith("--http-port")]
    service = one(objects, "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    policy = one(objects, "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert "http" not in ports
    # The helm test uses gRPC only, so it still works.
    assert one(objects, "Pod", "-test-inference")["spec"]["containers"][0]["args"][0].endswith(":8001")


def test_http_stays_on_by_default_with_http_probes() -> None:
    server = server_container(render_case("01-default-gpu-values.yaml"))
    assert "--allow-http=true" in server["args"] and "--http-port=18000" in server["args"]  # behind the gateway
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_network_policy_is_on_by_default_and_admits_metrics_only_to_named_scrapers() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    policy = one(objects, "NetworkPolicy")
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    rules = {tuple(p["port"] for p in r["ports"]): r["from"] for r in policy["spec"]["ingress"]}
    assert rules[("metrics",)] == [{"podSelector": {}}]  # default: the release namespace only
    named = one(render_case("07-monitoring-values.yaml"), "NetworkPolicy")
    metrics_from = next(r["from"] for r in named["spec"]["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_from == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_ingress_limits_the_request_body() -> None:
    ingress = one(render_case("08-everything-on-values.yaml"), "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "300m"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    smaller = one(render_case("13-existing-admin-key-values.yaml"), "Ingress")
    assert smaller["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "128m"
    # 300 MiB admits the largest legitimate request: 8 decoded 4000x3000 RGB frames.
    assert 8 * 4000 * 3000 * 3 < 300 * 1024 * 1024
