"""TensorRT plans persist by default, and the rollout's deadline allows for building them (estimates).

Nothing here runs on a GPU or a cluster: the chart is rendered with Helm's engine and the objects are
checked against Kubernetes' rules (a PersistentVolumeClaim outlives its pods, an emptyDir does not;
a Deployment's progressDeadlineSeconds defaults to 600 s). Build times are estimates, unverified on a GPU.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from chart_helpers import CHART_DIR, HELM_DIR, init_container, one, pod_spec, render, render_case, render_files

import catalog
from model_repository import configs

TRT_ON = {"trtPlans": {"enabled": True}}
ESTIMATES = CHART_DIR / "files" / "trt-build-seconds.json"


def _generator():  # helm/ is not a package: load the generator from its path, as docs/blocks.py does
    spec = importlib.util.spec_from_file_location("gen_trt_build_seconds", HELM_DIR / "gen_trt_build_seconds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cache_volume(objects: list[dict]) -> dict:
    return next(v for v in pod_spec(objects)["volumes"] if v["name"] == "trt-cache")


def test_by_default_plans_are_kept_on_a_claim_that_outlives_pods_and_the_release() -> None:
    objects = render(TRT_ON)
    claim = one(objects, "PersistentVolumeClaim", "-trt-plans")
    volume = _cache_volume(objects)
    assert "emptyDir" not in volume  # an emptyDir dies with its pod: every restart would rebuild every plan
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["resources"]["requests"]["storage"]
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    # The builder writes its cache there (export/trt_plans.py keys it by GPU, TensorRT version, precision, ONNX).
    build = init_container(objects, "build-trt-plans")
    assert "--cache=/trt-cache" in build["args"]
    assert {"name": "trt-cache", "mountPath": "/trt-cache"} in build["volumeMounts"]


def test_an_existing_claim_or_an_opt_out_replace_the_chart_claim() -> None:
    named = render({"trtPlans": {"enabled": True, "cacheClaimName": "shared-plans"}})
    assert _cache_volume(named)["persistentVolumeClaim"]["claimName"] == "shared-plans"
    assert not [o for o in named if o["kind"] == "PersistentVolumeClaim"]
    ephemeral = render({"trtPlans": {"enabled": True, "cacheVolume": {"persistent": False}}})
    assert "emptyDir" in _cache_volume(ephemeral)
    assert not [o for o in ephemeral if o["kind"] == "PersistentVolumeClaim"]
    assert not [o for o in render() if o["kind"] == "PersistentVolumeClaim"]  # plans off: nothing to keep


def test_a_claim_mounted_on_one_node_is_refused_for_several_pods() -> None:
    scrapers = {"scrapers": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}
    for scale in ({"replicaCount": 2}, {"autoscaling": {"enabled": True}, "networkPolicy": scrapers}):
        with pytest.raises(Exception, match="ReadWriteOnce mounts the plan cache on one node"):
            render_files(TRT_ON | scale)
        shared = {
            "trtPlans": {"enabled": True, "cacheVolume": {"accessMode": "ReadWriteMany", "storageClassName": "nfs"}}
        }
        claim = one(render(shared | scale), "PersistentVolumeClaim", "-trt-plans")
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "nfs"
    assert one(render_case("08-everything-on-values.yaml"), "PersistentVolumeClaim", "-trt-plans")


def test_the_chart_carries_the_catalogs_build_estimates() -> None:
    """files/trt-build-seconds.json is generated from configs.trt_build_seconds: run `make docs` when this fails."""
    assert ESTIMATES.read_text(encoding="utf-8") == _generator().render()
    estimates = json.loads(ESTIMATES.read_text(encoding="utf-8"))
    assert set(estimates) == {entry.triton_name for entry in catalog.CATALOG.values()}
    # more work per image or more profiles, a longer build
    small, large = catalog.get("ViT_base_patch16_224"), catalog.get("ViT_large_patch16_384")
    assert estimates[small.triton_name] < estimates[large.triton_name]
    assert configs.trt_build_seconds(small) > len(configs.TRT_PROFILES) * configs.TRT_BUILD_SECONDS_PER_PROFILE


def _deadline(values: dict) -> int:
    return one(render(values), "Deployment")["spec"]["progressDeadlineSeconds"]


def test_the_progress_deadline_allows_for_pulls_plan_builds_and_the_startup_budget() -> None:
    defaults = one(render(), "Deployment")["spec"]
    probe = next(c for c in pod_spec(render())["containers"] if c["name"] == "tritonserver")["startupProbe"]
    startup = probe["periodSeconds"] * probe["failureThreshold"]
    pulls = 600  # rollingUpdate.pullAndInitSeconds
    assert defaults["progressDeadlineSeconds"] == pulls + startup > 600  # Kubernetes' default cut the probe short
    served = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))["models"]  # the default set
    every = sum(configs.trt_build_seconds(catalog.get(name)) for name in served)
    assert _deadline(TRT_ON) == pulls + startup + every
    everything = sum(configs.trt_build_seconds(entry) for entry in catalog.CATALOG.values())
    assert _deadline(TRT_ON | {"models": [], "gpu": {"memoryGiB": 80 * 4}}) == pulls + startup + everything
    chosen = ["ViT_base_patch16_224", "nextvit_small_224"]  # either spelling the models value accepts
    expected = sum(configs.trt_build_seconds(catalog.get(name)) for name in chosen)
    assert _deadline(TRT_ON | {"models": chosen}) == pulls + startup + expected
    # NOTES tells the --wait timeout and the build estimate, labelled as such.
    notes = next(text for path, text in render_files(TRT_ON | {"models": chosen}).items() if path.endswith("NOTES.txt"))
    assert f"--timeout {pulls + startup + expected}s" in notes
    assert f"about\n{-(-expected // 60)} min for these models (an estimate, unverified on a GPU" in notes
