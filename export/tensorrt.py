"""`python -m export NAME --trt` / `--ort-trt`: TensorRT for an exported production network.

The plan building itself is export/trt_plans.py, the module the Helm chart runs too; this file
only applies it to one model of a local repository, all or nothing: the network directory is
rebuilt in a staging copy and swapped in (model_repository.install), so a failed build, a refused
TensorRT version or a full disk leaves the served model as it was. Both paths take their
optimization profiles from the export's tensorrt.json, and plans their config from tensorrt.pbtxt
(model_repository/configs.py generates both).

The no-build path (`--ort-trt`, ONNX Runtime's TensorRT execution provider) runs only here, where
protobuf is: it edits the network's config as Triton's ModelConfig message, never as text.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

import catalog
from catalog import ModelEntry
from export import trt_plans
from model_repository import configs, install

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


def _format_spec(shapes: dict[str, list[int]]) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in shapes.items())


def ort_profile(shapes: Sequence[str]) -> dict[str, str]:
    """One profile for ONNX Runtime's TensorRT provider that covers the batches of all of trtexec's profiles.

    ONNX Runtime does parse several profiles from trt_profile_{min,opt,max}_shapes (an input named
    more than once; tensorrt_execution_provider.cc, ParseProfileShapes) and builds them into the
    engine, but its execution context stays on profile 0, so a batch outside profile 0 fails
    (microsoft/onnxruntime#31624, open, adds the switching; ORT 1.19 of Triton 24.10 lacks it). So
    the provider gets a single profile: the smallest minimum, the largest maximum, and the optimum
    of the profile with the widest batch range (the saturating traffic, where throughput is decided).
    """
    triples = [[trt_plans.shape_spec(flag) for flag in triple] for triple in trt_plans.profile_triples(shapes)]
    ranks = {name: len(dims) for name, dims in triples[0][0].items()}
    if any({name: len(dims) for name, dims in spec.items()} != ranks for triple in triples for spec in triple):
        message = f"trtexec shapes {list(shapes)} do not give the same inputs and ranks in every profile"
        raise trt_plans.PlanError(message)

    def batch_range(triple: list[dict[str, list[int]]]) -> int:
        return max(dims[0] for dims in triple[2].values()) - min(dims[0] for dims in triple[0].values())

    widest = max(triples, key=batch_range)
    low = {name: [min(sizes) for sizes in zip(*(t[0][name] for t in triples), strict=True)] for name in ranks}
    high = {name: [max(sizes) for sizes in zip(*(t[2][name] for t in triples), strict=True)] for name in ranks}
    return {
        "trt_profile_min_shapes": _format_spec(low),
        "trt_profile_opt_shapes": _format_spec(widest[1]),
        "trt_profile_max_shapes": _format_spec(high),
    }


def to_ort_tensorrt(config: str, precision: str, engine_cache: str, workspace_mib: int, shapes: Sequence[str]) -> str:
    """The production onnxruntime config with ONNX Runtime's TensorRT execution provider as its accelerator.

    `config` is the production onnxruntime config.pbtxt (or one this function wrote: its
    optimization and model file are replaced); `shapes` are the network's trtexec shape flags
    (tensorrt.json), turned into the provider's one profile (ort_profile). Engines are built when
    the model loads and cached in ``engine_cache`` (keep it on a volume so restarts reuse them),
    and the timing cache shares tactic timings between models.

    The precision is the model file's (trt_plans.ONNX_FILES: FP16 serves model.fp16.onnx, the export's
    mixed-precision network with LayerNorm and Softmax in FP32), never a provider flag:
    `trt_fp16_enable` (the backend's precision_mode FP16) sets TensorRT's FP16 builder flag, which
    TensorRT 11 removed, and `trt_layer_norm_fp32_fallback` only acts together with it (ONNX
    Runtime's tensorrt_execution_provider.cc reads it only when fp16_enable is set).
    """
    message = configs.parse_pbtxt(config)
    if message.backend != "onnxruntime":
        expected = 'expected backend: "onnxruntime" in a *_network config.pbtxt (the production variant)'
        raise trt_plans.PlanError(expected)
    if precision not in PRECISIONS:
        raise trt_plans.PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    message.ClearField("optimization")
    message.default_model_filename = trt_plans.ONNX_FILES[precision]
    message.parameters[configs.PRECISION_PARAMETER].string_value = precision  # the smoke check's tolerance
    _price_queue(message, ("onnxruntime_tensorrt", precision))
    accelerator = message.optimization.execution_accelerators.gpu_execution_accelerator.add()
    accelerator.name = "tensorrt"
    accelerator.parameters.update(
        {
            "max_workspace_size_bytes": str(workspace_mib << 20),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": engine_cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": engine_cache,
            **ort_profile(shapes),
        }
    )
    return text_format.MessageToString(message)


def _price_queue(message: configs.model_config_pb2.ModelConfig, runtime: configs.GpuRuntime) -> None:
    """The network's queue and timeout for the provider's rate (configs.gpu_ms_per_image), not the CUDA provider's."""
    entry = catalog.get(message.name.removesuffix("_network"))
    instances = sum(group.count for group in message.instance_group)
    policy = message.dynamic_batching.default_queue_policy
    policy.max_queue_size = configs.max_queue_size("network", instances, True, entry, runtime)
    policy.default_timeout_microseconds = configs.network_timeout_us(entry, runtime)


def use_ort_tensorrt(
    entry: ModelEntry, repository: Path, precision: str, engine_cache: str, workspace_mib: int
) -> None:
    """Switch `entry`'s onnxruntime network to ONNX Runtime's TensorRT execution provider (config only).

    The provider gets one profile spanning the export's TensorRT profiles (ort_profile).
    """
    model = _network_dir(entry, repository)
    config_path = model / "config.pbtxt"
    shapes = trt_plans.read_build(model).shapes
    trt_plans.onnx_file(model / "1", precision)  # the FP16 network must be there: exports before it lack it
    text = to_ort_tensorrt(config_path.read_text("utf-8"), precision, engine_cache, workspace_mib, shapes)
    temporary = config_path.with_name(".config.pbtxt.tmp")
    temporary.write_text(text, "utf-8")
    os.replace(temporary, config_path)
