"""TensorRT plans for the production repository, built by trtexec on the GPU that will serve them.

One module, two callers, so plan building has one implementation:

* `python -m export NAME --trt` (export/tensorrt.py) on a machine with TensorRT, typically inside
  nvcr.io/nvidia/tensorrt:26.09-py3 (the TensorRT of the 26.09 tritonserver image);
* the Helm chart's init containers: `stage` runs in the server image, which ships this file as
  /opt/paddleclas/export/trt_plans.py (helm/image/Dockerfile), and puts a copy of it on the pod's
  shared volume; `build` runs that copy in the TensorRT image, which has neither this project nor
  protobuf. Hence: standard library only, Python 3.10.

The builder writes no config: the renderer (model_repository/layout.py) writes each network's
TensorRT config, naming the plan files, and `tensorrt.json` beside it, the optimization profiles as
shapes ({"profiles": [{"min": {"CROPS": [1, 224, 224, 3]}, "opt": ..., "max": ...}, ...]}). This
builder formats trtexec's flags from those numbers, runs trtexec, and records each plan.

A plan runs only on the TensorRT version and GPU architecture that built it. So each plan is
recorded beside itself (`plans.json`: TensorRT version, GPU, compute capability, precision, ONNX
digest, profiles), a model may hold one plan per compute capability, and a plan whose recorded
TensorRT version differs from the server's is refused.

TensorRT cannot run on the project's own machines; the tests run this code against a recording
stand-in for trtexec, which checks the arguments and configs, never the numerics of a plan.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

MODELS_DIR = "models"
VERSION_FILE = "server-tensorrt-version"
PLANS_RECORD = "plans.json"
DEFAULT_PLAN = "model.plan"
PRECISIONS = ("fp16", "fp32")
# The network each precision builds from, both written by the export beside each other in the
# production network's version directory (export/fp16.py writes the FP16 one). TensorRT 11 has no
# precision builder flags: a plan's precision is its ONNX file's, built strongly typed.
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
# trtexec's build flags, besides the profiles; every one is documented by trtexec of TensorRT 10.12+
# and 11.x alike (tests/chart/test_trt_plans.py holds both lists, from samples/common/sampleOptions.cpp).
# --stronglyTyped: TensorRT 10 builds the types the ONNX graph carries (NetworkDefinitionCreationFlag
# kSTRONGLY_TYPED); TensorRT 11 always does and keeps the flag as a no-op.
STRONGLY_TYPED = "--stronglyTyped"
TENSORRT_BUILD = "tensorrt.json"  # the profiles as shapes, written by the renderer beside each production network
SHAPE_FLAGS = {"min": "--minShapes", "opt": "--optShapes", "max": "--maxShapes"}  # trtexec's order within a profile
SERVING_MARKER = ".serving-copy.json"  # model_repository/health.py's MARKER; this file imports nothing of the project
BUILDER_FILE = "trt_plans.py"  # the copy `stage` leaves on the shared volume for `build`
# Where libnvinfer lives in NVIDIA's images; the file name carries the full version.
LIBNVINFER_GLOBS = (
    "/usr/lib/*-linux-gnu/libnvinfer.so.*.*.*",
    "/usr/local/tensorrt/lib/libnvinfer.so.*.*.*",
    "/opt/tritonserver/backends/tensorrt/libnvinfer.so.*.*.*",
)
TRTEXEC_FALLBACKS = ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec")
NO_TRTEXEC = (
    "trtexec not found: TensorRT runs only in NVIDIA's images on a GPU. In the cluster, install the "
    "Helm chart with trtPlans.enabled=true (plans are built at pod start on the serving GPU, in "
    "nvcr.io/nvidia/tensorrt:26.09-py3), or run `python -m export NAME --trt` inside that image with "
    "the repository mounted; `--ort-trt` needs no trtexec (ONNX Runtime builds engines at load time)"
)


class PlanError(RuntimeError):
    """A condition that must stop before tritonserver starts on a wrong repository."""


@dataclass(frozen=True)
class Gpu:
    name: str  # e.g. "NVIDIA L4"
    capability: str  # compute capability, e.g. "8.9" (the key Triton's cc_model_filenames uses)

    @property
    def key(self) -> str:
        """Cache key part: name and capability, e.g. ``NVIDIA-L4-sm8.9``."""
        return f"{re.sub(r'[^A-Za-z0-9.]+', '-', self.name)}-sm{self.capability}"


def tensorrt_version(patterns: tuple[str, ...] = LIBNVINFER_GLOBS) -> str:
    """Full TensorRT version (e.g. ``10.5.0``) read from the libnvinfer file name."""
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            match = re.search(r"libnvinfer\.so\.(\d+\.\d+\.\d+)$", path)
            if match:
                return match.group(1)
    raise PlanError(f"no libnvinfer.so.X.Y.Z under {', '.join(patterns)}")


def query_gpu(nvidia_smi: str = "nvidia-smi") -> Gpu:
    """Name and compute capability of the first GPU."""
    command = [nvidia_smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise PlanError(f"nvidia-smi failed ({error}): plans are built on the GPU that will serve them") from error
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise PlanError("nvidia-smi lists no GPU: does the container have nvidia.com/gpu?")
    name, capability = (part.strip() for part in lines[0].split(",", 1))
    return Gpu(name, capability)


# --- the profiles: tensorrt.json -----------------------------------------------------------------

Shapes = dict[str, list[int]]  # input name -> dims, batch first
Profile = dict[str, Shapes]  # "min", "opt", "max" -> shapes


def _not_rendered_for_tensorrt(model: Path) -> PlanError:
    return PlanError(
        f"{model / TENSORRT_BUILD} does not exist: {model.name} is not a production network of a serving copy "
        "(python -m model_repository render writes it beside every production network)"
    )


@dataclass(frozen=True)
class TensorrtBuild:
    """A network's optimization profiles, as the shapes of its inputs."""

    profiles: tuple[Profile, ...]

    @property
    def key(self) -> str:
        """Cache key part: a plan built for other profiles never serves this config."""
        return hashlib.sha256(json.dumps(self.profiles, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def batches(self) -> list[list[int]]:
        """(min, opt, max) batch of each profile: the first dimension of its inputs."""
        return [[next(iter(profile[key].values()))[0] for key in SHAPE_FLAGS] for profile in self.profiles]


def check_profiles(profiles: object, where: str) -> TensorrtBuild:
    """`profiles` as a TensorrtBuild, refused unless every profile gives min, opt and max for the same inputs."""
    try:
        checked = tuple(
            {
                key: {str(name): [int(size) for size in dims] for name, dims in profile[key].items()}
                for key in SHAPE_FLAGS
            }
            for profile in profiles  # type: ignore[union-attr]
        )
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise PlanError(f"{where}: profiles are not min/opt/max shapes ({error!r}); render the copy again") from error
    for profile in checked:
        ranks = [{name: len(dims) for name, dims in profile[key].items()} for key in SHAPE_FLAGS]
        batches = {len({dims[0] for dims in profile[key].values()}) for key in SHAPE_FLAGS}
        if not ranks[0] or ranks.count(ranks[0]) != len(ranks) or batches != {1}:
            raise PlanError(f"{where}: profile {profile} does not give one batch to the same inputs at min, opt, max")
    if not checked:
        raise PlanError(f"{where}: no optimization profile")
    return TensorrtBuild(checked)


def read_build(model: Path) -> TensorrtBuild:
    """The profiles the renderer wrote for `model` (a ``*_network`` directory), checked."""
    path = model / TENSORRT_BUILD
    if not path.is_file():
        raise _not_rendered_for_tensorrt(model)
    try:
        profiles = json.loads(path.read_text(encoding="utf-8"))["profiles"]
    except (ValueError, KeyError, TypeError) as error:
        raise PlanError(f"{path} is not a TensorRT build record ({error!r}); render the copy again") from error
    return check_profiles(profiles, str(path))


def profile_arguments(build: TensorrtBuild) -> list[str]:
    """trtexec's arguments for each optimization profile: ``--profile=N`` and its three shape flags.

    TensorRT 10's trtexec (`trtexec --help` of 10.5, Build Options; samples/common/sampleOptions.cpp,
    getOptimizationProfiles) takes a profile's shape flags from the positions right after its
    --profile=N and refuses repeated shape flags without --profile, so each --profile=N is followed
    directly by its own three flags (``--minShapes=CROPS:1x224x224x3``, inputs comma-separated).
    """
    arguments = []
    for index, profile in enumerate(build.profiles):
        arguments.append(f"--profile={index}")
        for key, flag in SHAPE_FLAGS.items():
            spec = ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in profile[key].items())
            arguments.append(f"{flag}={spec}")
    return arguments


# --- plans and their record ---------------------------------------------------------------------


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def find_trtexec() -> str:
    """trtexec from PATH, else where NVIDIA's TensorRT images keep it."""
    found = shutil.which("trtexec") or next((p for p in TRTEXEC_FALLBACKS if os.access(p, os.X_OK)), None)
    if not found:
        raise PlanError(NO_TRTEXEC)
    return found


def onnx_file(version_dir: Path, precision: str) -> Path:
    """The network a plan of `precision` is built from: model.onnx, or the export's FP16 model.fp16.onnx."""
    if precision not in PRECISIONS:
        raise PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    path = version_dir / ONNX_FILES[precision]
    if not path.is_file():
        raise PlanError(
            f"{path} does not exist: an {precision} plan is built from it, and exports of this checkout with "
            "--variant production write it beside model.onnx; re-export the model (or choose the other precision)"
        )
    return path


def trtexec_command(
    trtexec: str,
    onnx: Path,
    engine: Path,
    build: TensorrtBuild,
    workspace_mib: int,
    timing_cache: Path | None = None,
) -> list[str]:
    """The trtexec build command: strongly typed, one optimization profile per profile of `build`.

    No precision flag: TensorRT 11's trtexec refuses --fp16, --int8, --best (they no longer parse),
    so the plan's precision is that of `onnx` (onnx_file), built with --stronglyTyped, which
    TensorRT 10 has too (since 10.0; samples/common/sampleOptions.cpp of v10.12.0 and v11.1).

    No --inputIOFormats: the network input is the uint8 NHWC crops, and trtexec (TensorRT 8.6 and
    10, sampleEngines.cpp, setupNetworkAndConfig) leaves a UINT8 input of the ONNX as it is, in the
    linear format, when the flag is absent; the flag would instead force its type and format on
    every input. Linear is the crops' layout: "hwc" would be TensorRT's channel-last storage of a
    tensor it reads as NCHW (S channels here). TensorRT's DataType documentation: uint8 network
    inputs are converted to float32/float16 before other layers, which the graph's own Cast does.
    """
    command = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *profile_arguments(build)]
    command += [f"--memPoolSize=workspace:{workspace_mib}M", "--skipInference", STRONGLY_TYPED]
    if timing_cache is not None:
        command.append(f"--timingCacheFile={timing_cache}")
    return command


def build_one(
    onnx: Path,
    plan: Path,
    build: TensorrtBuild,
    workspace_mib: int,
    trtexec: str,
    timing_cache: Path | None = None,
) -> None:
    """Run trtexec into a temporary file, then rename, so a shared cache never holds half a plan."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=plan.parent, suffix=".partial")
    os.close(handle)
    command = trtexec_command(trtexec, onnx, Path(partial), build, workspace_mib, timing_cache)
    print("running", " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True)
        if os.path.getsize(partial) == 0:
            raise PlanError(f"trtexec wrote an empty plan for {onnx}")
        os.replace(partial, plan)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _replace(path: Path, text: str) -> None:
    """Write a new file and rename it over `path`: never writes through a hard or symbolic link to another tree."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def plan_filename(gpu: Gpu) -> str:
    return f"model_sm{gpu.capability.replace('.', '')}.plan"


def read_record(version_dir: Path) -> dict:
    path = version_dir / PLANS_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"plans": {}}


def check_plans(version_dir: Path, server_version: str) -> None:
    """Refuse plans built by another TensorRT than the server's, and plans nobody recorded."""
    plans = read_record(version_dir)["plans"]
    recorded = {entry["file"] for entry in plans.values()}
    for path in sorted(version_dir.glob("*.plan")):
        if path.name not in recorded:
            raise PlanError(f"{path}: no {PLANS_RECORD} entry says which TensorRT built it; rebuild it")
    for capability, entry in sorted(plans.items()):
        if entry["tensorrt"] != server_version:
            raise PlanError(
                f"{version_dir / entry['file']} (sm{capability}) was built by TensorRT {entry['tensorrt']}, "
                f"the server has {server_version}: a plan only loads on the TensorRT that built it; rebuild it "
                "with the TensorRT image of the server's release"
            )


def add_plan(
    model: Path,
    cache: Path,
    precision: str,
    workspace_mib: int,
    builder_version: str,
    gpu: Gpu,
    build: TensorrtBuild,
    filename: str | None = None,
) -> Path:
    """Give `model` (a ``*_network`` directory holding 1/model.onnx) a plan for `gpu`, built or from the cache.

    trtexec gets the ONNX file of `precision` (onnx_file) and `build`'s profiles. The plan is
    recorded in ``1/plans.json`` beside those of other GPUs, and becomes the record's default.
    """
    version_dir = model / "1"
    if not (version_dir / ONNX_FILES["fp32"]).is_file():
        raise PlanError(
            f"{version_dir / ONNX_FILES['fp32']} does not exist: export the model with --variant production first"
        )
    check_plans(version_dir, builder_version)  # plans of another TensorRT cannot sit beside this one
    onnx = onnx_file(version_dir, precision)
    key = cache / gpu.key / f"trt-{builder_version}-{precision}"
    digest = file_digest(onnx)
    # The ONNX digest and the profiles are part of the name: a re-exported network, or one with other
    # profiles, never picks up an old plan.
    cached = key / f"{model.name}-{digest}-{build.key}.plan"
    if cached.is_file():
        print(f"{model.name}: plan from cache {cached}", flush=True)
    else:
        build_one(onnx, cached, build, workspace_mib, find_trtexec(), key / "timing.cache")
    filename = filename or plan_filename(gpu)
    (version_dir / filename).unlink(missing_ok=True)  # a new file, not a write through a link
    shutil.copyfile(cached, version_dir / filename)
    record = read_record(version_dir)
    record["plans"][gpu.capability] = {
        "file": filename,
        "tensorrt": builder_version,
        "gpu": gpu.name,
        "precision": precision,
        "onnx": onnx.name,
        "onnx_sha256_16": digest,
        "profiles": build.batches,
        "shapes": list(build.profiles),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record["default"] = gpu.capability
    _replace(version_dir / PLANS_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return version_dir / filename


# --- the chart's init containers ------------------------------------------------------------------


def stage(target: Path, server_version: str | None) -> None:
    """Check the serving copy in ``target/models``, record the server's TensorRT version, leave the builder there.

    ``target/models`` is the serving copy the render step wrote (python -m model_repository render).
    It must have been rendered for plans of some precision (--tensorrt-plans), every network that
    still has its ONNX file must carry its profiles, and every plan already present must come from
    the server's TensorRT. This file is copied to
    ``target/trt_plans.py``, outside the models, for `build` in the TensorRT image, which has no
    project code of its own.
    """
    models = target / MODELS_DIR
    if not models.is_dir():
        raise PlanError(
            f"{models} does not exist: render the serving copy there first "
            f"(python -m model_repository render --out {models} --tensorrt-plans PRECISION)"
        )
    rendered_precision(models)
    version = server_version or tensorrt_version()
    for model in sorted(models.glob("*_network")):
        if (model / "1" / "model.onnx").is_file():
            read_build(model)  # here in the server image, not after a TensorRT image was pulled
        check_plans(model / "1", version)  # plans shipped in the repository must fit this server
    shutil.copyfile(__file__, target / BUILDER_FILE)
    (target / VERSION_FILE).write_text(version + "\n", encoding="utf-8")
    print(f"checked the serving copy {models}; server TensorRT {version}", flush=True)


def rendered_precision(models: Path) -> str:
    """The plan precision the serving copy's configs name (render's --tensorrt-plans), from its marker."""
    marker = models / SERVING_MARKER
    precision = json.loads(marker.read_text(encoding="utf-8")).get("tensorrt_plans") if marker.is_file() else None
    if precision not in PRECISIONS:
        raise PlanError(
            f"{models} was not rendered for plans: its networks' configs name no {DEFAULT_PLAN} "
            "(python -m model_repository render --tensorrt-plans PRECISION)"
        )
    return precision


def build(
    repository: Path,
    cache: Path,
    precision: str,
    workspace_mib: int,
    builder_version: str | None = None,
    gpu: Gpu | None = None,
) -> list[str]:
    """Give every staged ``*_network`` with ONNX files a plan for this GPU as model.plan, the file its config names."""
    server_version = (repository / VERSION_FILE).read_text(encoding="utf-8").strip()
    builder_version = builder_version or tensorrt_version()
    if builder_version != server_version:
        raise PlanError(
            f"TensorRT {builder_version} in the builder image but {server_version} in the server "
            "image: a plan only loads on the version that built it; pick the TensorRT image of "
            "the server's release (trtPlans.image.tag)"
        )
    if rendered_precision(repository / MODELS_DIR) != precision:
        raise PlanError(
            f"the configs in {repository / MODELS_DIR} name {rendered_precision(repository / MODELS_DIR)} plans, "
            f"not {precision}: render and build with the same precision (trtPlans.precision)"
        )
    target_gpu = gpu or query_gpu()
    for model in sorted((repository / MODELS_DIR).glob("*_network")):  # every network's file, before any build
        if (model / "1" / ONNX_FILES["fp32"]).is_file():
            onnx_file(model / "1", precision)
    switched = []
    for model in sorted((repository / MODELS_DIR).glob("*_network")):
        if not (model / "1" / ONNX_FILES["fp32"]).is_file():
            continue
        build = read_build(model)
        add_plan(model, cache, precision, workspace_mib, builder_version, target_gpu, build, DEFAULT_PLAN)
        for name in ONNX_FILES.values():  # the pod serves plans only (links in a serving copy)
            (model / "1" / name).unlink(missing_ok=True)
        switched.append(model.name)
    if not switched:
        raise PlanError(f"no *_network/1/model.onnx under {repository / MODELS_DIR}")
    return switched


def main(argv: list[str] | None = None) -> int:
    """Command line of the chart's init containers; a failure prints one line and exits non-zero."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    staging = steps.add_parser("stage", help="check the serving copy in TARGET/models, record the TensorRT version")
    staging.add_argument("--target", type=Path, required=True, help="holds models/ (a rendered serving copy)")
    staging.add_argument("--server-tensorrt-version", default=None)
    building = steps.add_parser("build", help="build plans and switch the networks to them")
    building.add_argument("--repository", type=Path, required=True)
    building.add_argument("--cache", type=Path, required=True)
    building.add_argument("--precision", choices=PRECISIONS, default="fp16")
    building.add_argument("--workspace-mib", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        if args.step == "stage":
            stage(args.target, args.server_tensorrt_version)
        else:
            names = build(args.repository, args.cache, args.precision, args.workspace_mib)
            print("served from plans:", ", ".join(names), flush=True)
    except (PlanError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
