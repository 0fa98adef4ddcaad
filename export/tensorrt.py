"""`python -m export NAME --trt` / `--ort-trt`: TensorRT for an exported production network.

The plan building itself is export/trt_plans.py, the module the Helm chart runs too; this file
only applies it to one model of a local repository, all or nothing: the network directory is
rebuilt in a staging copy and swapped in (model_repository.install), so a failed build, a refused
TensorRT version or a full disk leaves the served model as it was. Neither path writes a config:
the plan's record (plans.json) or the --ort-trt choice (install.ORT_TENSORRT_RECORD) is what the
renderer (model_repository/layout.py) reads to render the network's config at the next start.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from catalog import ModelEntry
from export import trt_plans
from model_repository import configs, install, layout

PRECISIONS = trt_plans.PRECISIONS

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
    if not (model / install.EXPORT_RECORD).is_file() or install.installed_variant(model) != "production":
        raise trt_plans.PlanError(
            f"{model} is not a production network: export {entry.name} with --variant production into "
            f"{repository} first"
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
    trtexec = trt_plans.find_trtexec()  # without TensorRT, the cluster is the place to build
    server_version = server_tensorrt_version(options.server_version)
    builder_version = trt_plans.tensorrt_version(trt_plans.LIBNVINFER_GLOBS)
    if builder_version != server_version:
        raise trt_plans.PlanError(
            f"trtexec here is TensorRT {builder_version}, the server has {server_version}: a plan only loads on "
            "the TensorRT that built it; build inside the TensorRT image of the server's release"
        )
    gpu = trt_plans.query_gpu()
    print(f"{entry.name}: building a {options.precision} plan with {trtexec} for {gpu.name} (sm{gpu.capability})")
    profiles = trt_plans.check_profiles(configs.trt_profiles(entry), entry.name)
    with install.staging_dir(repository) as staging:
        staged = staging / model.name
        _link_tree(model, staged)  # add_plan writes new files, never through these links
        plan = trt_plans.add_plan(
            staged, options.cache, options.precision, options.workspace_mib, builder_version, gpu, profiles
        )
        trt_plans.check_plans(staged / "1", server_version)
        install.write_ort_tensorrt(staged, None)  # plans win over an earlier --ort-trt
        plan_files = layout.plan_files(staged)
        assert plan_files is not None
        configs.to_pbtxt(configs.tensorrt_network_config(entry, plan_files))  # Triton's ModelConfig accepts it
        install.swap_in(staging, repository, [model.name])
    return model / "1" / plan.name


def use_ort_tensorrt(
    entry: ModelEntry, repository: Path, precision: str, engine_cache: str, workspace_mib: int
) -> None:
    """Serve `entry`'s onnxruntime network through ONNX Runtime's TensorRT execution provider from the next start.

    Records the choice beside the network (install.write_ort_tensorrt); the renderer builds the config
    (configs.ort_tensorrt_network_config), here once as a check.
    """
    model = _network_dir(entry, repository)
    if layout.plan_files(model) is not None:
        raise trt_plans.PlanError(f"{model} is served from TensorRT plans: --ort-trt applies to onnxruntime networks")
    if precision not in PRECISIONS:
        raise trt_plans.PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    trt_plans.onnx_file(model / "1", precision)  # the FP16 network must be there: exports before it lack it
    choice = configs.OrtTensorrt(precision, engine_cache, workspace_mib)  # type: ignore[arg-type]
    record = install.read_record(model)
    configs.to_pbtxt(
        configs.ort_tensorrt_network_config(
            entry, trt_plans.ONNX_FILES[precision], choice, gpu_mem_limit=install.gpu_mem_limit(record)
        )
    )
    install.write_ort_tensorrt(model, choice)
