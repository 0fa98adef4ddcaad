"""python -m export NAME [source] [--repository DIR] [--variant portable|production]

Sources (exactly one):
  --random-weights [--seed N]   seeded random weights: offline demos and tests, NOT a classifier
  --weights FILE.pdparams       PaddleClas pretrained weights for NAME's architecture
  --inference-dir DIR           a PaddleClas inference model (inference.json or .pdmodel + .pdiparams)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import catalog
from model_repository.configs import VARIANTS

DEFAULT_REPOSITORY = Path("build/model_repository")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="catalog name(s), e.g. NextViT_small_224")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--random-weights", action="store_true", help="seeded random weights (not a classifier)")
    source.add_argument("--weights", type=Path, help="a PaddleClas .pdparams file")
    source.add_argument("--inference-dir", type=Path, help="a PaddleClas inference model directory")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    parser.add_argument("--variant", choices=VARIANTS, default="portable", help="network runtime (default portable)")
    parser.add_argument("--repository", type=Path, help="model repository (default build/model_repository/VARIANT)")
    args = parser.parse_args(argv)
    if (args.weights or args.inference_dir) and len(args.names) > 1:
        parser.error("--weights and --inference-dir take a single NAME")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        entries = [catalog.get(name) for name in args.names]
    except catalog.UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from export.pipeline import Source, export_model  # heavy imports after argument checks

    if args.weights:
        source = Source("pdparams", args.weights)
    elif args.inference_dir:
        source = Source("inference", args.inference_dir)
    else:
        source = Source("random", seed=args.seed)
    if source.path is not None and not source.path.exists():
        print(f"error: {source.path} does not exist", file=sys.stderr)
        return 2
    repository = args.repository or DEFAULT_REPOSITORY / args.variant
    for entry in entries:
        if source.kind == "random":
            print(f"WARNING: {entry.name} gets {source.describe()}", file=sys.stderr)
        try:
            export_model(entry, source, repository, args.variant)
        except Exception as err:
            print(f"error: {entry.name}: {type(err).__name__}: {err}", file=sys.stderr)
            print(f"{repository} was left as it was.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
