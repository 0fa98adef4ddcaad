"""Bad values stop ``helm install`` with a message that names the key and says what is wrong.

Single-key errors come from values.schema.json (Helm reports the JSON pointer and the constraint);
combinations the schema cannot phrase well stop the render through the chart's validate helper.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
from chart_helpers import CHART_DIR, chart, render_files

SCHEMA_ERRORS = [
    ({"replicaCount": -1}, ["/replicaCount", "minimum"]),
    ({"modelRepository": {"source": "ftp"}}, ["/modelRepository/source", "one of", "pvc"]),
    ({"gpu": {"count": "1"}}, ["/gpu/count", "got string, want integer"]),
    ({"gpu": {"count": 0}}, ["/gpu/count", "minimum"]),
    ({"mode": "tpu"}, ["/mode", "one of", "cpu"]),
    ({"replicas": 3}, ["'replicas' not allowed"]),
    ({"image": {"repository": "x", "tagg": "1"}}, ["/image", "'tagg' not allowed"]),
    ({"shm": {"sizeLimit": "lots"}}, ["/shm/sizeLimit", "does not match pattern"]),
    ({"autoscaling": {"targetAverageValue": "half"}}, ["/autoscaling/targetAverageValue"]),
    ({"image": {"digest": "latest"}}, ["/image/digest"]),
    ({"server": {"exitTimeoutSeconds": -5}}, ["/server/exitTimeoutSeconds", "minimum"]),
    ({"server": {"malloc": "mimalloc"}}, ["/server/malloc", "one of"]),
    ({"server": {"extraArgs": ["log-verbose=1"]}}, ["/server/extraArgs/0"]),
    ({"trtPlans": {"precision": "int8"}}, ["/trtPlans/precision", "one of"]),
    ({"modelRepository": {"objectStorage": {"url": "http://bucket/x"}}}, ["/modelRepository/objectStorage/url"]),
    ({"probes": {"startup": {"failureThreshold": 0}}}, ["/probes/startup/failureThreshold"]),
    ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}}, ["/metrics/serviceMonitor/interval"]),
]

TEMPLATE_ERRORS = [
    ({"modelRepository": {"source": "pvc"}}, "set modelRepository.pvc.claimName"),
    ({"modelRepository": {"source": "nfs"}}, "set modelRepository.nfs.server and"),
    ({"modelRepository": {"source": "objectStorage"}}, "must start with s3://, gs:// or as://"),
    (
        {"modelRepository": {"source": "objectStorage", "objectStorage": {"url": "gs://b/p"}}},
        "existingSecret is needed for gs://",
    ),
    ({"mode": "cpu", "trtPlans": {"enabled": True}}, "trtPlans.enabled needs mode gpu"),
    (
        {
            "trtPlans": {"enabled": True},
            "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
        },
        "build the plans before uploading",
    ),
    (
        {"trtPlans": {"enabled": True}, "modelRepository": {"variant": "portable"}},
        "builds plans for the production repository",
    ),
    ({"mode": "cpu", "modelRepository": {"variant": "production"}}, "mode cpu cannot serve the production repository"),
    ({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}, "not both"),
    (
        {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
        "minReplicas is larger than autoscaling.maxReplicas",
    ),
    (
        {"gpu": {"products": ["NVIDIA-L4"]}, "affinity": {"nodeAffinity": {"x": {}}}},
        "gpu.products writes the pods' nodeAffinity",
    ),
    ({"ingress": {"enabled": True}}, "ingress.host is needed"),
    ({"grpcRoute": {"enabled": True}}, "grpcRoute.enabled needs grpcRoute.parentRefs"),
]


def ids(cases: list[tuple[dict[str, Any], Any]]) -> list[str]:
    return [str(values) for values, _ in cases]


@pytest.mark.parametrize(("values", "fragments"), SCHEMA_ERRORS, ids=ids(SCHEMA_ERRORS))
def test_schema_rejects(values: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        chart().validate_schema(chart().merge_values(values))
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    # The same values stop a render (what install and template do), not only the explicit check.
    with pytest.raises(helm.HelmValuesError):
        render_files(values)


@pytest.mark.parametrize(("values", "message"), TEMPLATE_ERRORS, ids=ids(TEMPLATE_ERRORS))
def test_render_rejects(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render_files(values)
    assert message in str(caught.value), str(caught.value)


@pytest.mark.parametrize(("values", "fragments"), SCHEMA_ERRORS[:3], ids=ids(SCHEMA_ERRORS[:3]))
def test_lint_reports_schema_errors(values: dict[str, Any], fragments: list[str]) -> None:
    report = helm.lint(CHART_DIR, values, strict=True)
    assert any(fragments[0] in error for error in report["errors"]), report


def test_defaults_pass_the_schema() -> None:
    chart().validate_schema(chart().merge_values({}))
