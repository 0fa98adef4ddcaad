"""Build TensorRT plans for the production repository on the GPU node that will serve them.

A plan only runs on the TensorRT version and GPU architecture it was built with, so the chart builds
it in the pod, in two init containers sharing a writable volume:

* ``stage`` runs in the server image: it copies the repository to ``TARGET/models`` and writes the
  server's TensorRT version to ``TARGET/server-tensorrt-version``.
* ``build`` runs in the TensorRT image of the same release: it refuses a different TensorRT
  version, then builds ``NAME_network/1/model.onnx`` into a plan with trtexec (or takes it from
  the cache, keyed by GPU name, compute capability and TensorRT version) and switches that model
  from the onnxruntime backend to the tensorrt backend.

Standard library only (the TensorRT image has Python 3.10 and nothing of ours).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS_DIR = "models"
VERSION_FILE = "server-tensorrt-version"
# Where libnvinfer lives in NVIDIA's images; the file name carries the full version.
LIBNVINFER_GLOBS = (
    "/usr/lib/*-linux-gnu/libnvinfer.so.*.*.*",
    "/usr/local/tensorrt/lib/libnvinfer.so.*.*.*",
    "/opt/tritonserver/backends/tensorrt/libnvinfer.so.*.*.*",
)
TRTEXEC_FALLBACKS = ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec")


class PlanError(RuntimeError):
    """A condition that must stop the pod before tritonserver starts on a wrong repository."""


def tensorrt_version(patterns: tuple[str, ...] = LIBNVINFER_GLOBS) -> str:
    """Full TensorRT version (e.g. ``10.5.0``) read from the libnvinfer file name."""
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            match = re.search(r"libnvinfer\.so\.(\d+\.\d+\.\d+)$", path)
            if match:
                return match.group(1)
    raise PlanError(f"no libnvinfer.so.X.Y.Z under {', '.join(patterns)}")


def gpu_identity(nvidia_smi: str = "nvidia-smi") -> str:
    """Cache key part for the GPU: its name and compute capability, e.g. ``NVIDIA-A10G-sm8.6``."""
    query = [nvidia_smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    output = subprocess.run(query, check=True, capture_output=True, text=True).stdout
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise PlanError("nvidia-smi lists no GPU: does the container have nvidia.com/gpu?")
    name, capability = (part.strip() for part in lines[0].split(",", 1))
    return f"{re.sub(r'[^A-Za-z0-9.]+', '-', name)}-sm{capability}"


def block(text: str, key: str) -> str:
    """Body of the first ``key [ ... ]`` or ``key { ... }`` of a config.pbtxt (brackets counted)."""
    match = re.search(rf"\b{key}\s*:?\s*([\[{{])", text)
    if not match:
        raise PlanError(f"config.pbtxt has no {key} block")
    depth, start = 0, match.end(1)
    for index in range(match.start(1), len(text)):
        depth += text[index] in "[{"
        depth -= text[index] in "]}"
        if depth == 0:
            return text[start:index]
    raise PlanError(f"config.pbtxt: unbalanced {key} block")


def repeated_ints(text: str, key: str) -> list[int]:
    """Values of a repeated integer field, written ``key: [1, 2]`` or as one ``key: 1`` per line."""
    values: list[int] = []
    for match in re.finditer(rf"\b{key}\s*:\s*(\[[^\]]*\]|-?\d+)", text):
        values.extend(int(value) for value in match.group(1).strip("[]").replace(",", " ").split())
    return values


def trtexec_shapes(config: str) -> list[str]:
    """``--minShapes/--optShapes/--maxShapes`` for the network's single input.

    The batch range comes from ``max_batch_size`` and, for the optimum, the largest
    ``preferred_batch_size``, so the plan accepts every batch Triton's dynamic batcher forms.
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


def to_tensorrt(config: str) -> str:
    """The same model config served by the tensorrt backend from ``model.plan``."""
    if not re.search(r'^\s*backend\s*:\s*"onnxruntime"', config, flags=re.MULTILINE):
        raise PlanError('expected backend: "onnxruntime" in a *_network config.pbtxt')
    config = re.sub(r'^(\s*)backend\s*:\s*"onnxruntime"', r'\1backend: "tensorrt"', config, flags=re.MULTILINE)
    return re.sub(r'default_model_filename\s*:\s*"[^"]*"', 'default_model_filename: "model.plan"', config)


def stage(source: Path, target: Path, server_version: str | None) -> None:
    """Copy the repository to ``target/models`` and record the server's TensorRT version."""
    if not source.is_dir():
        raise PlanError(f"model repository {source} does not exist")
    models = target / MODELS_DIR
    if models.exists():
        shutil.rmtree(models)
    shutil.copytree(source, models)
    version = server_version or tensorrt_version()
    (target / VERSION_FILE).write_text(version + "\n", encoding="utf-8")
    print(f"staged {source} into {models}; server TensorRT {version}", flush=True)


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def find_trtexec() -> str:
    """trtexec from PATH, else where NVIDIA's TensorRT images keep it."""
    found = shutil.which("trtexec") or next((path for path in TRTEXEC_FALLBACKS if os.access(path, os.X_OK)), None)
    if not found:
        raise PlanError("trtexec not found: run this in nvcr.io/nvidia/tensorrt")
    return found


def build_one(onnx: Path, plan: Path, shapes: list[str], precision: str, workspace_mib: int, trtexec: str) -> None:
    """Run trtexec into a temporary file, then rename, so a shared cache never holds half a plan."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=plan.parent, suffix=".partial")
    os.close(handle)
    command = [
        trtexec,
        f"--onnx={onnx}",
        f"--saveEngine={partial}",
        *shapes,
        f"--memPoolSize=workspace:{workspace_mib}M",
        "--skipInference",
    ]
    if precision == "fp16":
        command.append("--fp16")
    print("running", " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True)
        if os.path.getsize(partial) == 0:
            raise PlanError(f"trtexec wrote an empty plan for {onnx}")
        os.replace(partial, plan)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def build(
    repository: Path,
    cache: Path,
    precision: str,
    workspace_mib: int,
    builder_version: str | None = None,
    gpu: str | None = None,
) -> list[str]:
    """Give every ``*_network`` model a plan; returns the names of the models switched."""
    server_version = (repository / VERSION_FILE).read_text(encoding="utf-8").strip()
    builder_version = builder_version or tensorrt_version()
    if builder_version != server_version:
        raise PlanError(
            f"TensorRT {builder_version} in the builder image but {server_version} in the server "
            "image: a plan only loads on the version that built it; pick the TensorRT image of "
            "the server's release (trtPlans.image.tag)"
        )
    key = cache / (gpu or gpu_identity()) / f"trt-{builder_version}-{precision}"
    switched = []
    for model in sorted((repository / MODELS_DIR).glob("*_network")):
        onnx = model / "1" / "model.onnx"
        config_path = model / "config.pbtxt"
        if not onnx.is_file():
            continue
        config = config_path.read_text(encoding="utf-8")
        # The ONNX digest is part of the name: a re-exported network never picks up an old plan.
        cached = key / f"{model.name}-{file_digest(onnx)}.plan"
        if cached.is_file():
            print(f"{model.name}: plan from cache {cached}", flush=True)
        else:
            build_one(onnx, cached, trtexec_shapes(config), precision, workspace_mib, find_trtexec())
        shutil.copyfile(cached, model / "1" / "model.plan")
        onnx.unlink()
        config_path.write_text(to_tensorrt(config), encoding="utf-8")
        switched.append(model.name)
    if not switched:
        raise PlanError(f"no *_network/1/model.onnx under {repository / MODELS_DIR}")
    return switched


def main(argv: list[str] | None = None) -> int:
    """Command line of the two init containers; a failure prints one line and exits non-zero."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    staging = steps.add_parser("stage", help="copy the repository, record TensorRT version")
    staging.add_argument("--source", type=Path, required=True)
    staging.add_argument("--target", type=Path, required=True)
    staging.add_argument("--server-tensorrt-version", default=None)
    building = steps.add_parser("build", help="build plans and switch the networks to them")
    building.add_argument("--repository", type=Path, required=True)
    building.add_argument("--cache", type=Path, required=True)
    building.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    building.add_argument("--workspace-mib", type=int, default=4096)
    args = parser.parse_args(argv)
    try:
        if args.step == "stage":
            stage(args.source, args.target, args.server_tensorrt_version)
        else:
            names = build(args.repository, args.cache, args.precision, args.workspace_mib)
            print("served from plans:", ", ".join(names), flush=True)
    except (PlanError, OSError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
