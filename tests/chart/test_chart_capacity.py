"""Model selection and capacity: the render-repository init container, its flags, and what it writes.

The chart cannot run its init container here, so the rendered command itself is run: against a
repository installed by model_repository.install (placeholder networks: nothing here runs one),
with the project code copied the way helm/image/Dockerfile copies it, under the PYTHONPATH the
chart sets. What it writes must be what the values asked for.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART_DIR,
    case_values,
    flags,
    image_code_tree,
    init_container,
    init_containers,
    listed_after,
    pod_spec,
    render,
    render_case,
    server_container,
)

import catalog
from model_repository import configs, install
from model_repository.health import MARKER
from tests.support.records import placeholder_record

RENDER = "render-repository"
SERVING_COPY = "/repository/models"
MOUNTED_SOURCES = ("image", "pvc", "nfs")


def values_file() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))


def merged(case: str) -> dict[str, Any]:
    """values.yaml with the case's overrides, merged the way Helm merges maps (enough for these keys)."""

    def merge(base: dict, override: dict) -> dict:
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return out

    return merge(values_file(), case_values(case))


def cores_of(cpu: str | float) -> int:
    """A Kubernetes CPU quantity rounded up to whole cores ("4000m" -> 4, 1.5 -> 2)."""
    text = str(cpu)
    return math.ceil(int(text[:-1]) / 1000) if text.endswith("m") else math.ceil(float(text))


def source_of(case: str) -> str:
    return merged(case)["modelRepository"]["source"]


def test_render_runs_first_wherever_the_repository_is_mounted(ci_case: str) -> None:
    objects = render_case(ci_case)
    server = server_container(objects)
    repository_flag = flags(server["args"])["--model-repository"]
    volumes = {v["name"] for v in pod_spec(objects)["volumes"]}
    if source_of(ci_case) == "objectStorage":
        # Triton reads the bucket itself, as installed: nothing to render, nothing to mount.
        assert init_containers(objects) == []
        assert re.match(r"^(s3|gs|as)://", repository_flag)
        assert "repository" not in volumes
        return
    first = init_containers(objects)[0]
    assert first["name"] == RENDER
    assert first["image"] == server["image"], "the render step runs the code baked into the server image"
    assert first["command"][0] in ("python3", "/bin/sh")
    assert "-m model_repository render" in " ".join(first["command"])
    assert flags(first["args"])["--out"] == SERVING_COPY == repository_flag
    served = next(m for m in server["volumeMounts"] if m["name"] == "repository")
    assert served == {"name": "repository", "mountPath": "/repository", "readOnly": True}


def test_render_cores_are_the_server_cpu_limit(ci_case: str) -> None:
    """--cores is capacity.cores, or the server container's own CPU limit rounded up (not the init container's)."""
    objects = render_case(ci_case)
    if source_of(ci_case) == "objectStorage":
        return
    given = merged(ci_case)["capacity"]["cores"]
    limit = server_container(objects)["resources"]["limits"]["cpu"]
    expected = given or cores_of(limit)
    render_container = init_container(objects, RENDER)
    assert flags(render_container["args"])["--cores"] == str(expected)


@pytest.mark.parametrize(
    ("cpu", "cores"),
    [("4", 4), (4, 4), ("4000m", 4), ("1.5", 2), (1.5, 2), ("1500m", 2), ("100m", 1), ("24", 24), (0.5, 1)],
)
def test_cpu_limit_forms_round_up_to_whole_cores(cpu: str | float, cores: int) -> None:
    values = {"resources": {"gpu": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}}
    args = init_container(render(values), RENDER)["args"]
    assert flags(args)["--cores"] == str(cores) == str(cores_of(cpu))


def test_capacity_cores_wins_over_the_limit() -> None:
    args = init_container(render({"capacity": {"cores": 40}}), RENDER)["args"]
    assert flags(args)["--cores"] == "40"


def test_models_and_explicit_counts_reach_the_render_step() -> None:
    case = "10-models-capacity-values.yaml"
    objects = render_case(case)
    args = init_container(objects, RENDER)["args"]
    wanted = case_values(case)
    assert listed_after(args, "--models") == wanted["models"]
    given = flags(args)
    assert given["--cores"] == "12"  # limits.cpu 12000m
    assert given["--preprocess-instances"] == str(wanted["capacity"]["preprocessInstances"])
    assert given["--pixels-preprocess-instances"] == str(wanted["capacity"]["pixelsPreprocessInstances"])
    assert given["--postprocess-instances"] == str(wanted["capacity"]["postprocessInstances"])
    assert given["--network-gpu-instances"] == "2"
    assert given["--preprocess-queue"] == str(wanted["capacity"]["preprocessQueue"])
    # Counts left at 0 are resolved from the cores by the layout, so they are not passed at all.
    assert "--network-cpu-instances" not in given and "--network-cpu-threads" not in given


def test_defaults_pass_the_default_models_the_cores_and_the_gpu_instances() -> None:
    args = init_container(render_case("01-default-gpu-values.yaml"), RENDER)["args"]
    assert listed_after(args, "--models") == values_file()["models"], "the models that fit the default GPU"
    assert set(flags(args)) == {"--repository", "--out", "--models", "--cores", "--network-gpu-instances"}
    assert flags(args)["--network-gpu-instances"] == str(values_file()["capacity"]["networkGpuInstances"]) == "1"


def test_cpu_mode_passes_the_portable_network_counts() -> None:
    args = init_container(render_case("11-cpu-capacity-values.yaml"), RENDER)["args"]
    given = flags(args)
    assert given["--cores"] == "2"  # limits.cpu 1.5
    assert (given["--network-cpu-instances"], given["--network-cpu-threads"]) == ("2", "1")
    assert "--network-gpu-instances" not in given, "no GPU instance group in the portable repository"
    assert listed_after(args, "--models") == ["NextViT_small_224"]


def test_render_container_is_small_guaranteed_and_finds_the_code() -> None:
    objects = render_case("01-default-gpu-values.yaml")
    container = init_container(objects, RENDER)
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]
    assert cores_of(resources["limits"]["cpu"]) <= 1
    assert re.fullmatch(r"\d+Mi", resources["limits"]["memory"]) and int(resources["limits"]["memory"][:-2]) <= 1024
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTHONPATH"] == "/opt/paddleclas"
    # Only the render step: the served models import the preprocess package of their own directory.
    assert "PYTHONPATH" not in {e["name"] for e in server_container(objects)["env"]}


def test_every_reader_of_the_copy_sees_what_it_links_to(ci_case: str) -> None:
    """The copy links into the installed repository by absolute path: every container reading it must see that path."""
    objects = render_case(ci_case)
    if source_of(ci_case) == "objectStorage":
        return
    render_container = init_container(objects, RENDER)
    models_mount = [m for m in render_container["volumeMounts"] if m["name"] == "models"]
    readers = [server_container(objects)] + [
        c for c in init_containers(objects) if any(m["name"] == "repository" for m in c["volumeMounts"])
    ]
    for container in readers:
        if source_of(ci_case) in ("pvc", "nfs"):
            assert models_mount and models_mount[0] in container["volumeMounts"], container["name"]
        elif container["image"] != render_container["image"]:
            # The image source: another image (TensorRT) cannot see /models; the render step copies for it.
            assert container["name"] == "build-trt-plans"
            assert render_container["command"][:2] == ["/bin/sh", "-ec"]
            assert "cp --remove-destination" in render_container["command"][2]


# --- the rendered command, run ------------------------------------------------------------------


@pytest.fixture
def image_code(tmp_path: Path) -> Path:
    """The project code as the image holds it: only what the Dockerfile copies under /opt/paddleclas."""
    return image_code_tree(tmp_path / "opt-paddleclas")


def installed(root: Path, variant: configs.Variant, names: list[str]) -> Path:
    """``root/<variant>`` with `names` installed around a placeholder network file."""
    root.mkdir(parents=True, exist_ok=True)
    network = root / "placeholder.onnx"
    network.write_bytes(b"placeholder network")
    for name in names:
        install.install(catalog.get(name), network, placeholder_record(catalog.get(name)), root / variant, variant)
    return root / variant


def run_render(container: dict, source: Path, volume: Path, code: Path, cwd: Path) -> dict:
    """Run the init container's command here, its paths mapped to local ones; returns the layout's summary."""
    chart_source = flags(container["args"])["--repository"]

    def local(word: str) -> str:
        if word == "python3":
            return sys.executable
        word = word.replace("python3 -m model_repository render", f"{sys.executable} -m model_repository render")
        return word.replace("/repository", str(volume)).replace(chart_source, str(source))

    command = [local(word) for word in container["command"] + container["args"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for variable in container["env"]:
        env[variable["name"]] = variable["value"].replace("/opt/paddleclas", str(code))
    env["HOME"] = str(cwd)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((volume / "models" / MARKER).read_text())


def served_count(target: Path, name: str) -> int:
    config = configs.parse_pbtxt((target / name / "config.pbtxt").read_text())
    return config.instance_group[0].count


def test_rendered_command_writes_the_models_and_counts_asked_for(tmp_path: Path, image_code: Path) -> None:
    case = "10-models-capacity-values.yaml"
    container = init_container(render_case(case), RENDER)
    source = installed(
        tmp_path / "installed", "production", ["ViT_base_patch16_224", "ViT_base_patch16_384", "NextViT_small_224"]
    )
    volume, cwd = tmp_path / "volume", tmp_path / "cwd"
    volume.mkdir()
    cwd.mkdir()
    summary = run_render(container, source, volume, image_code, cwd)
    vit224, vit384 = catalog.get("ViT_base_patch16_224"), catalog.get("ViT_base_patch16_384")
    assert summary["models"] == sorted([vit224.triton_name, vit384.triton_name]), "NextViT is installed, not served"
    assert summary["cores"] == 12
    capacity = case_values(case)["capacity"]
    target = volume / "models"
    assert served_count(target, configs.preprocess_name(vit224)) == capacity["preprocessInstances"]
    assert served_count(target, configs.pixels_preprocess_name(vit384)) == capacity["pixelsPreprocessInstances"]
    assert served_count(target, configs.postprocess_name()) == capacity["postprocessInstances"]
    assert served_count(target, configs.network_name(vit384)) == capacity["networkGpuInstances"]
    step = configs.parse_pbtxt((target / configs.preprocess_name(vit224) / "config.pbtxt").read_text())
    queue = step.dynamic_batching.default_queue_policy.max_queue_size
    assert queue == capacity["preprocessInstances"] * capacity["preprocessQueue"]
    assert not (target / catalog.get("NextViT_small_224").triton_name).exists()
    # The step's code is the image's; the installed data is linked (the repository is mounted at the same path).
    step = target / configs.preprocess_name(vit224)
    model_py = step / "1" / "model.py"
    assert model_py.read_bytes() == (image_code / "model_repository" / "python_models" / "preprocess.py").read_bytes()
    assert (step / "warmup").is_symlink() and (step / "warmup").resolve().is_relative_to(source.resolve())


def test_rendered_command_sizes_the_portable_network(tmp_path: Path, image_code: Path) -> None:
    container = init_container(render_case("11-cpu-capacity-values.yaml"), RENDER)
    source = installed(tmp_path / "installed", "portable", ["NextViT_small_224"])
    volume, cwd = tmp_path / "volume", tmp_path / "cwd"
    volume.mkdir()
    cwd.mkdir()
    summary = run_render(container, source, volume, image_code, cwd)
    entry = catalog.get("NextViT_small_224")
    network = configs.parse_pbtxt((volume / "models" / configs.network_name(entry) / "config.pbtxt").read_text())
    assert network.instance_group[0].count == 2
    assert network.parameters["intra_op_threads"].string_value == "1"
    assert summary["layout"]["preprocess_instances"] == 2  # one per core of the 1.5-CPU limit, rounded up


def test_image_source_with_plans_copies_the_network_files(tmp_path: Path, image_code: Path) -> None:
    """The TensorRT image cannot see the server image's /models: the networks' files must be real files."""
    container = init_container(render_case("05-trt-plans-values.yaml"), RENDER)
    source = installed(tmp_path / "installed", "production", merged("05-trt-plans-values.yaml")["models"])
    volume, cwd = tmp_path / "volume", tmp_path / "cwd"
    volume.mkdir()
    cwd.mkdir()
    summary = run_render(container, source, volume, image_code, cwd)
    assert summary["tensorrt_plans"] == merged("05-trt-plans-values.yaml")["trtPlans"]["precision"]
    entry = catalog.get("NextViT_small_224")
    network = volume / "models" / configs.network_name(entry)
    assert configs.parse_pbtxt((network / "config.pbtxt").read_text()).default_model_filename == "model.plan"
    onnx = network / "1" / "model.onnx"
    assert onnx.is_file() and not onnx.is_symlink() and onnx.read_bytes() == b"placeholder network"
    assert not any(path.is_symlink() and path.is_file() for path in network.rglob("*")), "a network file left linked"
    # The other steps keep their links: only tritonserver, in the server image, reads them.
    assert (volume / "models" / configs.preprocess_name(entry) / "warmup").is_symlink()
    assert (source / configs.network_name(entry) / "1" / "model.onnx").is_file(), "the source is untouched"


# --- pinned memory --------------------------------------------------------------------------------


def test_pinned_pool_default_holds_the_largest_batch_of_two_instances() -> None:
    """The default covers configs.pinned_pool_bytes for every catalog model with 2 GPU instances per network."""
    default_mib = values_file()["server"]["pinnedMemoryPoolMiB"]
    needed = configs.pinned_pool_bytes(list(catalog.CATALOG.values()), 2)
    assert default_mib << 20 >= needed, f"{default_mib} MiB < {needed / (1 << 20):.0f} MiB"
    # The comment's arithmetic is the function's: 2 in flight x 2 instances x 128 x (384*384*3 + 4,000) B.
    largest = max(entry.input_size for entry in catalog.CATALOG.values())
    raw = 2 * 2 * configs.GPU_MAX_BATCH_SIZE * (largest * largest * 3 + 1000 * 4)
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    assert f"{raw:,} B = {math.ceil(raw / (1 << 20))} MiB" in text
    assert f"x {configs.GPU_MAX_BATCH_SIZE} images x ({largest}*{largest}*3" in text
    assert values_file()["capacity"]["networkGpuInstances"] <= 2


@pytest.mark.parametrize(
    "case", ["01-default-gpu-values.yaml", "10-models-capacity-values.yaml", "02-cpu-dev-values.yaml"]
)
def test_pinned_pool_flag_in_gpu_mode_only(case: str) -> None:
    given = flags(server_container(render_case(case))["args"])
    if merged(case)["mode"] == "cpu":
        assert "--pinned-memory-pool-byte-size" not in given
    else:
        assert given["--pinned-memory-pool-byte-size"] == str(merged(case)["server"]["pinnedMemoryPoolMiB"] << 20)
