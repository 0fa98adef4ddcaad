"""The helm test pod is selected by nothing: a pod without a controller must never hold up a drain.

A PodDisruptionBudget that selects a pod no controller owns allows no disruption while that pod exists
(Kubernetes' disruption controller: such a pod makes DisruptionsAllowed 0), so a finished or failed
test pod left on a node would block every `kubectl drain` of it. Rendered with every ci value set: no
selector of any object the chart renders matches the test pod's labels, while each of them matches
the server pods (so the matcher below can say yes). Where the NetworkPolicy names its clients, the
test pod is still admitted, by its own labels.
"""

from __future__ import annotations

from typing import Any

from chart_helpers import Manifest, one, render_case

# Objects whose selector picks pods, and where it sits; a Service's selector is a plain label map.
POD_SELECTORS = {
    "Deployment": ("spec", "selector"),
    "Service": ("spec", "selector"),
    "PodDisruptionBudget": ("spec", "selector"),
    "NetworkPolicy": ("spec", "podSelector"),
    "PodMonitor": ("spec", "selector"),
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes' LabelSelector semantics (matchLabels and matchExpressions), or a Service's label map."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return selector.items() <= labels.items()
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def pod_selectors(objects: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, selector) of every object that selects pods, topology spread constraints included."""
    found = []
    for manifest in objects:
        if manifest["kind"] in POD_SELECTORS:
            outer, inner = POD_SELECTORS[manifest["kind"]]
            selector = manifest[outer].get(inner)
            if selector:
                found.append((f"{manifest['kind']}/{manifest['metadata']['name']}", selector))
    template = one(objects, "Deployment")["spec"]["template"]["spec"]
    for index, constraint in enumerate(template.get("topologySpreadConstraints", [])):
        found.append((f"topologySpreadConstraints[{index}]", constraint["labelSelector"]))
    return found


def test_the_matcher_reads_selectors_as_kubernetes_does() -> None:
    labels = {"a": "1", "b": "2"}
    assert selects({"a": "1"}, labels) and not selects({"a": "2"}, labels)
    assert selects({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["2"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]}, labels)


def test_no_selector_matches_the_test_pod_and_every_one_matches_the_server(ci_case: str) -> None:
    objects = render_case(ci_case)
    test_pod = one(objects, "Pod", "-test-inference")["metadata"]["labels"]
    server_pod = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = pod_selectors(objects)
    kinds = {name.split("/")[0] for name, _ in selectors}
    assert {"Deployment", "Service"} <= kinds, kinds
    for name, selector in selectors:
        assert selects(selector, server_pod), (name, selector)
        assert not selects(selector, test_pod), (name, selector, test_pod)
    assert test_pod["app.kubernetes.io/component"] == "test"


def test_a_budget_is_rendered_where_the_test_pod_would_have_mattered() -> None:
    """The default values render a PodDisruptionBudget: the case the labels guard against is real."""
    objects = render_case("01-default-gpu-values.yaml")
    budget = one(objects, "PodDisruptionBudget")["spec"]["selector"]
    assert selects(budget, one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"])
    assert not selects(budget, one(objects, "Pod", "-test-inference")["metadata"]["labels"])


def test_named_clients_still_admit_the_test_pod() -> None:
    objects = render_case("08-everything-on-values.yaml")
    test_pod = one(objects, "Pod", "-test-inference")["metadata"]["labels"]
    policy = one(objects, "NetworkPolicy")["spec"]
    (inference,) = [rule for rule in policy["ingress"] if any(p["port"] == "grpc" for p in rule["ports"])]
    peers = [peer for peer in inference["from"] if set(peer) == {"podSelector"}]
    assert any(selects(peer["podSelector"], test_pod) for peer in peers), inference["from"]
    assert len(inference["from"]) > len(peers)  # the clients the values name are there too
