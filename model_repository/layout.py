"""Render a serving repository: the selected models, every config fresh from configs.py, sized for this node.

The installed repository holds what export produced (model_repository/install.py): networks, their
records, the shared steps' data. `render` writes a copy Triton serves with --model-control-mode=none:
each config.pbtxt rendered from model_repository/configs.py for the node's cores (Layout) and the
serving options, the Python steps' code copied from this checkout, every other file linked, not
copied, from the installed repository. Nothing installed is parsed back, so nothing installed can
be stale. The launcher (model_repository/server.py) renders at every start; `python -m
model_repository render` does it for the Helm chart's init container and for object storage.

python -m model_repository render --repository DIR --out DIR [--models NAME ...] [--cores auto|N]
    [--preprocess-instances N] [--pixels-preprocess-instances N] [--postprocess-instances N]
    [--network-cpu-instances N] [--network-cpu-threads N] [--network-gpu-instances N] [--preprocess-queue N]
    [--interactive-preprocess-instances N] [--interactive-network-cpu-instances N] [--response-cache]
    [--fast-decode [--fast-decode-margin M]]
    [--tensorrt-plans fp16|fp32] [--resize-tier exact|near-exact [--pillow-simd-dir DIR]]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import catalog
from export import trt_plans
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
    "under overload; more for batch traffic with loose deadlines)",
    "interactive_preprocess_instances": "instances of each interactive preprocess step (default 1: a reserve for "
    "small interactive requests, not scaled with the cores)",
    "interactive_network_cpu_instances": "instances of each portable network reserved for small interactive "
    "requests (default 1)",
}
PYTHON_MODELS = Path(__file__).parent / "python_models"
PREPROCESS_PACKAGE = Path(__file__).parent.parent / "preprocess"
CORES_MODULE = Path(__file__).parent / "cores.py"
# Written by render, never taken from the installed repository (older installs carried configs and code).
RENDERED = {"config.pbtxt", "tensorrt.pbtxt", trt_plans.TENSORRT_BUILD}


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


@dataclasses.dataclass(frozen=True)
class Options:
    """How the served configs differ from the defaults; every field off unless asked for."""

    warmup: bool = True  # False drops model_warmup: a faster start, and "ready" no longer means warm
    response_cache: bool = False  # response_cache on the public ensembles; the server needs --cache-config
    fast_decode: bool = False  # large JPEGs decoded at a reduced DCT scale (preprocess/decoding.py)
    fast_decode_margin: float = FAST_DECODE_MARGIN
    # False drops every step's queue policy, the overload bound with it: only for measuring what the
    # instances compute (Model Analyzer, `make bench-capacity`), as any policy turns off 2.51's
    # prefetching (docs/capacity.md, "Half-second stalls"); never for serving.
    queue_policies: bool = True
    # The chart's build-trt-plans builds a plan of this precision (trt_plans.DEFAULT_PLAN) into every
    # network that has its ONNX files; their configs name that plan.
    tensorrt_plans: str | None = None
    # "near-exact": the Pillow-resized preprocess steps load pillow-simd from pillow_simd_dir (preprocess/tiers.py).
    resize_tier: str = "exact"
    pillow_simd_dir: str | None = None


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


# --- configs ------------------------------------------------------------------------------------


def model_configs(
    source: Path, entry: catalog.ModelEntry, layout: configs.Layout, options: Options = Options()
) -> dict[str, configs.ConfigDict]:
    """Every config `entry` is served with, by directory name, from its installed record and `layout`."""
    network = source / configs.network_name(entry)
    record = install.read_record(network)
    variant = install.installed_variant(network, record)
    note, reference = record.get("weights_note", "unknown"), record.get("reference")
    found = {
        entry.triton_name: configs.ensemble_config(entry, note, reference, variant, layout),
        configs.interactive_ensemble_name(entry): configs.interactive_ensemble_config(
            entry, note, reference, variant, layout
        ),
        configs.pixels_ensemble_name(entry): configs.pixels_ensemble_config(entry, note, reference, variant, layout),
        configs.crop_ensemble_name(entry): configs.crop_ensemble_config(entry, note, reference, variant, layout),
        network.name: served_network_config(entry, network, record, variant, layout, options.tensorrt_plans),
        configs.preprocess_name(entry): configs.preprocess_config(entry, layout),
        configs.interactive_preprocess_name(entry): configs.interactive_preprocess_config(entry, layout),
        configs.pixels_preprocess_name(entry): configs.pixels_preprocess_config(entry, layout),
        configs.POSTPROCESS: configs.postprocess_config(layout),
    }
    if variant == "portable":
        found[configs.interactive_network_name(entry)] = configs.interactive_network_config(entry, layout)
    return {name: _with_options(config, options) for name, config in found.items()}


def served_network_config(
    entry: catalog.ModelEntry,
    network: Path,
    record: dict,
    variant: configs.Variant,
    layout: configs.Layout,
    tensorrt_plans: str | None = None,
) -> configs.ConfigDict:
    """The network's config: portable; else from plans, ONNX Runtime's TensorRT provider, or onnxruntime on CUDA."""
    if variant == "portable":
        return configs.network_config(entry, "portable", layout)
    plans = plan_files(network, tensorrt_plans)
    if plans is not None:
        return configs.tensorrt_network_config(entry, plans, layout)
    limit = install.gpu_mem_limit(record)
    ort = install.read_ort_tensorrt(network)
    if ort is not None:
        return configs.ort_tensorrt_network_config(entry, trt_plans.ONNX_FILES[ort.precision], ort, layout, limit)
    return configs.network_config(entry, "production", layout, limit)


def plan_files(network: Path, tensorrt_plans: str | None = None) -> configs.PlanFiles | None:
    """The plans a production network is served from: the pod's build (tensorrt_plans), its record, or none."""
    version = network / "1"
    if tensorrt_plans is not None and (version / trt_plans.ONNX_FILES["fp32"]).is_file():
        return configs.PlanFiles(trt_plans.DEFAULT_PLAN, tensorrt_plans)  # type: ignore[arg-type]
    plans = trt_plans.read_record(version)
    if not plans["plans"]:
        return None
    default = plans["plans"][plans.get("default") or max(plans["plans"])]
    files = tuple(sorted((capability, plan["file"]) for capability, plan in plans["plans"].items()))
    return configs.PlanFiles(default["file"], default["precision"], files)


def _with_options(config: configs.ConfigDict, options: Options) -> configs.ConfigDict:
    config = copy.deepcopy(config)
    kind = configs.step_kind(config["name"])
    if not options.warmup:
        config.pop("model_warmup", None)
    if not options.queue_policies:
        batching = config.get("dynamic_batching", {})
        for field in ("default_queue_policy", "priority_queue_policy", "priority_levels", "default_priority_level"):
            batching.pop(field, None)
    if options.response_cache and kind == "ensemble":
        # Only the public ensembles: a hit there skips every step, and the steps' answers are never looked up twice.
        config["response_cache"] = {"enable": True}
    pillow_resized = kind in configs.PREPROCESS_KINDS and (
        config["parameters"]["resize"]["string_value"] == NEAR_EXACT_BACKEND
    )
    if options.resize_tier != "exact" and pillow_resized:
        config["parameters"] |= {
            RESIZE_TIER_PARAMETER: {"string_value": options.resize_tier},
            PILLOW_SIMD_DIR_PARAMETER: {"string_value": options.pillow_simd_dir},
        }
    if options.fast_decode and kind in configs.DECODING_KINDS:  # the PIXELS steps do not decode
        margin = repr(float(options.fast_decode_margin))
        config["parameters"] |= {
            DECODE_PARAMETER: {"string_value": "fast"},
            FAST_DECODE_MARGIN_PARAMETER: {"string_value": margin},
        }
    return config


def python_instances(config: configs.ConfigDict) -> int:
    """Stub processes a config starts: one per instance of a Python-backend model."""
    return sum(group["count"] for group in config["instance_group"]) if config.get("backend") == "python" else 0


# --- the serving copy ---------------------------------------------------------------------------


def _code(name: str, config: configs.ConfigDict) -> dict[str, Path]:
    """The Python a step runs, from this checkout: copied, so edits of the tree never reach a running server."""
    kind = configs.step_kind(name)
    if kind in configs.PREPROCESS_KINDS:
        package = {f"preprocess/{path.name}": path for path in sorted(PREPROCESS_PACKAGE.glob("*.py"))}
        return {"model.py": PYTHON_MODELS / "preprocess.py", **package}
    if kind == "postprocess":
        return {"model.py": PYTHON_MODELS / "postprocess.py"}
    if kind == "network" and config.get("backend") == "python":
        return {"model.py": PYTHON_MODELS / "onnx_network.py", "cores.py": CORES_MODULE}
    return {}


def _write_model(source: Path, target: Path, config: configs.ConfigDict, entry: catalog.ModelEntry) -> None:
    """target/config.pbtxt and code; the installed files linked (the version directory a real one, plans go there)."""
    (target / "1").mkdir(parents=True)
    (target / "config.pbtxt").write_text(configs.to_pbtxt(config))
    for name, path in _code(target.name, config).items():
        (target / "1" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / "1" / name)
    if configs.step_kind(target.name) == "network" and config.get("backend") != "python":
        profiles = {"profiles": configs.trt_profiles(entry)}  # what the chart's plan builder reads
        (target / trt_plans.TENSORRT_BUILD).write_text(json.dumps(profiles, indent=2) + "\n")
    if not source.is_dir():
        return  # an ensemble: nothing installed
    for item in sorted(source.iterdir()):
        children = sorted(item.iterdir()) if item.name == "1" else [item]
        for child in children:
            link = target / child.relative_to(source)
            if child.name not in RENDERED and not link.exists():
                link.symlink_to(child.resolve())


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
    tensorrt_plans: str | None = None,
    resize_tier: str = "exact",
    pillow_simd_dir: Path | None = None,
) -> dict:
    """Write the serving copy of `source` for `models` into `target`; returns what was rendered (the marker).

    resize_tier="near-exact" switches every Pillow-resized preprocess step (IMAGE and PIXELS) to
    pillow-simd from `pillow_simd_dir` (default_pillow_simd_dir(); preprocess/tiers.py).
    """
    if fast_decode:
        check_fast_decode_margin(fast_decode_margin)  # before anything is written
    if tensorrt_plans is not None and tensorrt_plans not in trt_plans.PRECISIONS:
        raise LayoutError(f"plan precision {tensorrt_plans!r}: expected one of {trt_plans.PRECISIONS}")
    if resize_tier not in RESIZE_TIERS:
        raise ValueError(f"unknown resize tier {resize_tier!r}; expected one of {RESIZE_TIERS}")
    if resize_tier != "exact":
        pillow_simd_dir = check_pillow_simd_dir(pillow_simd_dir or default_pillow_simd_dir())
    options = Options(
        warmup,
        response_cache,
        fast_decode,
        fast_decode_margin,
        queue_policies,
        tensorrt_plans,
        resize_tier,
        None if resize_tier == "exact" else str(pillow_simd_dir),
    )
    source = source.resolve()
    chosen = select(source, models)
    entries = [catalog.get(name) for name in chosen]
    rendered = {
        name: (entry, config)
        for entry in entries
        for name, config in model_configs(source, entry, layout, options).items()
    }
    missing = [
        name
        for name in sorted(rendered)
        if configs.step_kind(name) != "ensemble" and not (source / configs.installed_name(name)).is_dir()
    ]
    if missing:
        raise LayoutError(f"{source} lacks {', '.join(missing)}, which {', '.join(chosen)} call: re-export them")
    _clear(target)
    target.mkdir(parents=True, exist_ok=True)
    for name, (entry, config) in sorted(rendered.items()):
        _write_model(source / configs.installed_name(name), target / name, config, entry)
    summary = {
        "source": str(source),
        "models": chosen,
        "cores": cores,
        "layout": dataclasses.asdict(layout),
        "python_step_models": len([n for n in rendered if configs.step_kind(n) not in ("ensemble", "network")]),
        "python_stub_processes": sum(python_instances(config) for _, config in rendered.values()),
        "warmup": warmup,
        "response_cache": response_cache,
        "decode": "fast" if fast_decode else "exact",
        "resize_tier": resize_tier,
    }
    if fast_decode:
        summary["fast_decode_margin"] = fast_decode_margin
    if tensorrt_plans is not None:
        summary["tensorrt_plans"] = tensorrt_plans
    (target / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection and capacity flags, shared by `render` and the server launcher."""
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
    """`python -m model_repository render`: a serving copy for object storage or the chart's init container."""
    parser = argparse.ArgumentParser(prog="python -m model_repository render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True, help="installed model repository (read only)")
    parser.add_argument("--out", type=Path, required=True, help="where the serving copy is written")
    parser.add_argument(
        "--response-cache",
        action="store_true",
        help="enable response_cache on the public ensembles (the server then needs --cache-config)",
    )
    parser.add_argument(
        "--tensorrt-plans",
        choices=trt_plans.PRECISIONS,
        help=f"networks with ONNX files are served from {trt_plans.DEFAULT_PLAN} of this precision, which the "
        "chart's build-trt-plans builds into the copy",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cores, layout = layout_from_arguments(args)
        tier, pillow_simd_dir = resize_tier(args)
        summary = render(
            args.repository,
            args.out,
            args.models,
            layout,
            cores,
            args.warmup,
            args.response_cache,
            fast_decode=args.fast_decode,
            fast_decode_margin=fast_decode_margin(args),
            tensorrt_plans=args.tensorrt_plans,
            resize_tier=tier,
            pillow_simd_dir=pillow_simd_dir,
        )
    except (LayoutError, catalog.UnknownModelError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary), flush=True)
    return 0
