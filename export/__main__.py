"""python -m export NAME... [source] [--repository DIR] [--variant portable|production]

NAME is a catalog name (e.g. NextViT_small_224) or `all`. Sources (exactly one):
  --random-weights [--seed N]      seeded random weights: offline demos and tests, NOT a classifier
  --weights FILE.pdparams          PaddleClas pretrained weights for NAME's architecture
  --inference-dir DIR|FILE.tar     a PaddleClas inference model (inference.json or .pdmodel, plus
                                   .pdiparams), as a directory or as an official <Name>_infer.tar
  --download inference|weights     the official <Name>_infer.tar or <Name>_pretrained.pdparams,
                                   fetched into --cache (resumable; --mirror URL for a local copy)

TensorRT, for the production variant (after an export in the same command, or on its own):
  --trt        build a TensorRT plan for this machine's GPU with trtexec (inside
               nvcr.io/nvidia/tensorrt:26.09-py3); several GPUs: run once on each
  --ort-trt    no build: serve with ONNX Runtime's TensorRT execution provider (engines at load time)

python -m export --list prints the catalog names, one per line.
Every failure prints one `error:` line and leaves the repository as it was.

The export's other commands (each with its own --help):
  python -m export report       docs/models.md from the catalog and a repository's export records
  python -m export memory       each network's GPU memory estimate: record it, check it on CPU, the chart's file
  python -m export fp16-price   what the FP16 network costs in accuracy, measured on CPU
  python -m export reference    PaddleClas's own path on an image list (`python -m client evaluate --reference`)
export/trt_plans.py keeps its own command line: the Helm chart runs that one file where nothing else of
this project is (the TensorRT image).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import catalog
from export.errors import ExportError, SourceError, StorageError, TensorrtError, storage_error
from model_repository.configs import VARIANTS

DEFAULT_REPOSITORY = Path("build/model_repository")
DEFAULT_CACHE = Path("build/downloads")
DEFAULT_TRT_CACHE = Path("build/trt-cache")
# Subcommands: each module's main(argv) parses the rest of the command line.
COMMANDS = {
    "report": "export.report",
    "memory": "export.memory",
    "fp16-price": "export.fp16_price",
    "reference": "export.reference",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from export.download import DOWNLOAD_KINDS

    parser = argparse.ArgumentParser(
        prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="catalog name(s), or `all`")
    parser.add_argument("--list", action="store_true", help="print the catalog names and exit")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--random-weights", action="store_true", help="seeded random weights (not a classifier)")
    source.add_argument("--weights", type=Path, help="a PaddleClas .pdparams file")
    source.add_argument("--inference-dir", type=Path, help="a PaddleClas inference model directory or .tar")
    source.add_argument("--download", choices=DOWNLOAD_KINDS, help="fetch the official file for each NAME")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    parser.add_argument("--mirror", help="base URL replacing the official host for --download")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download cache (default {DEFAULT_CACHE})")
    parser.add_argument("--sha256", help="expected SHA-256 of the downloaded file (single NAME)")
    parser.add_argument("--download-only", action="store_true", help="fetch and check, do not export")
    parser.add_argument("--variant", choices=VARIANTS, default="portable", help="network runtime (default portable)")
    parser.add_argument("--repository", type=Path, help="model repository (default build/model_repository/VARIANT)")
    tensorrt = parser.add_mutually_exclusive_group()
    tensorrt.add_argument("--trt", action="store_true", help="build a TensorRT plan (needs trtexec and a GPU)")
    tensorrt.add_argument("--ort-trt", action="store_true", help="use ONNX Runtime's TensorRT provider instead")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision")
    parser.add_argument("--workspace-mib", type=int, default=4096, help="TensorRT builder workspace (MiB)")
    parser.add_argument("--trt-cache", type=Path, default=DEFAULT_TRT_CACHE, help="plans and timing cache")
    parser.add_argument("--server-tensorrt-version", help="TensorRT of the serving tritonserver image, e.g. 10.5.0")
    parser.add_argument("--engine-cache", help="--ort-trt engine cache on the server (default /tmp/ort-trt/NETWORK)")
    args = parser.parse_args(argv)
    if args.list:
        return args
    if not args.names:
        parser.error("give at least one NAME (or `all`)")
    tensorrt_only = args.trt or args.ort_trt
    if not (args.random_weights or args.weights or args.inference_dir or args.download or tensorrt_only):
        parser.error("give a source: --random-weights, --weights, --inference-dir or --download")
    if tensorrt_only and args.variant != "production":
        parser.error("--trt and --ort-trt apply to the production variant: add --variant production")
    if (args.weights or args.inference_dir or args.sha256) and (len(args.names) > 1 or args.names == ["all"]):
        parser.error("--weights, --inference-dir and --sha256 take a single NAME")
    if (args.mirror or args.sha256 or args.download_only) and not args.download:
        parser.error("--mirror, --sha256 and --download-only go with --download")
    return args


def describe(err: ExportError) -> str:
    """One line for a person: what failed and, where we know it, what to do."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else "(no message)"
    if not isinstance(err, StorageError):
        text = f"{type(err).__name__}: {text}"
    return "; ".join([text, *getattr(err, "__notes__", [])])


def _sources(args: argparse.Namespace, entries: list[catalog.ModelEntry]) -> list[object]:
    """One Source per entry; downloads happen here, before any export starts."""
    try:
        return _fetch_sources(args, entries)
    except OSError as err:  # the download cache's disk
        raise storage_error(err) from err


def _fetch_sources(args: argparse.Namespace, entries: list[catalog.ModelEntry]) -> list[object]:
    from export import download
    from export.pipeline import Source

    if args.download:
        sources = []
        for entry in entries:
            fetched = download.fetch_official(entry, args.download, args.cache, args.mirror, args.sha256)
            print(f"{entry.name}: {fetched.path} ({fetched.bytes} bytes, sha256 {fetched.sha256})", flush=True)
            kind = "inference" if args.download == "inference" else "pdparams"
            sources.append(Source(kind, fetched.path, origin={"url": fetched.url}))
        return sources
    if args.weights or args.inference_dir:
        path = args.weights or args.inference_dir
        if not path.exists():
            raise SourceError(f"{path} does not exist")
        return [Source("pdparams" if args.weights else "inference", path)]
    if args.random_weights:
        return [Source("random", seed=args.seed) for _ in entries]
    return [None for _ in entries]  # --trt or --ort-trt alone: the model is already exported


def _tensorrt(args: argparse.Namespace, entry: catalog.ModelEntry, repository: Path) -> None:
    """--trt or --ort-trt; the standalone plan builder's PlanError (and trtexec's failure) as a TensorrtError."""
    from export import trt_plans

    try:
        _apply_tensorrt(args, entry, repository)
    except (trt_plans.PlanError, subprocess.CalledProcessError) as err:
        raise TensorrtError(str(err)) from err
    except OSError as err:
        raise storage_error(err) from err


def _apply_tensorrt(args: argparse.Namespace, entry: catalog.ModelEntry, repository: Path) -> None:
    from export import tensorrt
    from model_repository.configs import network_name

    if args.trt:
        options = tensorrt.PlanOptions(args.trt_cache, args.precision, args.workspace_mib, args.server_tensorrt_version)
        plan = tensorrt.build_plans(entry, repository, options)
        print(f"{entry.name}: {plan} installed (TensorRT backend, cc_model_filenames updated)", flush=True)
    elif args.ort_trt:
        cache = args.engine_cache or f"/tmp/ort-trt/{network_name(entry)}"
        tensorrt.use_ort_tensorrt(entry, repository, args.precision, cache, args.workspace_mib)
        print(f"{entry.name}: ONNX Runtime TensorRT provider ({args.precision}, engine cache {cache})", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    args = parse_args(argv)
    if args.list:
        print("\n".join(catalog.CATALOG))
        return 0
    try:
        names = list(catalog.CATALOG) if args.names == ["all"] else args.names
        entries = [catalog.get(name) for name in names]
    except catalog.UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    repository = args.repository or DEFAULT_REPOSITORY / args.variant
    try:
        sources = _sources(args, entries)
    except ExportError as err:
        print(f"error: {describe(err)}; {repository} was left as it was.", file=sys.stderr)
        return 1
    if args.download_only:
        return 0
    from export.pipeline import export_model  # heavy imports after argument checks

    for entry, source in zip(entries, sources, strict=True):
        if source is not None and source.kind == "random":
            print(f"WARNING: {entry.name} gets {source.describe()}", file=sys.stderr)
        exported = False
        try:
            if source is not None:
                export_model(entry, source, repository, args.variant)
                exported = True
            _tensorrt(args, entry, repository)
        except ExportError as err:
            outcome = f"{repository} was left as it was"
            if exported:
                outcome = "the ONNX export is installed, TensorRT is not"
            print(f"error: {entry.name}: {describe(err)}; {outcome}.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
