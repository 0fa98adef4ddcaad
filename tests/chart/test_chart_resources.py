"""Objects around the pod: Service, PDB, HPA and its adapter rule, monitors, routes, policy, test hook."""

from __future__ import annotations

import json

import yaml
from chart_helpers import CHART_DIR, HELM_DIR, one, pod_spec, render_case, server_container

ADAPTER_VALUES = HELM_DIR / "monitoring" / "prometheus-adapter-values.yaml"


def pod_labels(objects: list[dict]) -> dict[str, str]:
    return one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def test_selectors_are_the_stable_pair() -> None:
    """Deployment selectors are immutable: only name and instance, nothing that changes on upgrade."""
    deployment = one(render_case("01-default-gpu-values.yaml"), "Deployment")
    assert set(deployment["spec"]["selector"]["matchLabels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
    }


def test_service_exposes_the_three_named_ports() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    service = one(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert selects(service["spec"]["selector"], pod_labels(objects))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {name: p["port"] for name, p in ports.items()} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    container_ports = {p["name"] for c in pod_spec(objects)["containers"] for p in c["ports"]}  # gateway's too
    assert {p["targetPort"] for p in ports.values()} <= container_ports


def test_headless_service_for_client_side_balancing() -> None:
    objects = render_case("08-everything-on-values.yaml")
    headless = one(objects, "Service", "-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], pod_labels(objects))


def test_pdb_covers_the_pods(ci_case: str) -> None:
    objects = render_case(ci_case)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    if ci_case.startswith("02-cpu-dev"):
        assert not budgets, "the dev case switches the PDB off"
        return
    (budget,) = budgets
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(objects))
    assert budget["spec"]["maxUnavailable"] >= 1


def test_hpa_scales_on_the_triton_metric() -> None:
    objects = render_case("06-autoscaling-values.yaml")
    hpa = one(objects, "HorizontalPodAutoscaler")
    deployment = one(objects, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "triton_queue_compute_ratio"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "250m"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_adapter_rule_publishes_the_metric_the_hpa_reads() -> None:
    adapter = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    rules = adapter["rules"]["custom"]
    names = [rule["name"]["as"] for rule in rules]
    assert defaults["autoscaling"]["metricName"] in names
    rule = rules[names.index(defaults["autoscaling"]["metricName"])]
    # Per-pod series: the HPA's Pods metric needs the pod label mapped to the pod resource.
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]


def test_service_monitor_scrapes_each_pod_once() -> None:
    objects = render_case("08-everything-on-values.yaml")
    monitor = one(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [o for o in objects if o["kind"] == "Service"]
    matched = [s["metadata"]["name"] for s in services if selects(selector, s["metadata"]["labels"])]
    assert matched == [one(objects, "Service", "paddleclas-triton")["metadata"]["name"]]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_service_monitor_carries_prometheus_selector_labels() -> None:
    monitor = one(render_case("06-autoscaling-values.yaml"), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pod_monitor_and_dashboard() -> None:
    objects = render_case("07-monitoring-values.yaml")
    monitor = one(objects, "PodMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(objects))
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] in {p["name"] for p in server_container(objects)["ports"]}
    assert endpoint["interval"] == "30s"
    dashboard = one(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    (content,) = dashboard["data"].values()
    shipped = json.loads((CHART_DIR / "files" / "grafana-dashboard.json").read_text("utf-8"))
    assert json.loads(content) == shipped


def test_monitoring_is_off_by_default() -> None:
    """Clusters without the Prometheus Operator CRDs must install the defaults."""
    kinds = {o["kind"] for o in render_case("01-default-gpu-values.yaml")}
    assert not kinds & {
        "ServiceMonitor",
        "PodMonitor",
        "HorizontalPodAutoscaler",
        "GRPCRoute",
        "Ingress",
    }
    # The NetworkPolicy is core networking/v1 (no CRD) and on by default (values.yaml says why).
    assert "NetworkPolicy" in kinds


def test_grpc_entry_points_target_the_grpc_port() -> None:
    objects = render_case("08-everything-on-values.yaml")
    service = one(objects, "Service", "paddleclas-triton")
    ingress = one(objects, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "grpc"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    route = one(objects, "GRPCRoute")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": 8001}]


def test_network_policy_admits_clients_and_scrapers_only() -> None:
    objects = render_case("08-everything-on-values.yaml")
    policy = one(objects, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(objects))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    named = {p["name"] for c in pod_spec(objects)["containers"] for p in c["ports"]}  # gateway's too
    inference, scrape = policy["spec"]["ingress"]
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"} <= named
    assert {p["port"] for p in scrape["ports"]} == {"metrics"}
    assert inference["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "frontends"}


def test_helm_test_pod_runs_the_project_client_in_the_server_image(ci_case: str) -> None:
    objects = render_case(ci_case)
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    service = one(objects, "Service", "paddleclas-triton")["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == server_container(objects)["image"], "the image that carries client/"
    assert container["command"] == ["python3", "-m", "client", "smoke"]
    assert f"--url={service}:8001" in container["args"]
    assert {e["name"]: e.get("value") for e in container["env"]}["PYTHONPATH"] == "/opt/paddleclas"
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-test")]


def test_the_chart_carries_no_project_code() -> None:
    """The plan builder and the test client come from the server image; the chart holds templates and data."""
    assert sorted(path.name for path in CHART_DIR.rglob("*.py")) == []


def test_helm_test_names_models_when_asked() -> None:
    pod = one(render_case("08-everything-on-values.yaml"), "Pod")
    assert "--model=nextvit_small_224" in pod["spec"]["containers"][0]["args"]


def test_service_account_token_is_never_mounted() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    account = one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(objects)["serviceAccountName"] == account["metadata"]["name"]
