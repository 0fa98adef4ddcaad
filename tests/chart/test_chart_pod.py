"""The server pod as rendered: flags, probes, GPU placement, volumes and security, per value set."""

from __future__ import annotations

import hashlib
import re

import yaml
from chart_helpers import (
    CHART_DIR,
    case_values,
    init_container,
    one,
    pod_spec,
    render_case,
    render_files,
    server_container,
    walk,
)
from chart_helpers import flags as flags_of

from catalog import CATALOG
from model_repository import configs


def args_of(container: dict) -> dict[str, str]:
    """``--flag=value`` arguments as a dict (flags without a value map to "")."""
    flags = {}
    for arg in container["args"][1:]:
        name, _, value = arg.partition("=")
        flags[name] = value
    return flags


def values_file() -> dict:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))


def test_server_flags_default() -> None:
    container = server_container(render_case("01-default-gpu-values.yaml"))
    assert container["args"][0] == "tritonserver"
    flags = args_of(container)
    assert flags["--model-repository"] == "/repository/models"  # the serving copy render-repository wrote
    assert flags["--model-control-mode"] == "none"
    assert flags["--strict-readiness"] == "true"
    assert "--disable-auto-complete-config" in flags
    assert flags["--exit-timeout-secs"] == str(values_file()["server"]["exitTimeoutSeconds"])
    # Behind the gateway (model_repository/gateway.py): loopback ports; the gateway holds the pod's 8000/8001.
    assert (flags["--http-port"], flags["--grpc-port"], flags["--metrics-port"]) == ("18000", "18001", "8002")
    assert flags["--allow-gpu-metrics"] == "true"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8002}


def test_probes_use_triton_health_endpoints_and_liveness_counts_the_python_steps() -> None:
    container = server_container(render_case("01-default-gpu-values.yaml"))
    for probe in ("startupProbe", "readinessProbe"):
        # Through the gateway, whose health routes are exempt from its in-flight limit.
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}, probe
    command = container["livenessProbe"]["exec"]["command"]
    assert command[command.index("-m") + 1 : command.index("-m") + 3] == ["model_repository", "health"]
    assert "--repository=/repository/models" in command and "--http-port=18000" in command
    assert f"--model-repository={command[-2].split('=', 1)[1]}" in container["args"]
    assert "PYTHONPATH=/opt/paddleclas" in command  # where the server image carries the project's packages


def startup_comment() -> str:
    """The comment block above probes.startup.failureThreshold, joined into one line."""
    lines = (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()
    startup = lines.index("  startup:")
    end = next(i for i in range(startup, len(lines)) if lines[i].strip().startswith("failureThreshold:"))
    block: list[str] = []
    for line in reversed(lines[:end]):
        if not line.strip().startswith("#"):
            break
        block.insert(0, line.strip().lstrip("#").strip())
    return " ".join(block)


def test_startup_budget_is_sized_for_the_largest_catalog_model_and_its_warmup() -> None:
    """The budget comment names the largest model and the warmup batches; either changing must revisit it."""
    largest = max(CATALOG.values(), key=lambda entry: entry.published.params_m)
    comment = startup_comment()
    assert largest.name in comment, f"startup budget comment should size for {largest.name}"
    batches = configs.network_warmup_batches("production")
    listed = ", ".join(str(b) for b in batches[:-1]) + f" and {batches[-1]}"
    assert f"batch {listed}" in comment, f"the comment should list the warmup batches {batches}"
    probe = server_container(render_case("01-default-gpu-values.yaml"))["startupProbe"]
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    # The comment's own arithmetic: ~570 s estimated at 20 MB/s storage for every model, warmup included.
    assert budget >= 900, budget
    readiness = server_container(render_case("01-default-gpu-values.yaml"))["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/v2/health/ready" and readiness["failureThreshold"] <= 3


def test_graceful_shutdown_outlasts_the_exit_timeout(ci_case: str) -> None:
    """The rendered numbers themselves (test_chart_server_flags.py ties the arithmetic to the launcher's)."""
    spec = pod_spec(render_case(ci_case))
    flags = args_of(server_container(render_case(ci_case)))
    sleep = int(server_container(render_case(ci_case))["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > int(flags["--exit-timeout-secs"]) + sleep


def test_dev_shm_is_a_bounded_memory_volume(ci_case: str) -> None:
    spec = pod_spec(render_case(ci_case))
    mounts = {m["mountPath"]: m["name"] for m in server_container(render_case(ci_case))["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts["/dev/shm"])
    assert volume["emptyDir"]["medium"] == "Memory"
    assert volume["emptyDir"]["sizeLimit"]


def test_gpu_mode_requests_a_gpu_and_tolerates_the_taint() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    resources = server_container(objects)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    for key in ("cpu", "memory"):  # Guaranteed QoS
        assert resources["requests"][key] == resources["limits"][key]
    tolerations = pod_spec(objects)["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_gpu_products_become_required_node_affinity() -> None:
    spec = pod_spec(render_case("03-pvc-values.yaml"))
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expression = terms["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expression == {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A10G"]}


def test_runtime_class_is_optional() -> None:
    assert "runtimeClassName" not in pod_spec(render_case("01-default-gpu-values.yaml"))
    assert pod_spec(render_case("05-trt-plans-values.yaml"))["runtimeClassName"] == "nvidia"


def test_cpu_mode_serves_portable_without_gpu() -> None:
    objects = render_case("02-cpu-dev-values.yaml")
    flags = args_of(server_container(objects))
    assert flags["--model-repository"] == "/repository/models"
    render_args = init_container(objects, "render-repository")["args"]
    assert "--repository=/models/portable" in render_args
    assert flags["--allow-gpu-metrics"] == "false"
    assert not [v for v in walk(objects) if isinstance(v, str) and "nvidia.com/gpu" in v]
    assert not any(isinstance(v, dict) and "nvidia.com/gpu" in v for v in walk(objects))
    expected = values_file()["resources"]["cpu"]
    assert server_container(objects)["resources"] == expected


def test_pvc_source_mounts_the_claim_read_only() -> None:
    objects = render_case("03-pvc-values.yaml")
    spec = pod_spec(objects)
    volume = next(v for v in spec["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"] == {"claimName": "paddleclas-models", "readOnly": True}
    mount = next(m for m in server_container(objects)["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "model_repository"}
    # The server reads the serving copy, whose links point into the claim mounted at the same place.
    assert args_of(server_container(objects))["--model-repository"] == "/repository/models"
    render_container = init_container(objects, "render-repository")
    assert "--repository=/models/production" in render_container["args"]
    assert mount in render_container["volumeMounts"]
    assert one(objects, "Deployment")["spec"]["replicas"] == 2


def test_nfs_source_mounts_the_export_read_only() -> None:
    spec = pod_spec(render_case("08-everything-on-values.yaml"))
    volume = next(v for v in spec["volumes"] if v["name"] == "models")
    assert volume["nfs"] == {"server": "nfs.storage.svc.cluster.local", "path": "/exports/paddleclas", "readOnly": True}


def test_s3_source_reads_credentials_from_the_secret() -> None:
    objects = render_case("04-object-storage-values.yaml")
    container = server_container(objects)
    assert args_of(container)["--model-repository"] == ("s3://models-bucket/paddleclas/model_repository/production")
    assert container["envFrom"] == [{"secretRef": {"name": "paddleclas-s3"}}]
    assert "models" not in {v["name"] for v in pod_spec(objects)["volumes"]}


def test_gcs_source_mounts_the_service_account_key() -> None:
    objects = render_case("09-object-storage-gcs-values.yaml")
    container = server_container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "gcs-credentials")
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"{mount['mountPath']}/key.json"
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "gcs-credentials")
    assert volume["secret"]["secretName"] == "paddleclas-gcs"
    assert "envFrom" not in container


def test_trt_init_containers_build_into_the_served_copy() -> None:
    objects = render_case("05-trt-plans-values.yaml")
    spec = pod_spec(objects)
    render_container, stage, build = spec["initContainers"]
    assert [c["name"] for c in spec["initContainers"]] == ["render-repository", "stage-repository", "build-trt-plans"]
    assert stage["image"] == server_container(objects)["image"], "stage must read the server's TRT"
    assert build["image"] == "nvcr.io/nvidia/tensorrt:26.09-py3"
    assert build["resources"]["limits"]["nvidia.com/gpu"] == 1
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["trt-cache"]["persistentVolumeClaim"]["claimName"] == "trt-plan-cache"
    assert "emptyDir" in volumes["repository"]
    assert args_of(server_container(objects))["--model-repository"] == "/repository/models"
    served = next(m for m in server_container(objects)["volumeMounts"] if m["name"] == "repository")
    assert served["readOnly"] is True
    # render writes the copy; stage only checks it and records the server's TensorRT version.
    assert flags_of(render_container["args"])["--out"] == "/repository/models"
    # the configs it renders name the plan build-trt-plans writes, of the precision it builds
    assert flags_of(render_container["args"])["--tensorrt-plans"] == flags_of(build["args"])["--precision"]
    assert stage["args"] == ["--target=/repository"]
    # Both run the builder the server image ships; stage leaves it on the volume for the TensorRT image.
    assert stage["command"] == ["python3", "-m", "export.trt_plans", "stage"]
    assert build["command"] == ["python3", "/repository/trt_plans.py", "build"]
    for container in (render_container, stage, build):
        assert {"name": "repository", "mountPath": "/repository"} in container["volumeMounts"], container["name"]


def test_configmaps_read_by_the_pod_carry_a_checksum(ci_case: str) -> None:
    """A changed script must roll the pods; the annotation is the hash of the rendered ConfigMap."""
    files = render_files(case_values(ci_case))
    spec = pod_spec(render_case(ci_case))
    annotations = one(render_case(ci_case), "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    for volume in spec["volumes"]:
        if "configMap" not in volume:
            continue
        template = next(
            path
            for path, text in files.items()
            if "kind: ConfigMap" in text and f"name: {volume['configMap']['name']}\n" in text
        )
        digest = hashlib.sha256(files[template].encode()).hexdigest()
        assert digest in annotations.values(), f"no checksum for {template}"


def test_rollout_never_drops_capacity(ci_case: str) -> None:
    strategy = one(render_case(ci_case), "Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_topology_spread_over_nodes_and_zones() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    constraints = pod_spec(objects)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints:
        selector = constraint["labelSelector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_every_container_is_locked_down(ci_case: str) -> None:
    """Non-root, no capabilities, no privilege escalation, read-only root, RuntimeDefault seccomp."""
    objects = render_case(ci_case)
    pods = [pod_spec(objects)] + [o["spec"] for o in objects if o["kind"] == "Pod"]
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert "privileged" not in context
    assert not any(isinstance(v, dict) and "hostPath" in v for v in walk(objects))


def test_image_reference_prefers_the_digest() -> None:
    image = server_container(render_case("08-everything-on-values.yaml"))["image"]
    assert re.fullmatch(r"registry\.example\.com/vision/paddleclas-triton@sha256:[0-9a-f]{64}", image)
    default = server_container(render_case("01-default-gpu-values.yaml"))["image"]
    chart_meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    assert default == f"paddleclas-triton:{chart_meta['appVersion']}"


def test_server_pod_is_guaranteed_qos(ci_case: str) -> None:
    """Kubernetes grants Guaranteed QoS only if every container, init ones included, has requests
    equal to limits for CPU and memory; such pods are the last evicted under node pressure."""
    spec = pod_spec(render_case(ci_case))
    for container in spec["containers"] + spec.get("initContainers", []):
        resources = container["resources"]
        for key in ("cpu", "memory"):
            assert resources["requests"][key] == resources["limits"][key], (container["name"], key)
