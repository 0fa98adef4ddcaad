"""Every ci value set lints, renders and validates against the Kubernetes versions we support.

The oldest version is the lower bound of Chart.yaml's kubeVersion; the newest is the newest schema
set kubernetes-validate carries. Strict mode rejects unknown fields, so a misspelt or misplaced key
fails here instead of being dropped silently by the API server.
"""

from __future__ import annotations

import re

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from chart_helpers import CHART_DIR, CI_CASES, case_values, render_case

# Kinds from CRDs: no schema ships with kubernetes-validate; test_chart_properties checks their shape.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "GRPCRoute": "gateway.networking.k8s.io/v1",
}
WARNING = 2


def oldest_supported() -> str:
    """Lower bound of ``kubeVersion: ">=X.Y.Z-0"`` in Chart.yaml."""
    metadata = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", metadata["kubeVersion"])
    assert match, f"kubeVersion {metadata['kubeVersion']!r} is not a plain lower bound"
    return match.group(1)


OLDEST = oldest_supported()
NEWEST = kubernetes_validate.utils.latest_version()
VERSIONS = [OLDEST, NEWEST]


def test_supported_range_is_covered_by_the_validator() -> None:
    available = kubernetes_validate.utils.all_versions()
    assert OLDEST in available, f"kubernetes-validate has no schemas for {OLDEST}"
    assert [int(p) for p in NEWEST.split(".")] > [int(p) for p in OLDEST.split(".")]


def test_there_is_a_case_for_each_feature() -> None:
    """The issue's matrix: losing a value set must be a visible change."""
    wanted = [
        "default-gpu",
        "cpu-dev",
        "pvc",
        "object-storage",
        "trt-plans",
        "autoscaling",
        "monitoring",
        "everything-on",
        "models-capacity",
        "cpu-capacity",
    ]
    for case in wanted:
        assert any(re.fullmatch(rf"\d\d-{case}-values\.yaml", name) for name in CI_CASES), case


@pytest.mark.parametrize("kube_version", VERSIONS)
def test_lint_is_clean(ci_case: str, kube_version: str) -> None:
    """helm lint --strict: no warnings and no errors (info such as 'icon is recommended' is fine)."""
    report = helm.lint(CHART_DIR, case_values(ci_case), strict=True, kube_version=f"v{kube_version}")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert not problems and not report["errors"], problems or report["errors"]


@pytest.mark.parametrize("kube_version", VERSIONS)
def test_manifests_validate_strictly(ci_case: str, kube_version: str) -> None:
    objects = render_case(ci_case)
    assert objects, "nothing rendered"
    for obj in objects:
        kind = obj["kind"]
        if kind in CRD_KINDS:
            assert obj["apiVersion"] == CRD_KINDS[kind]
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{kind}/{obj['metadata']['name']} at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(error.message)


def test_names_fit_dns_labels(ci_case: str) -> None:
    for obj in render_case(ci_case):
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
