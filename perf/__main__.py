"""python -m perf {run,report,load,baselines,tune}: the commands behind the Makefile's perf targets.

  run        baselines + perf_analyzer sweep (+ report): `make perf`
  report     markdown + plots from the last run's raw data: `make perf-report`
  load       Locust step load, headless: `make load`
  baselines  only the in-process baselines: `make baselines`
  tune       candidate instance/thread/batching layouts: `make perf-tune`

Without --url, run/load/tune start a local tritonserver on free ports (exporting the models into
--repository first if they are missing) and stop it afterwards; with --url they measure that
server, e.g. a cluster's gRPC endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import catalog
from perf.profiles import PROFILES

GOAL_MODELS = ["NextViT_small_224", "ViT_base_patch16_224"]
DEFAULT_OUT = Path("build/perf")
DEFAULT_REPOSITORY = Path("build/model_repository/portable")


def _common(parser: argparse.ArgumentParser, out: Path) -> None:
    parser.add_argument("--out", type=Path, default=out, help=f"raw data directory (default {out})")
    parser.add_argument(
        "--repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="exported models (source of model.onnx and the local server's repository)",
    )


def _server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start a local one)")
    parser.add_argument("--metrics-url", help="its Prometheus endpoint (default: same host, port 8002)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m perf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="baselines + perf_analyzer sweep + report")
    _common(run, DEFAULT_OUT)
    _server(run)
    run.add_argument("--models", nargs="+", default=GOAL_MODELS, help="catalog names")
    run.add_argument("--profile", choices=sorted(PROFILES), default="full")
    report = sub.add_parser("report", help="markdown + plots from --out/results.json")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT)
    report.add_argument("--publish", action="store_true", help="also write docs/performance.md and docs/img/")
    load = sub.add_parser("load", help="Locust step load, headless")
    _common(load, DEFAULT_OUT / "load")
    _server(load)
    load.add_argument("--model", default="NextViT_small_224", help="catalog name")
    load.add_argument("--step-users", type=int, default=2)
    load.add_argument("--step-seconds", type=float, default=20.0)
    load.add_argument("--steps", type=int, default=4)
    base = sub.add_parser("baselines", help="only the in-process baselines")
    _common(base, DEFAULT_OUT)
    base.add_argument("--models", nargs="+", default=GOAL_MODELS)
    base.add_argument("--profile", choices=sorted(PROFILES), default="full")
    tune = sub.add_parser("tune", help="measure candidate layouts on a local server")
    _common(tune, DEFAULT_OUT / "tuning")
    tune.add_argument("--models", nargs="+", default=GOAL_MODELS)
    tune.add_argument("--layout", action="append", help="NAME=pre:2,inst:1,threads:2,delay:500,preferred:4/8")
    tune.add_argument("--concurrencies", type=int, nargs="+", default=[1, 2, 4, 8])
    tune.add_argument("--window-ms", type=int, default=4000, help="perf_analyzer measurement window")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for name in getattr(args, "models", None) or [getattr(args, "model", GOAL_MODELS[0])]:
            catalog.get(name)
    except catalog.UnknownModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "run":
        from perf import report, run

        run.run(args.models, args.repository, args.out, PROFILES[args.profile], args.url, args.metrics_url)
        print(f"report: {report.write(args.out)}")
        return 0
    if args.command == "report":
        from perf import report

        print(f"report: {report.write(args.out, publish=args.publish)}")
        return 0
    if args.command == "load":
        return _load(args)
    if args.command == "baselines":
        from perf import baselines, repository

        entries = [catalog.get(name) for name in args.models]
        repository.ensure_exported(args.repository, entries)
        profile = PROFILES[args.profile]
        measured = {e.triton_name: baselines.measure(e, args.repository, profile, args.out) for e in entries}
        path = args.out / "baselines.json"
        path.write_text(json.dumps(measured, indent=2) + "\n")
        print(f"baselines: {path}")
        return 0
    from perf import tuning
    from perf.repository import Layout

    layouts: list[Layout] = [tuning.parse_layout(s) for s in args.layout] if args.layout else list(tuning.CANDIDATES)
    path = tuning.tune(args.models, args.repository, args.out, layouts, args.concurrencies, args.window_ms)
    print(f"tuning: {path}")
    return 0


def _load(args: argparse.Namespace) -> int:
    from perf import load, repository, serving

    entry = catalog.get(args.model)
    settings = (args.step_users, args.step_seconds, args.steps)
    if args.url:
        summary = load.load(args.url, entry.triton_name, args.out, *settings)
    else:
        repository.ensure_exported(args.repository, [entry])
        served = repository.derive(args.repository, args.out / "model_repository", [entry])
        with serving.local(served, args.out / "tritonserver.log") as (target, _server):
            summary = load.load(target.grpc_url, entry.triton_name, args.out, *settings)
    return 0 if summary["failures"] == 0 and summary["locust_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
