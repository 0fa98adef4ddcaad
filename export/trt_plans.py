"""TensorRT plans for the production repository, built by trtexec on the GPU that will serve them.

One module, two callers, so plan building has one implementation:

* `python -m export NAME --trt` (export/tensorrt.py) on a machine with TensorRT, typically inside
  nvcr.io/nvidia/tensorrt:26.09-py3 (the TensorRT of the 26.09 tritonserver image);
* the Helm chart's init containers: `stage` runs in the server image, which ships this file as
  /opt/paddleclas/export/trt_plans.py (helm/image/Dockerfile), and puts a copy of it on the pod's
  shared volume; `build` runs that copy in the TensorRT image, which has neither this project nor
  protobuf. Hence: standard library only, Python 3.10.

Everything about the TensorRT model that does not depend on the GPU is generated at export by
model_repository/configs.py and written beside each production network's config.pbtxt
(model_repository/install.py): `tensorrt.pbtxt`, the complete TensorRT config except its plan
files, and `tensorrt.json`, trtexec's optimization-profile flags. This builder only adds what does
depend on the GPU: it runs trtexec with those flags, and writes config.pbtxt as tensorrt.pbtxt
followed by the plan file of each GPU type (`default_model_filename`, `cc_model_filenames`). It
never parses, edits or derives a config itself.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

MODELS_DIR = "models"
VERSION_FILE = "server-tensorrt-version"
PLANS_RECORD = "plans.json"
DEFAULT_PLAN = "model.plan"
PRECISIONS = ("fp16", "fp32")
PRECISION_PARAMETER = "precision"  # the network config's parameter naming it: configs.PRECISION_PARAMETER
# The network each precision builds from, both written by the export beside each other in the
# production network's version directory (export/fp16.py writes the FP16 one). TensorRT 11 has no
# precision builder flags: a plan's precision is its ONNX file's, built strongly typed.
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
# trtexec's build flags, besides the profiles; every one is documented by trtexec of TensorRT 10.12+
# and 11.x alike (tests/chart/test_trt_plans.py holds both lists, from samples/common/sampleOptions.cpp).
# --stronglyTyped: TensorRT 10 builds the types the ONNX graph carries (NetworkDefinitionCreationFlag
# kSTRONGLY_TYPED); TensorRT 11 always does and keeps the flag as a no-op.
STRONGLY_TYPED = "--stronglyTyped"
# Written by model_repository/install.py beside a production network's config.pbtxt.
TENSORRT_CONFIG = "tensorrt.pbtxt"  # the TensorRT config, complete but for cc_model_filenames
TENSORRT_BUILD = "tensorrt.json"  # {"trtexec_shapes": [...], "profiles": [[min, opt, max], ...]}
SHAPE_FLAGS = ("--minShapes", "--optShapes", "--maxShapes")  # one triple per profile, in this order
PLAN_FIELDS = ("default_model_filename", "cc_model_filenames")  # the only fields this builder writes
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


# --- what the export generated: tensorrt.json and tensorrt.pbtxt ------------------------------------


def _not_exported_for_tensorrt(model: Path, name: str) -> PlanError:
    return PlanError(
        f"{model / name} does not exist: {model.name} was exported without the TensorRT files the build "
        "needs (an older export, or the portable variant); re-export it with --variant production"
    )


def shape_spec(flag: str) -> dict[str, list[int]]:
    """``--minShapes=CROPS:1x224x224x3`` (several inputs comma-separated) as {"CROPS": [1, 224, 224, 3]}."""
    shapes: dict[str, list[int]] = {}
    for item in flag.partition("=")[2].split(","):
        tensor, _, dims = item.rpartition(":")
        sizes = dims.split("x")
        if not tensor or not all(size.isdigit() for size in sizes):
            raise PlanError(f"trtexec shape flag {flag!r} is not --xxxShapes=NAME:AxBx...")
        shapes[tensor] = [int(size) for size in sizes]
    return shapes


def profile_triples(shapes: Sequence[str]) -> list[tuple[str, ...]]:
    """The shape flags grouped per profile; each group must be exactly --minShapes, --optShapes, --maxShapes."""
    triples = [tuple(shapes[index : index + 3]) for index in range(0, len(shapes), 3)]
    if not triples or any(tuple(flag.partition("=")[0] for flag in triple) != SHAPE_FLAGS for triple in triples):
        raise PlanError(f"trtexec shapes {list(shapes)} are not {', '.join(SHAPE_FLAGS)} triples, one per profile")
    return triples


@dataclass(frozen=True)
class TensorrtBuild:
    """A network's tensorrt.json: trtexec's shape flags and the batch range of each profile."""

    shapes: tuple[str, ...]  # --minShapes/--optShapes/--maxShapes, one triple per profile
    profiles: tuple[tuple[int, ...], ...]  # (min, opt, max) batch of each profile

    @property
    def key(self) -> str:
        """Cache key part: a plan built for other profiles never serves this config."""
        return hashlib.sha256("\n".join(self.shapes).encode()).hexdigest()[:8]


def read_build(model: Path) -> TensorrtBuild:
    """The profiles the export generated for `model` (a ``*_network`` directory), checked for consistency."""
    path = model / TENSORRT_BUILD
    if not path.is_file():
        raise _not_exported_for_tensorrt(model, TENSORRT_BUILD)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        shapes = tuple(str(flag) for flag in data["trtexec_shapes"])
        low_opt_high = tuple(tuple(int(size) for size in profile) for profile in data["profiles"])
    except (ValueError, KeyError, TypeError) as error:
        message = f"{path} is not a TensorRT build record ({error!r}); re-export with --variant production"
        raise PlanError(message) from error
    triples = profile_triples(shapes)
    if len(triples) != len(low_opt_high) or any(len(batches) != 3 for batches in low_opt_high):
        raise PlanError(f"{path}: {len(triples)} shape triples but profiles {list(low_opt_high)}")
    for triple, batches in zip(triples, low_opt_high, strict=True):
        for flag, batch in zip(triple, batches, strict=True):
            if any(dims[0] != batch for dims in shape_spec(flag).values()):
                raise PlanError(f"{path}: {flag} does not start with the profile's batch {batch}")
    return TensorrtBuild(shapes, low_opt_high)


def tensorrt_config(model: Path, cc_files: dict[str, str], default: str, precision: str = "fp32") -> str:
    """config.pbtxt for plans: the exported tensorrt.pbtxt as it is, followed by its default and every GPU's plan.

    The default plan's precision is appended as the `precision` parameter
    (model_repository/configs.py, PRECISION_PARAMETER; this file cannot import it in the TensorRT
    image): the helm test's smoke check reads it through the model-config API to pick its tolerance.

    tensorrt.pbtxt is Triton's ModelConfig in protobuf text format, written without either field
    (model_repository/configs.py, tensorrt_network_config); text format lets fields come in any
    order, so appending them is all it takes. Two top-level lines are looked at, as guards: the
    platform (a TensorRT config at all) and the plan fields (absent, or appending would repeat them).
    """
    path = model / TENSORRT_CONFIG
    if not path.is_file():
        raise _not_exported_for_tensorrt(model, TENSORRT_CONFIG)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if 'platform: "tensorrt_plan"' not in lines:
        raise PlanError(f'{path} has no top-level platform: "tensorrt_plan": it is not a TensorRT config')
    if any(line.startswith(PLAN_FIELDS) for line in lines):
        raise PlanError(f"{path} names plan files already; they come from {PLANS_RECORD} only")
    if precision not in PRECISIONS:
        raise PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    added = [f'default_model_filename: "{default}"']
    added += ["parameters {", f'  key: "{PRECISION_PARAMETER}"', f'  value {{ string_value: "{precision}" }}', "}"]
    for capability, name in sorted(cc_files.items()):
        added += ["cc_model_filenames {", f'  key: "{capability}"', f'  value: "{name}"', "}"]
    return text.rstrip("\n") + "\n" + "\n".join(added) + "\n"


def check_exported(model: Path) -> TensorrtBuild:
    """Both TensorRT files of the export are there and usable: checked before any plan is built."""
    build = read_build(model)
    tensorrt_config(model, {}, DEFAULT_PLAN)
    return build


def profile_arguments(shapes: Sequence[str]) -> list[str]:
    """trtexec's arguments for one optimization profile per shape triple: ``--profile=N`` and its three flags.

    TensorRT 10's trtexec (`trtexec --help` of 10.5, Build Options; samples/common/sampleOptions.cpp,
    getOptimizationProfiles): "--profile  Build with dynamic shapes using a profile with the
    min/max/opt shapes provided. Can be specified multiple times to create multiple profiles with
    contiguous index. (ex: --profile=0 --minShapes=<spec> --optShapes=<spec> --maxShapes=<spec>
    --profile=1 ...)". The parser takes a profile's shape flags from the argument positions right
    after its --profile, and refuses repeated shape flags without --profile ("Multiple
    --minShapes/--optShapes/--maxShapes without --profile are not allowed"), so each --profile=N is
    followed directly by its own three flags.
    """
    arguments = []
    for index, triple in enumerate(profile_triples(shapes)):
        arguments += [f"--profile={index}", *triple]
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
    shapes: Sequence[str],
    workspace_mib: int,
    timing_cache: Path | None = None,
) -> list[str]:
    """The trtexec build command: strongly typed, one optimization profile per shape triple (profile_arguments).

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
    command = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *profile_arguments(shapes)]
    command += [f"--memPoolSize=workspace:{workspace_mib}M", "--skipInference", STRONGLY_TYPED]
    if timing_cache is not None:
        command.append(f"--timingCacheFile={timing_cache}")
    return command


def build_one(
    onnx: Path,
    plan: Path,
    shapes: Sequence[str],
    workspace_mib: int,
    trtexec: str,
    timing_cache: Path | None = None,
) -> None:
    """Run trtexec into a temporary file, then rename, so a shared cache never holds half a plan."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=plan.parent, suffix=".partial")
    os.close(handle)
    command = trtexec_command(trtexec, onnx, Path(partial), shapes, workspace_mib, timing_cache)
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
    filename: str | None = None,
) -> Path:
    """Give `model` (a ``*_network`` directory holding 1/model.onnx) a plan for `gpu`, built or from the cache.

    trtexec gets the ONNX file of `precision` (onnx_file) and the profiles of the model's
    tensorrt.json; the plan is recorded in ``1/plans.json``,
    and config.pbtxt becomes the model's tensorrt.pbtxt listing it in ``cc_model_filenames``
    together with the plans already recorded (other GPUs); it also becomes the default plan.
    """
    version_dir = model / "1"
    if not (version_dir / ONNX_FILES["fp32"]).is_file():
        raise PlanError(
            f"{version_dir / ONNX_FILES['fp32']} does not exist: export the model with --variant production first"
        )
    build = check_exported(model)  # a missing or foreign tensorrt.pbtxt stops before trtexec runs
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
        build_one(onnx, cached, build.shapes, workspace_mib, find_trtexec(), key / "timing.cache")
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
        "profiles": [list(batches) for batches in build.profiles],
        "trtexec_shapes": list(build.shapes),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _replace(version_dir / PLANS_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    cc_files = {cc: entry["file"] for cc, entry in record["plans"].items()}
    _replace(model / "config.pbtxt", tensorrt_config(model, cc_files, default=filename, precision=precision))
    return version_dir / filename


# --- the chart's init containers ------------------------------------------------------------------


def stage(target: Path, server_version: str | None) -> None:
    """Check the serving copy in ``target/models``, record the server's TensorRT version, leave the builder there.

    ``target/models`` is the serving copy the render step wrote (python -m model_repository.layout).
    Every network that still has its ONNX file must carry the export's TensorRT files, and every
    plan already present must come from the server's TensorRT. This file is copied to
    ``target/trt_plans.py``, outside the models, for `build` in the TensorRT image, which has no
    project code of its own.
    """
    models = target / MODELS_DIR
    if not models.is_dir():
        raise PlanError(
            f"{models} does not exist: render the serving copy there first "
            f"(python -m model_repository.layout --target {models})"
        )
    version = server_version or tensorrt_version()
    for model in sorted(models.glob("*_network")):
        if (model / "1" / "model.onnx").is_file():
            check_exported(model)  # here in the server image, not after a TensorRT image was pulled
        check_plans(model / "1", version)  # plans shipped in the repository must fit this server
    shutil.copyfile(__file__, target / BUILDER_FILE)
    (target / VERSION_FILE).write_text(version + "\n", encoding="utf-8")
    print(f"checked the serving copy {models}; server TensorRT {version}", flush=True)


def build(
    repository: Path,
    cache: Path,
    precision: str,
    workspace_mib: int,
    builder_version: str | None = None,
    gpu: Gpu | None = None,
) -> list[str]:
    """Give every staged ``*_network`` a plan for this GPU as model.plan; returns the models switched."""
    server_version = (repository / VERSION_FILE).read_text(encoding="utf-8").strip()
    builder_version = builder_version or tensorrt_version()
    if builder_version != server_version:
        raise PlanError(
            f"TensorRT {builder_version} in the builder image but {server_version} in the server "
            "image: a plan only loads on the version that built it; pick the TensorRT image of "
            "the server's release (trtPlans.image.tag)"
        )
    target_gpu = gpu or query_gpu()
    for model in sorted((repository / MODELS_DIR).glob("*_network")):  # every network's file, before any build
        if (model / "1" / ONNX_FILES["fp32"]).is_file():
            onnx_file(model / "1", precision)
    switched = []
    for model in sorted((repository / MODELS_DIR).glob("*_network")):
        if not (model / "1" / ONNX_FILES["fp32"]).is_file():
            continue
        add_plan(model, cache, precision, workspace_mib, builder_version, target_gpu, DEFAULT_PLAN)
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
