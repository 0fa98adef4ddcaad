"""python -m perf <command>: every benchmark behind the Makefile's perf targets, one entry point.

  run         perf_analyzer sweep and the PaddleClas deploy path beside it (+ report): `make perf`
  report      markdown + plots from the last run's raw data: `make perf-report`, `make perf-publish`
  load        Locust step load, headless: `make load`
  capacity    CPU time per served image per tier, processes, warmup: `make bench-capacity`
  preprocess  preprocessing in process, exact vs fast decode vs client crops: `make bench-preprocess`
  drills      reliability drills: `make drills`
  analyze     Triton Model Analyzer studies: `make analyze`
  cache       response cache hit vs miss: `make bench-cache`
  allocators  CPU and memory per allocator: `make bench-allocators`
  resize-tier the near-exact resize tier against exact, and its price: `make bench-resize-tier`

`python -m perf <command> --help` gives each command's options.

Without --url, run and load start a local tritonserver on free ports (exporting the models into
--repository first if they are missing) and stop it afterwards; with --url they measure that
server, e.g. a cluster's gRPC endpoint.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import catalog

DEFAULT_MODELS = ["NextViT_small_224", "ViT_base_patch16_224"]  # one model of each family
DEFAULT_OUT = Path("build/perf")
# Commands that are whole studies: the module's main() parses the rest of the command line.
STUDIES = {
    "capacity": "perf.capacity",
    "preprocess": "perf.preprocess_bench",
    "drills": "perf.drills",
    "analyze": "perf.analyze",
    "cache": "perf.cache_bench",
    "allocators": "perf.allocator_bench",
    "resize-tier": "perf.resize_tier",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from perf.run import PROFILES

    parser = argparse.ArgumentParser(
        prog="python -m perf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run, load = sub.add_parser("run", help="perf_analyzer sweep + report"), sub.add_parser("load", help="Locust")
    for command, out in ((run, DEFAULT_OUT), (load, DEFAULT_OUT / "load")):
        command.add_argument("--out", type=Path, default=out, help=f"raw data directory (default {out})")
        command.add_argument("--repository", type=Path, default=Path("build/model_repository/portable"))
        command.add_argument("--url", help="gRPC host:port of a running server (default: start a local one)")
        command.add_argument("--metrics-url", help="its Prometheus endpoint (default: same host, port 8002)")
    run.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="catalog names")
    run.add_argument("--profile", choices=sorted(PROFILES), default="full")
    load.add_argument("--model", default=DEFAULT_MODELS[0], help="catalog name")
    load.add_argument("--step-users", type=int, default=2)
    load.add_argument("--step-seconds", type=float, default=20.0)
    load.add_argument("--steps", type=int, default=4)
    report = sub.add_parser("report", help="markdown + plots from --out/results.json")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    report.add_argument("--publish", action="store_true", help="also write docs/performance.md and docs/img/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STUDIES:
        return importlib.import_module(STUDIES[argv[0]]).main(argv[1:])
    args = parse_args(argv)
    names = args.models if args.command == "run" else [args.model] if args.command == "load" else []
    try:
        entries = [catalog.get(name) for name in names]
    except catalog.UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from perf import load, report, run, serving

    if args.command == "run":
        path = run.run(entries, args.repository, args.out, args.profile, args.url, args.metrics_url)
        print("\n".join(report.peer_section(json.loads(path.read_text()))))
    elif args.command == "load":
        settings = load.Settings(args.step_users, args.step_seconds, args.steps)
        if args.url:
            summary = load.load(args.url, entries[0].triton_name, args.out, settings)
        else:
            with serving.local(args.repository, entries, args.out / "tritonserver.log") as target:
                summary = load.load(target.grpc_url, entries[0].triton_name, args.out, settings)
        return 0 if summary["failures"] == 0 and summary["locust_exit_code"] == 0 else 1
    print(f"report: {report.write(args.out, publish=getattr(args, 'publish', False))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
