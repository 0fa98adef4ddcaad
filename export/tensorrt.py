"""`python -m export NAME --trt` / `--ort-trt`: TensorRT for an exported production network.

The plan building itself is export/trt_plans.py, the module the Helm chart runs too; this file
only applies it to one model of a local repository, all or nothing: the network directory is
rebuilt in a staging copy and swapped in (model_repository.install), so a failed build, a refused
TensorRT version or a full disk leaves the served model as it was. Both paths take their
optimization profiles from the export's tensorrt.json, and plans their config from tensorrt.pbtxt
(model_repository/configs.py generates both); nothing here derives a profile or a config.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from catalog import ModelEntry
from export import trt_plans
from model_repository import configs, install

# Inside the tritonserver image, the TensorRT backend carries the server's libnvinfer.
SERVER_LIBNVINFER = ("/opt/tritonserver/backends/tensorrt/libnvinfer.so.*.*.*",)


@dataclass(frozen=True)
class PlanOptions:
    cache: Path
    precision: str = "fp16"
    workspace_mib: int = 4096
    server_version: str | None = None  # TensorRT of the tritonserver image that will load the plans


def _network_dir(entry: ModelEntry, repository: Path) -> Path:
    model = repository / configs.network_name(entry)
    if not (model / "config.pbtxt").is_file():
        raise trt_plans.PlanError(
            f"{model} does not exist: export {entry.name} with --variant production into {repository} first"
        )
    return model


def server_tensorrt_version(given: str | None) -> str:
    if given:
        return given
    try:
        return trt_plans.tensorrt_version(SERVER_LIBNVINFER)
    except trt_plans.PlanError:
        raise trt_plans.PlanError(
            "give --server-tensorrt-version: the TensorRT of the tritonserver image that will serve the plans "
            "(the X.Y.Z of libnvinfer.so.X.Y.Z in its /opt/tritonserver/backends/tensorrt/)"
        ) from None


def _link_tree(source: Path, target: Path) -> None:
    """Copy a model directory, hard-linking files (model.onnx is up to 1.2 GB) where the disk allows."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def build_plans(entry: ModelEntry, repository: Path, options: PlanOptions) -> Path:
    """Add this GPU's plan to `entry`'s network; returns the plan's path in the repository."""
    model = _network_dir(entry, repository)
    trt_plans.check_exported(model)  # an export without the TensorRT files cannot be built here or in the cluster
    trtexec = trt_plans.find_trtexec()  # then: without TensorRT, the cluster is the place to build
    server_version = server_tensorrt_version(options.server_version)
    builder_version = trt_plans.tensorrt_version(trt_plans.LIBNVINFER_GLOBS)
    if builder_version != server_version:
        raise trt_plans.PlanError(
            f"trtexec here is TensorRT {builder_version}, the server has {server_version}: a plan only loads on "
            "the TensorRT that built it; build inside the TensorRT image of the server's release"
        )
    gpu = trt_plans.query_gpu()
    print(f"{entry.name}: building a {options.precision} plan with {trtexec} for {gpu.name} (sm{gpu.capability})")
    with install.staging_dir(repository) as staging:
        staged = staging / model.name
        _link_tree(model, staged)  # add_plan writes new files, never through these links
        plan = trt_plans.add_plan(staged, options.cache, options.precision, options.workspace_mib, builder_version, gpu)
        trt_plans.check_plans(staged / "1", server_version)
        configs.parse_pbtxt((staged / "config.pbtxt").read_text("utf-8"))  # Triton's ModelConfig accepts it
        install.swap_in(staging, repository, [model.name])
    return model / "1" / plan.name


def use_ort_tensorrt(
    entry: ModelEntry, repository: Path, precision: str, engine_cache: str, workspace_mib: int
) -> None:
    """Switch `entry`'s onnxruntime network to ONNX Runtime's TensorRT execution provider (config only).

    The provider gets one profile spanning the export's TensorRT profiles (trt_plans.ort_profile).
    """
    model = _network_dir(entry, repository)
    config_path = model / "config.pbtxt"
    shapes = trt_plans.read_build(model).shapes
    text = trt_plans.to_ort_tensorrt(config_path.read_text("utf-8"), precision, engine_cache, workspace_mib, shapes)
    configs.parse_pbtxt(text)  # Triton's own ModelConfig message: a malformed rewrite stops here
    temporary = config_path.with_name(".config.pbtxt.tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, config_path)
