"""Serve an installed repository sized for the node it runs on: select models, resolve capacity, render.

Triton reads static config files, and capacity belongs to the node, not to the export. So at start
the launcher (model_repository/server.py) and the Helm chart's init container both run `render`:
it writes a serving copy of the repository that holds only the selected models and the steps they
call, each config.pbtxt with its instance counts (and the portable network's threads) resolved from
the cores the server may use, and every other file linked, not copied, from the installed repository.
Triton then serves the copy with --model-control-mode=none, exactly as it would the original.

python -m model_repository.layout --source DIR --target DIR [--models NAME ...] [--cores auto|N]
    [--preprocess-instances N] [--pixels-preprocess-instances N] [--postprocess-instances N]
    [--network-cpu-instances N] [--network-cpu-threads N] [--network-gpu-instances N] [--preprocess-queue N]
    [--response-cache]
    [--fast-decode [--fast-decode-margin M]] [--resize-tier exact|near-exact [--pillow-simd-dir DIR]]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import catalog
from model_repository import configs, health, install
from model_repository.cores import usable_cores
from preprocess import (
    DECODE_PARAMETER,
    FAST_DECODE_MARGIN,
    FAST_DECODE_MARGIN_PARAMETER,
    PILLOW_SIMD_DIR_PARAMETER,
    RESIZE_TIER_PARAMETER,
    RESIZE_TIERS,
)
from preprocess.decoding import check_fast_decode_margin
from preprocess.tiers import NEAR_EXACT_BACKEND, check_pillow_simd_dir

# Written into every rendered copy: render only ever replaces its own copies, and the liveness
# check (health.py, standard library only, so it owns the name) reads the stub count from it.
MARKER = health.MARKER
LAYOUT_FIELDS = [field.name for field in dataclasses.fields(configs.Layout)]
LAYOUT_HELP = {
    "preprocess_queue": "requests that may wait per preprocess instance (default 1: refused rather than late "
    "under overload; more for batch traffic with loose deadlines)"
}


# Where the near-exact resize tier's pillow-simd is: $PADDLECLAS_PILLOW_SIMD (the server image sets it),
# else the folder `make setup` builds it into.
PILLOW_SIMD_ENV = "PADDLECLAS_PILLOW_SIMD"


def default_pillow_simd_dir() -> Path:
    """pillow-simd's folder on this machine: the server image's, or this checkout's .venv/pillow-simd."""
    return Path(os.environ.get(PILLOW_SIMD_ENV) or Path(__file__).resolve().parents[1] / ".venv" / "pillow-simd")


class LayoutError(RuntimeError):
    """The selection or the target cannot be rendered; nothing was served."""


class Resolved(NamedTuple):
    """The cores a serving copy is sized for, and the layout sized for them (what render takes)."""

    cores: int
    layout: configs.Layout


def resolve(cores: int | None = None, **overrides: int | None) -> Resolved:
    """The layout for `cores` (default: the usable cores, cgroup limit included), with explicit counts winning."""
    cores = cores or usable_cores()
    gpu_instances = overrides.get("network_gpu_instances") or 1
    layout = configs.Layout.for_cores(cores, network_gpu_instances=gpu_instances)
    chosen = {name: value for name, value in overrides.items() if value is not None}
    return Resolved(cores, dataclasses.replace(layout, **chosen))


def select(source: Path, models: list[str] | None) -> list[str]:
    """Ensemble names to serve: the given catalog names (each must be installed), or every installed model."""
    installed = install.installed_models(source)
    if not installed:
        raise LayoutError(f"{source} holds no exported model: export one first (make export)")
    if not models:
        return installed
    chosen = []
    for name in models:
        entry = catalog.get(name)  # an unknown name stops here with the valid names
        if entry.triton_name not in installed:
            raise LayoutError(f"{entry.name} is not installed in {source} (installed: {', '.join(installed)})")
        chosen.append(entry.triton_name)
    return sorted(set(chosen))


def sized_config(
    text: str, layout: configs.Layout, warmup: bool = True, response_cache: bool = False, queue_policies: bool = True
) -> str:
    """An installed config.pbtxt with its instance counts (and portable network threads) from `layout`.

    A bounded step queue (configs.queue_policy) is resized to its instance count.
    queue_policies=False drops every step's queue policy, the overload bound with it: only for measuring
    what instances compute (Model Analyzer, `make bench-capacity`), as any policy turns off 2.51's
    prefetching (docs/capacity.md, "Half-second stalls"); never for serving.

    warmup=False drops model_warmup: a faster start for development, and the "before" of the warmup benchmark.
    response_cache=True turns on Triton's response cache for the public ensembles (only they: a hit there
    skips every step, and the steps' own answers are never looked up twice); the server needs --cache-config.
    """
    config = configs.parse_pbtxt(text)
    kind = configs.step_kind(config.name)
    if kind == "ensemble":
        # A production ensemble's in-flight bound follows the node's layout, as the steps' queues do.
        inflight = None if configs.inflight_limit(text) is None else configs.ensemble_inflight_limit(layout)
        if response_cache:
            config.response_cache.enable = True
        return configs.message_to_pbtxt(config, inflight)
    if not warmup:
        del config.model_warmup[:]
    installed_instances = sum(group.count for group in config.instance_group)
    for group in config.instance_group:
        group.count = layout.instances(kind, gpu=group.kind == group.KIND_GPU)
    policy = config.dynamic_batching.default_queue_policy
    if not queue_policies:
        config.dynamic_batching.ClearField("default_queue_policy")
    elif config.dynamic_batching.HasField("default_queue_policy") and policy.max_queue_size > 0:
        # A bounded queue holds the same seconds of work on every node: its length follows the
        # instances, at the length per instance configs.py gave it (configs.max_queue_size).
        per_instance = max(1, policy.max_queue_size // max(1, installed_instances))
        if kind in ("preprocess", "pixels_preprocess") and layout.preprocess_queue:
            per_instance = layout.preprocess_queue
        policy.max_queue_size = per_instance * sum(group.count for group in config.instance_group)
    if kind == "network" and "intra_op_threads" in config.parameters:
        config.parameters["intra_op_threads"].string_value = str(layout.network_cpu_threads)
    return configs.text_format.MessageToString(config)


def _link_model(
    source: Path, target: Path, layout: configs.Layout, warmup: bool, response_cache: bool, queue_policies: bool
) -> None:
    """target/config.pbtxt sized; the version directory a real directory of links (plans may be added there)."""
    target.mkdir()
    for item in sorted(source.iterdir()):
        if item.suffix == ".pbtxt":  # config.pbtxt, and the TensorRT config a plan build switches to
            sized = sized_config(item.read_text(), layout, warmup, response_cache, queue_policies)
            (target / item.name).write_text(sized)
        elif item.is_dir() and item.name.isdigit():
            (target / item.name).mkdir()
            for child in sorted(item.iterdir()):
                (target / item.name / child.name).symlink_to(child.resolve())
        else:
            (target / item.name).symlink_to(item.resolve())


def _clear(target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        if not (target / MARKER).is_file():
            raise LayoutError(f"{target} is not empty and is not a serving copy: give an empty or new directory")
        shutil.rmtree(target)


def render(
    source: Path,
    target: Path,
    models: list[str] | None,
    layout: configs.Layout,
    cores: int,
    warmup: bool = True,
    response_cache: bool = False,
    fast_decode: bool = False,
    fast_decode_margin: float = FAST_DECODE_MARGIN,
    queue_policies: bool = True,
    resize_tier: str = "exact",
    pillow_simd_dir: Path | None = None,
) -> dict:
    """Write the serving copy of `source` for `models` into `target`; returns what was rendered.

    fast_decode=True sets every encoded-image preprocess step's `decode` parameter to "fast" (large
    JPEGs decoded at a reduced DCT scale, preprocess/decoding.py) with `fast_decode_margin`; the
    default leaves them exact. resize_tier="near-exact" switches every Pillow-resized preprocess step (IMAGE
    and PIXELS) to pillow-simd from `pillow_simd_dir` (default_pillow_simd_dir(); preprocess/tiers.py).
    """
    if fast_decode:
        check_fast_decode_margin(fast_decode_margin)  # before anything is written
    if resize_tier not in RESIZE_TIERS:
        raise ValueError(f"unknown resize tier {resize_tier!r}; expected one of {RESIZE_TIERS}")
    if resize_tier != "exact":
        pillow_simd_dir = check_pillow_simd_dir(pillow_simd_dir or default_pillow_simd_dir())
    source = source.resolve()
    chosen = select(source, models)
    directories = [name for name in install.referenced_models(source, chosen) if _needed(source, name)]
    missing = [name for name in directories if not (source / name / "config.pbtxt").is_file()]
    if missing:
        raise LayoutError(f"{source} lacks {', '.join(missing)}, which {', '.join(chosen)} call: re-export them")
    _clear(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in directories:
        _link_model(source / name, target / name, layout, warmup, response_cache, queue_policies)
    if fast_decode:
        _use_fast_decode(target, directories, fast_decode_margin)
    if pillow_simd_dir is not None and resize_tier != "exact":
        _use_resize_tier(target, directories, resize_tier, pillow_simd_dir)
    python_models = [name for name in directories if configs.step_kind(name) not in ("ensemble", "network")]
    stubs = sum(python_instances(target / name / "config.pbtxt") for name in directories)
    summary = {
        "source": str(source),
        "models": chosen,
        "cores": cores,
        "layout": dataclasses.asdict(layout),
        "python_step_models": len(python_models),
        "python_stub_processes": stubs,  # one process per instance of every Python-backend model
        "warmup": warmup,
        "response_cache": response_cache,
        "decode": "fast" if fast_decode else "exact",
        "resize_tier": resize_tier,
    }
    if fast_decode:
        summary["fast_decode_margin"] = fast_decode_margin
    (target / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def python_instances(path: Path) -> int:
    """Stub processes a config.pbtxt starts: one per instance of a Python-backend model."""
    config = configs.parse_pbtxt(path.read_text())
    return sum(group.count for group in config.instance_group) if config.backend == "python" else 0


def _needed(source: Path, name: str) -> bool:
    """False only for a `<model>_crop` entry point missing from a repository installed before it existed."""
    return configs.step_kind(name) != "ensemble" or not name.endswith(configs.CROP_SUFFIX) or (source / name).is_dir()


def _use_fast_decode(target: Path, directories: list[str], margin: float) -> None:
    """Switch the encoded-image preprocess steps of the serving copy to fast decode (the PIXELS steps do not decode)."""
    for name in directories:
        if configs.step_kind(name) == "preprocess":
            path = target / name / "config.pbtxt"
            config = configs.parse_pbtxt(path.read_text())
            config.parameters[DECODE_PARAMETER].string_value = "fast"
            config.parameters[FAST_DECODE_MARGIN_PARAMETER].string_value = repr(float(margin))
            path.write_text(configs.text_format.MessageToString(config))


def _use_resize_tier(target: Path, directories: list[str], tier: str, pillow_simd_dir: Path) -> None:
    """Switch the Pillow-resized preprocess steps (IMAGE and PIXELS) of the serving copy to `tier`."""
    for name in directories:
        if configs.step_kind(name) in ("preprocess", "pixels_preprocess"):
            path = target / name / "config.pbtxt"
            config = configs.parse_pbtxt(path.read_text())
            if config.parameters["resize"].string_value == NEAR_EXACT_BACKEND:
                config.parameters[RESIZE_TIER_PARAMETER].string_value = tier
                config.parameters[PILLOW_SIMD_DIR_PARAMETER].string_value = str(pillow_simd_dir)
                path.write_text(configs.text_format.MessageToString(config))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection and capacity flags, shared by this module's command line and the server launcher's."""
    parser.add_argument("--models", nargs="+", metavar="NAME", help="catalog models to serve (default: all installed)")
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="opt-in: decode JPEGs far larger than the model's input at 1/2, 1/4 or 1/8 scale (faster, changes "
        "pixels: docs/preprocessing.md); default exact",
    )
    parser.add_argument(
        "--fast-decode-margin",
        type=float,
        metavar="M",
        help=f"with --fast-decode: keep the decoded short side at least M x the resize target (default "
        f"{FAST_DECODE_MARGIN:g}; 1.25 is faster and further from exact; at least 1)",
    )
    parser.add_argument(
        "--resize-tier",
        choices=RESIZE_TIERS,
        default="exact",
        help="Pillow-resized (NextViT) steps: exact (stock Pillow, the default) or near-exact (pillow-simd: several "
        "times cheaper, crops within 2 levels: docs/preprocessing.md)",
    )
    parser.add_argument(
        "--pillow-simd-dir",
        type=Path,
        metavar="DIR",
        help=f"with --resize-tier near-exact: pillow-simd's folder (default ${PILLOW_SIMD_ENV}, or .venv/pillow-simd)",
    )
    parser.add_argument("--cores", default="auto", help="cores the server may use: auto (cgroup-aware) or a number")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip model_warmup (faster start)")
    for name in LAYOUT_FIELDS:
        flag, help_text = f"--{name.replace('_', '-')}", LAYOUT_HELP.get(name, "override the resolved count")
        parser.add_argument(flag, type=int, metavar="N", help=help_text)


def fast_decode_margin(args: argparse.Namespace) -> float:
    """The margin asked for, which only means something with --fast-decode."""
    if args.fast_decode_margin is None:
        return FAST_DECODE_MARGIN
    if not args.fast_decode:
        raise ValueError("--fast-decode-margin needs --fast-decode (the default decode is exact)")
    return args.fast_decode_margin


def resize_tier(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The resize tier asked for, and pillow-simd's folder, which only means something with near-exact."""
    if args.pillow_simd_dir is not None and args.resize_tier == "exact":
        raise ValueError("--pillow-simd-dir needs --resize-tier near-exact (the default resize is exact)")
    return args.resize_tier, args.pillow_simd_dir


def layout_from_arguments(args: argparse.Namespace) -> Resolved:
    cores = None if args.cores == "auto" else int(args.cores)
    return resolve(cores, **{name: getattr(args, name) for name in LAYOUT_FIELDS})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="installed model repository (read only)")
    parser.add_argument("--target", type=Path, required=True, help="where the serving copy is written")
    parser.add_argument(
        "--response-cache",
        action="store_true",
        help="enable response_cache on the public ensembles (the server then needs --cache-config)",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cores, layout = layout_from_arguments(args)
        tier, pillow_simd_dir = resize_tier(args)
        summary = render(
            args.source,
            args.target,
            args.models,
            layout,
            cores,
            args.warmup,
            args.response_cache,
            fast_decode=args.fast_decode,
            fast_decode_margin=fast_decode_margin(args),
            resize_tier=tier,
            pillow_simd_dir=pillow_simd_dir,
        )
    except (LayoutError, catalog.UnknownModelError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
