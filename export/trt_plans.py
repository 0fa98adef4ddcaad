"""TensorRT for the production repository: plans built by trtexec, or ONNX Runtime's TensorRT provider.

One module, two callers, so plan building has one implementation:

* `python -m export NAME --trt` (export/__main__.py) on a machine with TensorRT, typically inside
  nvcr.io/nvidia/tensorrt:24.10-py3 (the TensorRT of the 24.10 tritonserver image);
* the Helm chart's init containers, which run a byte-identical copy of this file
  (helm/paddleclas-triton/files/build_trt_plans.py): `stage` in the server image, then `build` in
  the TensorRT image on the GPU that will serve.

A plan runs only on the TensorRT version and GPU architecture that built it. So each plan is
recorded beside itself (`plans.json`: TensorRT version, GPU, compute capability, precision, ONNX
digest), a model may hold one plan per compute capability (`cc_model_filenames`), and a plan whose
recorded TensorRT version differs from the server's is refused. The no-build GPU path rewrites the
network's onnxruntime config to use ONNX Runtime's TensorRT execution provider (engines built and
cached at load time).

Standard library only, Python 3.10: the TensorRT and server images have nothing of ours.
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
    "nvcr.io/nvidia/tensorrt:24.10-py3), or run `python -m export NAME --trt` inside that image with "
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

    @classmethod
    def from_key(cls, key: str) -> Gpu:
        match = re.fullmatch(r"(.+)-sm(\d+\.\d+)", key)
        if not match:
            raise PlanError(f"GPU key {key!r} is not NAME-smMAJOR.MINOR")
        return cls(match.group(1), match.group(2))


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


def gpu_identity(nvidia_smi: str = "nvidia-smi") -> str:
    return query_gpu(nvidia_smi).key


# --- config.pbtxt, read and rewritten as text (no protobuf in the TensorRT image) -----------------


def block(text: str, key: str) -> str:
    """Body of the first ``key [ ... ]`` or ``key { ... }`` of a config.pbtxt (brackets counted)."""
    match = re.search(rf"\b{key}\s*:?\s*([\[{{])", text)
    if not match:
        raise PlanError(f"config.pbtxt has no {key} block")
    depth = 0
    for index in range(match.start(1), len(text)):
        depth += text[index] in "[{"
        depth -= text[index] in "]}"
        if depth == 0:
            return text[match.end(1) : index]
    raise PlanError(f"config.pbtxt: unbalanced {key} block")


def repeated_ints(text: str, key: str) -> list[int]:
    """Values of a repeated integer field, written ``key: [1, 2]`` or as one ``key: 1`` per line."""
    values: list[int] = []
    for match in re.finditer(rf"\b{key}\s*:\s*(\[[^\]]*\]|-?\d+)", text):
        values.extend(int(value) for value in match.group(1).strip("[]").replace(",", " ").split())
    return values


def trtexec_shapes(config: str) -> list[str]:
    """One optimization profile for the single input: min 1, opt the preferred batch, max max_batch_size.

    The optimum is the largest ``preferred_batch_size`` (the batch Triton's dynamic batcher aims
    for), or max_batch_size without one; the range covers every batch the batcher can form.
    """
    inputs = block(config, "input")
    name = re.search(r'name\s*:\s*"([^"]+)"', inputs)
    sizes = repeated_ints(inputs, "dims")
    if not name or not sizes:
        raise PlanError("config.pbtxt input lacks a name or dims")
    if any(size < 1 for size in sizes):
        raise PlanError(f"input {name.group(1)} has variable dims {sizes}; plans need fixed ones")
    rest = "x".join(map(str, sizes))
    largest = max(repeated_ints(config, "max_batch_size"), default=0)
    if largest == 0:
        return [f"--shapes={name.group(1)}:{rest}"]
    preferred = [size for size in repeated_ints(config, "preferred_batch_size") if size <= largest]
    optimum = max(preferred, default=largest)
    return [
        f"--minShapes={name.group(1)}:1x{rest}",
        f"--optShapes={name.group(1)}:{optimum}x{rest}",
        f"--maxShapes={name.group(1)}:{largest}x{rest}",
    ]


def _without_block(config: str, key: str) -> str:
    """The config with its top-level ``key { ... }`` block (if any) removed."""
    match = re.search(rf"^{key}\s*:?\s*\{{", config, flags=re.MULTILINE)
    if not match:
        return config
    body = block(config[match.start() :], key)
    end = match.end() + len(body) + 1
    return (config[: match.start()] + config[end:]).rstrip() + "\n"


def _require_onnxruntime(config: str) -> None:
    if not re.search(r'^\s*backend\s*:\s*"onnxruntime"', config, flags=re.MULTILINE):
        raise PlanError('expected backend: "onnxruntime" in a *_network config.pbtxt (the production variant)')


def to_tensorrt(config: str, cc_files: dict[str, str] | None = None, default: str = DEFAULT_PLAN) -> str:
    """The same model served by Triton's TensorRT backend from plans (``platform: "tensorrt_plan"``).

    ``cc_files`` maps compute capabilities to plan files (Triton's ``cc_model_filenames``); the
    server loads the plan of its GPU, or ``default`` when its capability is not listed. Accepts
    the production onnxruntime config or a config this function wrote (to add another GPU's plan).
    """
    if not re.search(r'^\s*backend\s*:\s*"tensorrt"', config, flags=re.MULTILINE):
        _require_onnxruntime(config)
    config = _without_block(config, "optimization")  # ONNX Runtime accelerators mean nothing to TensorRT
    while re.search(r"^cc_model_filenames\s*\{", config, flags=re.MULTILINE):
        config = _without_block(config, "cc_model_filenames")
    config = re.sub(r'^\s*platform\s*:\s*"[^"]*"\n', "", config, flags=re.MULTILINE)
    config = re.sub(
        r'^(\s*)backend\s*:\s*"(onnxruntime|tensorrt)"',
        r'\1backend: "tensorrt"\n\1platform: "tensorrt_plan"',
        config,
        flags=re.MULTILINE,
    )
    config = re.sub(r'default_model_filename\s*:\s*"[^"]*"', f'default_model_filename: "{default}"', config)
    entries = "".join(
        f'cc_model_filenames {{\n  key: "{cc}"\n  value: "{name}"\n}}\n'
        for cc, name in sorted((cc_files or {}).items())
    )
    return config.rstrip() + "\n" + entries


def to_ort_tensorrt(config: str, precision: str, engine_cache: str, workspace_mib: int) -> str:
    """The no-build GPU path: the onnxruntime backend with ONNX Runtime's TensorRT execution provider.

    Engines are built when the model loads and cached in ``engine_cache`` (keep it on a volume so
    restarts reuse them); LayerNorm stays in FP32 under FP16 (ViT loses accuracy otherwise), the
    profile is the same as trtexec's, and the timing cache shares tactic timings between models.
    """
    _require_onnxruntime(config)
    if precision not in PRECISIONS:
        raise PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    profile = {flag.split("=")[0][2:]: flag.split("=", 1)[1] for flag in trtexec_shapes(config)}
    parameters = {
        "precision_mode": precision.upper(),
        "max_workspace_size_bytes": str(workspace_mib << 20),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": engine_cache,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": engine_cache,
        "trt_layer_norm_fp32_fallback": "1",
        "trt_profile_min_shapes": profile.get("minShapes", ""),
        "trt_profile_opt_shapes": profile.get("optShapes", ""),
        "trt_profile_max_shapes": profile.get("maxShapes", ""),
    }
    lines = "".join(f'      parameters {{ key: "{k}" value: "{v}" }}\n' for k, v in parameters.items() if v)
    accelerator = (
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator {\n"
        f'      name: "tensorrt"\n{lines}    }}\n  }}\n}}\n'
    )
    return _without_block(config, "optimization").rstrip() + "\n" + accelerator


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


def trtexec_command(
    trtexec: str,
    onnx: Path,
    engine: Path,
    shapes: list[str],
    precision: str,
    workspace_mib: int,
    timing_cache: Path | None = None,
) -> list[str]:
    if precision not in PRECISIONS:
        raise PlanError(f"precision {precision!r}: expected one of {PRECISIONS}")
    command = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *shapes]
    command += [f"--memPoolSize=workspace:{workspace_mib}M", "--skipInference"]
    if precision == "fp16":
        command.append("--fp16")
    if timing_cache is not None:
        command.append(f"--timingCacheFile={timing_cache}")
    return command


def build_one(
    onnx: Path,
    plan: Path,
    shapes: list[str],
    precision: str,
    workspace_mib: int,
    trtexec: str,
    timing_cache: Path | None = None,
) -> None:
    """Run trtexec into a temporary file, then rename, so a shared cache never holds half a plan."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=plan.parent, suffix=".partial")
    os.close(handle)
    command = trtexec_command(trtexec, onnx, Path(partial), shapes, precision, workspace_mib, timing_cache)
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
    """Write a new file and rename it over `path`: never truncates a file another directory hard-links."""
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

    The plan is recorded in ``1/plans.json`` and listed in the config's ``cc_model_filenames``
    together with the plans already there (other GPUs); it also becomes the default plan.
    """
    version_dir = model / "1"
    onnx = version_dir / "model.onnx"
    if not onnx.is_file():
        raise PlanError(f"{onnx} does not exist: export the model with --variant production first")
    config_path = model / "config.pbtxt"
    config = config_path.read_text(encoding="utf-8")
    check_plans(version_dir, builder_version)  # plans of another TensorRT cannot sit beside this one
    key = cache / gpu.key / f"trt-{builder_version}-{precision}"
    digest = file_digest(onnx)
    # The ONNX digest is part of the name: a re-exported network never picks up an old plan.
    cached = key / f"{model.name}-{digest}.plan"
    shapes = trtexec_shapes(config)
    if cached.is_file():
        print(f"{model.name}: plan from cache {cached}", flush=True)
    else:
        build_one(onnx, cached, shapes, precision, workspace_mib, find_trtexec(), key / "timing.cache")
    filename = filename or plan_filename(gpu)
    (version_dir / filename).unlink(missing_ok=True)  # a new file, not a write through a hard link
    shutil.copyfile(cached, version_dir / filename)
    record = read_record(version_dir)
    record["plans"][gpu.capability] = {
        "file": filename,
        "tensorrt": builder_version,
        "gpu": gpu.name,
        "precision": precision,
        "onnx_sha256_16": digest,
        "profile": shapes,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _replace(version_dir / PLANS_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    cc_files = {cc: entry["file"] for cc, entry in record["plans"].items()}
    _replace(config_path, to_tensorrt(config, cc_files, default=filename))
    return version_dir / filename


# --- the chart's two init containers --------------------------------------------------------------


def stage(source: Path, target: Path, server_version: str | None) -> None:
    """Copy the repository to ``target/models`` and record the server's TensorRT version."""
    if not source.is_dir():
        raise PlanError(f"model repository {source} does not exist")
    models = target / MODELS_DIR
    if models.exists():
        shutil.rmtree(models)
    shutil.copytree(source, models)
    version = server_version or tensorrt_version()
    for version_dir in sorted(models.glob("*_network/1")):
        check_plans(version_dir, version)  # plans shipped in the repository must fit this server
    (target / VERSION_FILE).write_text(version + "\n", encoding="utf-8")
    print(f"staged {source} into {models}; server TensorRT {version}", flush=True)


def build(
    repository: Path,
    cache: Path,
    precision: str,
    workspace_mib: int,
    builder_version: str | None = None,
    gpu: str | Gpu | None = None,
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
    target_gpu = gpu if isinstance(gpu, Gpu) else Gpu.from_key(gpu) if gpu else query_gpu()
    switched = []
    for model in sorted((repository / MODELS_DIR).glob("*_network")):
        if not (model / "1" / "model.onnx").is_file():
            continue
        add_plan(model, cache, precision, workspace_mib, builder_version, target_gpu, DEFAULT_PLAN)
        (model / "1" / "model.onnx").unlink()  # the pod serves plans only; the staging volume is bounded
        switched.append(model.name)
    if not switched:
        raise PlanError(f"no *_network/1/model.onnx under {repository / MODELS_DIR}")
    return switched


def use_ort_tensorrt(repository: Path, precision: str, engine_cache: str, workspace_mib: int) -> list[str]:
    """The no-build path for every ``*_network`` of a repository; returns the models rewritten."""
    rewritten = []
    for model in sorted(repository.glob("*_network")):
        config = model / "config.pbtxt"
        _replace(config, to_ort_tensorrt(config.read_text(encoding="utf-8"), precision, engine_cache, workspace_mib))
        rewritten.append(model.name)
    if not rewritten:
        raise PlanError(f"no *_network model under {repository}")
    return rewritten


def main(argv: list[str] | None = None) -> int:
    """Command line of the chart's init containers; a failure prints one line and exits non-zero."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    staging = steps.add_parser("stage", help="copy the repository, record and check the TensorRT version")
    staging.add_argument("--source", type=Path, required=True)
    staging.add_argument("--target", type=Path, required=True)
    staging.add_argument("--server-tensorrt-version", default=None)
    building = steps.add_parser("build", help="build plans and switch the networks to them")
    building.add_argument("--repository", type=Path, required=True)
    building.add_argument("--cache", type=Path, required=True)
    building.add_argument("--precision", choices=PRECISIONS, default="fp16")
    building.add_argument("--workspace-mib", type=int, default=4096)
    ort = steps.add_parser("ort-trt", help="no plans: ONNX Runtime's TensorRT provider for every network")
    ort.add_argument("--repository", type=Path, required=True, help="e.g. the staged TARGET/models")
    ort.add_argument("--engine-cache", required=True, help="a writable volume: engines survive restarts")
    ort.add_argument("--precision", choices=PRECISIONS, default="fp16")
    ort.add_argument("--workspace-mib", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        if args.step == "stage":
            stage(args.source, args.target, args.server_tensorrt_version)
        elif args.step == "ort-trt":
            names = use_ort_tensorrt(args.repository, args.precision, args.engine_cache, args.workspace_mib)
            print("ONNX Runtime TensorRT provider for:", ", ".join(names), flush=True)
        else:
            names = build(args.repository, args.cache, args.precision, args.workspace_mib)
            print("served from plans:", ", ".join(names), flush=True)
    except (PlanError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
