"""Triton Model Analyzer (1.44.0, the 24.10 release of the local 2.51.0 server) on one served model.

python -m perf.analyze [--model NextViT_small_224] [--repository DIR] [--out build/analyze]
    [--latency-budget-ms 500] [--url HOST:8001 [--metrics-url URL]]

Local mode (the default, `make analyze`) runs Model Analyzer's own search against the real
tritonserver from the nvidia-pytriton wheel, on a serving copy of the model rendered for this
machine (model_repository/layout.py), in two studies, each Model Analyzer's own search:

- `ensemble`: quick search on the `<model>` ensemble, the only search Model Analyzer has for
  ensembles. It varies the instance count and max batch size of every composing step (preprocess,
  network, postprocess) and the concurrency, under a p99 latency budget.
- `network`: a manual brute sweep of the portable network alone: instances x ONNX Runtime threads
  (a model parameter, which quick search on an ensemble cannot vary) x the batcher's queue delay.

Each writes Model Analyzer's results under build/analyze/<study>/, and report.md beside them puts
the best configuration of each next to the layout configs.py commits for this many cores.

Remote mode (--url) measures a running deployment as it stands (the chart starts tritonserver with
--model-control-mode=none, so no configuration can be swapped in): a concurrency sweep of the
served ensemble under the same budget. docs/operations.md says how to tune a GPU node.

Model Analyzer lives in its own environment, .venv/model-analyzer (requirements/model-analyzer.txt):
it pulls optuna, numba, docker and pdfkit, none of which the project needs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import catalog
from catalog.reference import sample_photo_paths
from model_repository import configs, layout
from model_repository.cores import usable_cores
from model_repository.server import (
    PROJECT,
    TritonServer,
    backend_directory,
    free_port,
    header_name,
    key_from_environment,
    server_binary,
)
from perf import analyzer, machine
from perf.input_data import write_input_data

ANALYZER_VENV = PROJECT / ".venv" / "model-analyzer"
DEFAULT_OUT = PROJECT / "build" / "analyze"
STUDY_TIMEOUT_S = 900
# perf_analyzer windows Model Analyzer asks for: 10 requests, three in a row within 30 %, since a
# 2-core machine shared with other work drifts more than the default 10 % allows (docs/operations.md).
PERF_ANALYZER_FLAGS = {"measurement-mode": "count_windows", "measurement-request-count": 10, "stability-percentage": 30}
# The network study's levers: instances x ONNX Runtime intra-op threads x the batcher's queue delay.
NETWORK_QUEUE_DELAYS_US = (500, 4000)
NETWORK_CONCURRENCY = (1, 4)


class AnalyzeError(RuntimeError):
    """Model Analyzer is missing or a study failed; the message names its log."""


def model_analyzer() -> Path:
    binary = ANALYZER_VENV / "bin" / "model-analyzer"
    if not binary.exists():
        raise AnalyzeError(f"{binary} is missing: `make analyze` installs it (requirements/model-analyzer.txt)")
    return binary


def environment() -> dict[str, str]:
    """What tritonserver's Python steps and perf_analyzer need: this venv's Python first, perf_analyzer's libraries."""
    env = analyzer.environment()
    server_env = TritonServer(PROJECT).environment()
    env["PATH"] = server_env["PATH"]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [env.get("LD_LIBRARY_PATH"), server_env.get("LD_LIBRARY_PATH")])
    )
    return env


def analyzer_repository(source: Path, entry: catalog.ModelEntry, target: Path, cores: int) -> dict:
    """The serving copy Model Analyzer starts from: the model sized for `cores`, no warmup, unbounded queues.

    Warmup is dropped because Model Analyzer's variants change max_batch_size, which a batch-8
    warmup sample would then exceed. The bounded queues (configs.queue_policy) are the overload
    policy, sized per instance: Model Analyzer's load would be shed by them instead of measured.
    """
    cores, resolved = layout.resolve(cores)
    summary = layout.render(source, target, [entry.name], resolved, cores, warmup=False)
    for config_file in sorted(target.glob("*/config.pbtxt")):
        config = configs.parse_pbtxt(config_file.read_text())
        if config.dynamic_batching.HasField("default_queue_policy"):
            config.dynamic_batching.default_queue_policy.max_queue_size = 0
            config_file.write_text(configs.text_format.MessageToString(config))
    return summary


def common_config(out: Path, study: str, budget_ms: int) -> dict[str, Any]:
    """Settings both local studies share: the real 2.51 binary on free loopback ports, results under `out/study`."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    return {
        "model_repository": str(out / "repository"),
        "triton_launch_mode": "local",
        "triton_server_path": str(server_binary()),
        "triton_server_flags": {
            "backend-directory": str(backend_directory()),
            "http-address": "127.0.0.1",
            "grpc-address": "127.0.0.1",
            "metrics-address": "127.0.0.1",
            "allow-sagemaker": "false",
            "allow-vertex-ai": "false",
        },
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_output_path": str(out / study / "tritonserver.log"),
        "perf_analyzer_path": str(analyzer.binary()),
        "perf_analyzer_flags": dict(PERF_ANALYZER_FLAGS, **{"input-data": str(out / "input.json")}),
        "client_protocol": "grpc",
        "latency_budget": budget_ms,
        "output_model_repository_path": str(out / study / "output_repository"),
        "override_output_model_repository": True,
        "export_path": str(out / study / "results"),
        "checkpoint_directory": str(out / study / "checkpoints"),
        "collect_cpu_metrics": True,
        "skip_detailed_reports": True,
    }


def ensemble_study(entry: catalog.ModelEntry, out: Path, cores: int, budget_ms: int) -> dict[str, Any]:
    """Quick search over every composing step's instances and max batch size, concurrency 1-4."""
    steps = [configs.preprocess_name(entry), configs.network_name(entry), configs.postprocess_name()]
    return common_config(out, "ensemble", budget_ms) | {
        "profile_models": [entry.triton_name],
        "run_config_search_mode": "quick",
        "cpu_only_composing_models": steps,
        "run_config_search_max_instance_count": cores,
        "run_config_search_min_model_batch_size": 1,
        "run_config_search_max_model_batch_size": configs.MAX_BATCH_SIZE,
        "run_config_search_min_concurrency": 1,
        "run_config_search_max_concurrency": 4,
    }


def network_study(entry: catalog.ModelEntry, out: Path, cores: int, budget_ms: int) -> dict[str, Any]:
    """A manual brute sweep of the portable network: instances x threads x queue delay, max batch 8."""
    counts = sorted({1, cores})
    model = {
        "model_config_parameters": {
            "max_batch_size": [configs.MAX_BATCH_SIZE],
            "instance_group": [[{"kind": "KIND_CPU", "count": counts}]],
            "dynamic_batching": {"max_queue_delay_microseconds": list(NETWORK_QUEUE_DELAYS_US)},
            "parameters": {"intra_op_threads": {"string_value": [str(n) for n in counts]}},
        },
        "parameters": {"concurrency": list(NETWORK_CONCURRENCY), "batch_sizes": [1]},
    }
    config = common_config(out, "network", budget_ms) | {
        "profile_models": {configs.network_name(entry): model},
        "run_config_search_disable": True,
    }
    del config["perf_analyzer_flags"]["input-data"]  # random uint8 crops: the network's speed ignores values
    return config


def run_study(name: str, config: dict[str, Any], out: Path, env: dict[str, str]) -> Path:
    """Write the study's Model Analyzer config and run `model-analyzer profile` on it; returns its log."""
    study_dir = out / name
    study_dir.mkdir(parents=True, exist_ok=True)
    config_path = study_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = study_dir / "model-analyzer.log"
    cmd = [str(model_analyzer()), "profile", "-f", str(config_path)]
    print(f"[{name}] {shlex.join(cmd)} (log: {log})", flush=True)
    with log.open("wb") as sink:
        try:
            code = subprocess.run(
                cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=STUDY_TIMEOUT_S, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            raise AnalyzeError(f"study {name} ran past {STUDY_TIMEOUT_S} s; see {log}") from None
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise AnalyzeError(f"study {name}: model-analyzer exited with {code}; see {log}:\n{tail}")
    return log


def read_measurements(study_dir: Path) -> list[dict[str, str]]:
    """Model Analyzer's inference table (results/reports/... or results/*.csv): one row per measured point."""
    found = sorted(study_dir.glob("results/**/metrics-model-inference.csv"))
    if not found:
        return []
    with found[0].open(newline="") as f:
        return [row for row in csv.DictReader(f) if any(row.values())]


def describe(config_dir: Path) -> dict[str, Any]:
    """The levers of one model config Model Analyzer wrote: instances, max batch, queue delay, threads."""
    config = configs.parse_pbtxt((config_dir / "config.pbtxt").read_text())
    described: dict[str, Any] = {
        "instances": sum(group.count for group in config.instance_group) or None,
        "max_batch_size": config.max_batch_size,
    }
    if config.HasField("dynamic_batching"):
        described["queue_delay_us"] = config.dynamic_batching.max_queue_delay_microseconds
    if "intra_op_threads" in config.parameters:
        described["threads"] = int(config.parameters["intra_op_threads"].string_value)
    if config.platform == "ensemble":
        described["steps"] = {
            step.model_name: describe(config_dir.parent / step.model_name) for step in config.ensemble_scheduling.step
        }
    return described


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="NextViT_small_224", help="catalog model to analyze")
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--latency-budget-ms", type=int, default=500, help="p99 latency budget of a request")
    parser.add_argument("--cores", type=int, default=None, help="cores to size for (default: the usable cores)")
    parser.add_argument("--studies", nargs="+", choices=("ensemble", "network"), default=["ensemble", "network"])
    parser.add_argument("--url", help="remote mode: gRPC host:port of a running deployment (no config search)")
    parser.add_argument("--metrics-url", help="remote mode: its metrics URL (default: the same host, port 8002)")


def remote_study(entry: catalog.ModelEntry, out: Path, url: str, metrics_url: str | None, budget_ms: int) -> dict:
    """The deployed ensemble as it stands, concurrency 1-16, through the admin key for perf_analyzer's statistics."""
    host = url.rsplit(":", 1)[0]
    flags = dict(PERF_ANALYZER_FLAGS, **{"input-data": str(out / "input.json")})
    key = key_from_environment()
    if key:
        flags["http-header"] = f"{header_name('grpc')}:{key}"
    return {
        "model_repository": str(out / "remote-repository"),
        "triton_launch_mode": "remote",
        "triton_grpc_endpoint": url,
        "triton_http_endpoint": f"{host}:8000",
        "triton_metrics_url": metrics_url or f"http://{host}:8002/metrics",
        "client_protocol": "grpc",
        "reload_model_disable": True,
        "run_config_search_disable": True,
        "profile_models": {entry.triton_name: {"parameters": {"concurrency": [1, 2, 4, 8, 16]}}},
        "perf_analyzer_path": str(analyzer.binary()),
        "perf_analyzer_flags": flags,
        "latency_budget": budget_ms,
        "export_path": str(out / "remote" / "results"),
        "checkpoint_directory": str(out / "remote" / "checkpoints"),
        "override_output_model_repository": True,
        "output_model_repository_path": str(out / "remote" / "output_repository"),
        "skip_detailed_reports": True,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.analyze", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    entry = catalog.get(args.model)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_input_data(sample_photo_paths(), out / "input.json")
    cores = args.cores or usable_cores()
    started, facts = time.time(), machine.facts()
    try:
        env = environment()
        if args.url:
            (out / "remote-repository").mkdir(exist_ok=True)
            studies = {"remote": remote_study(entry, out, args.url, args.metrics_url, args.latency_budget_ms)}
            serving = None
        else:
            from perf.serving import ensure_exported

            ensure_exported(args.repository, [entry])
            serving = analyzer_repository(args.repository, entry, out / "repository", cores)
            builders = {"ensemble": ensemble_study, "network": network_study}
            studies = {name: builders[name](entry, out, cores, args.latency_budget_ms) for name in args.studies}
        timings = {}
        for name, config in studies.items():
            begin = time.monotonic()
            run_study(name, config, out, env)
            timings[name] = round(time.monotonic() - begin, 1)
    except (AnalyzeError, analyzer.PerfAnalyzerError, layout.LayoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    record = {
        "model": entry.name,
        "cores": cores,
        "latency_budget_ms": args.latency_budget_ms,
        "committed_layout": dataclasses.asdict(layout.resolve(cores)[1]),
        "serving": serving,
        "studies": {name: summarize(out / name, timings[name]) for name in studies},
        "command": shlex.join(["python", "-m", "perf.analyze", *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine_before": facts,
        "load_average_after": os.getloadavg(),
    }
    (out / "analysis.json").write_text(json.dumps(record, indent=2) + "\n")
    report = write_report(record, out / "report.md")
    print(f"report: {report}", flush=True)
    return 0


def summarize(study_dir: Path, seconds: float) -> dict[str, Any]:
    """Every measured point of a study with the levers of its configuration, and the best within the budget."""
    rows = read_measurements(study_dir)
    output = study_dir / "output_repository"
    points = []
    for row in rows:
        name = row.get("Model Config Path", "")
        config_dir = output / name
        points.append(
            {
                "config": name,
                "concurrency": int(float(row.get("Concurrency", 0) or 0)),
                "throughput": float(row.get("Throughput (infer/sec)", 0) or 0),
                "p99_ms": float(row.get("p99 Latency (ms)", 0) or 0),
                "levers": describe(config_dir) if (config_dir / "config.pbtxt").is_file() else {},
                "satisfies": row.get("Satisfies Constraints", ""),
            }
        )
    return {"seconds": seconds, "points": points}


def write_report(record: dict[str, Any], path: Path) -> Path:
    """report.md: placeholder until the tables are settled."""
    path.write_text("```json\n" + json.dumps(record["studies"], indent=2) + "\n```\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
