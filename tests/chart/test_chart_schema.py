"""Bad values stop ``helm install`` with a message that names the key and says what is wrong.

Single-key errors come from values.schema.json (Helm reports the JSON pointer and the constraint);
combinations the schema cannot phrase well stop the render through the chart's validate helper.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
from chart_helpers import CHART_DIR, chart, render_files

import catalog
from catalog import CATALOG

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
    ({"models": ["NextViT_smal_224"]}, ["/models/0", "one of", "NextViT_small_224"]),
    ({"models": ["ViT_base_patch16_224", "ViT_base_patch16_224"]}, ["/models", "items at 0 and 1 are equal"]),
    ({"capacity": {"cores": -1}}, ["/capacity/cores", "minimum"]),
    ({"capacity": {"preprocessInstances": 1.5}}, ["/capacity/preprocessInstances", "want integer"]),
    ({"capacity": {"networkGpuInstances": 0}}, ["/capacity/networkGpuInstances", "minimum"]),
    ({"capacity": {"networkGpuInstances": 8}}, ["/capacity/networkGpuInstances", "maximum"]),
    ({"capacity": {"threads": 4}}, ["/capacity", "'threads' not allowed"]),
    ({"resources": {"gpu": {"limits": {"cpu": "four"}}}}, ["/resources/gpu/limits/cpu"]),
    ({"resources": {"gpu": {"limits": {"cpu": "4Gi"}}}}, ["/resources/gpu/limits/cpu"]),
    ({"resources": {"gpu": {"limits": {"memory": "lots"}}}}, ["/resources/gpu/limits/memory"]),
    ({"server": {"pinnedMemoryPoolMiB": -1}}, ["/server/pinnedMemoryPoolMiB", "minimum"]),
    ({"tests": {"models": ["NextViT_small_224"]}}, ["/tests/models/0", "one of", "nextvit_small_224"]),
]

TEMPLATE_ERRORS = [
    ({"modelRepository": {"source": "pvc"}}, "set modelRepository.pvc.claimName"),
    ({"modelRepository": {"source": "nfs"}}, "set modelRepository.nfs.server and"),
    ({"modelRepository": {"source": "objectStorage"}}, "must start with s3://, gs:// or as://"),
    (
        {"models": [], "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "gs://b/p"}}},
        "existingSecret is needed for gs://",
    ),
    ({"mode": "cpu", "trtPlans": {"enabled": True}}, "trtPlans.enabled needs mode gpu"),
    (
        {
            "trtPlans": {"enabled": True},
            "models": [],
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
    (
        {
            "models": ["NextViT_small_224"],
            "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
        },
        "with objectStorage tritonserver serves every model in the bucket as installed",
    ),
    (
        {
            "capacity": {"preprocessInstances": 4},
            "models": [],
            "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
        },
        "capacity is applied by the render-repository init container",
    ),
    (
        {
            "capacity": {"networkGpuInstances": 2},
            "models": [],
            "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
        },
        "render a sized copy before uploading",
    ),
    (
        {"models": ["ViT_base_patch16_224"], "tests": {"models": ["nextvit_small_224"]}},
        "tests.models names nextvit_small_224, which this release does not serve",
    ),
    (
        {"resources": {"gpu": {"requests": {"cpu": None}, "limits": {"cpu": None}}}},
        "capacity.cores is 0, so the cores come from resources.gpu.limits.cpu, which is not set",
    ),
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


def test_model_names_are_the_catalog() -> None:
    """The schema's model names are the catalog's, in both spellings layout.py accepts."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    names = [entry.name for entry in CATALOG.values()]
    ensembles = [entry.triton_name for entry in CATALOG.values()]
    assert schema["properties"]["models"]["items"]["enum"] == names + ensembles
    assert schema["properties"]["tests"]["properties"]["models"]["items"]["enum"] == ensembles
    for name in names + ensembles:
        assert catalog.get(name).triton_name in ensembles


def test_objectstorage_without_selection_or_capacity_renders() -> None:
    """The refusals above are about values that would be ignored; the plain object-storage install still works
    (models set to [], as the default names the models that fit a 24 GiB GPU, which a bucket cannot select)."""
    render_files({"models": [], "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}}})
