"""Triton Model Analyzer (1.44.0, the 24.10 release of the local 2.51.0 server) on one served model.

Local mode (the default, `make analyze`) runs two studies against the real tritonserver from the
nvidia-pytriton wheel, on a serving copy of the model rendered for this machine: `ensemble`, Model
Analyzer's quick search on the ensemble (the only search it has for ensembles), and `network`, a
brute sweep of the portable network alone over what that search cannot vary. report.md puts the
best configuration of each within the p99 budget next to the layout configs.py commits.

Remote mode (--url, experimental) points Model Analyzer at a running server, which a serving
release refuses (docs/operations.md says what was checked). Model Analyzer lives in its own
environment, .venv/model-analyzer: it pulls optuna, numba, docker and pdfkit, which nothing else needs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import catalog
from catalog.reference import sample_photo_paths
from model_repository import configs, layout, procfs
from model_repository.admin import header_name, key_from_environment
from model_repository.cores import usable_cores
from model_repository.paths import PROJECT
from model_repository.server import Ports, TritonServer
from model_repository.wheel import backend_directory, server_binary
from perf import analyzer, machine
from perf.input_data import write_input_data
from perf.serving import ensure_exported
from perf.study import arguments, command, table

ANALYZER_VENV = PROJECT / ".venv" / "model-analyzer"
DEFAULT_OUT = PROJECT / "build" / "analyze"
STUDY_TIMEOUT_S = 1200
STALL_S = 240  # one measurement here takes 20-60 s
# perf_analyzer windows Model Analyzer asks for: 10 requests, three in a row within 30 %, since a
# 2-core machine shared with other work drifts more than the default 10 % allows (docs/operations.md).
PERF_ANALYZER_FLAGS = {
    "measurement-mode": "count_windows",
    "measurement-request-count": 10,
    "stability-percentage": 30,
    # Remote mode measures a deployment, which refuses client shared memory (a key Model Analyzer passes
    # through: model_analyzer/perf_analyzer/perf_config.py perf_analyzer_args).
    "shared-memory": analyzer.SHARED_MEMORY,
}
# The network study's levers: instances x ONNX Runtime intra-op threads x the batcher's queue delay.
NETWORK_QUEUE_DELAYS_US = (500, 4000)
NETWORK_CONCURRENCY = (2,)  # two requests in flight on two cores: overlap and batching both show


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
    """The serving copy Model Analyzer starts from: the model sized for `cores`, no warmup, no queue policies.

    Warmup is dropped because Model Analyzer's variants change max_batch_size, which a batch-8
    warmup sample would then exceed. The queue policies (configs.queue_policy) are the overload
    policy, sized per instance: Model Analyzer's load would be shed by them instead of measured, and
    any policy, even without a size, turns off 2.51's prefetching (docs/capacity.md, "Half-second stalls").
    """
    cores, resolved = layout.resolve(cores)
    return layout.render(source, target, [entry.name], resolved, cores, warmup=False, queue_policies=False)


@dataclass(frozen=True)
class LocalServer:
    """The tritonserver Model Analyzer starts: the wheel's 2.51 (CPU here), or a GPU image's own binary."""

    path: Path
    backends: Path


def study_files(out: Path, study: str) -> dict[str, Any]:
    """Where a study's results go (under `out/study`), and perf_analyzer with the photographs as input."""
    return {
        "client_protocol": "grpc",
        "perf_analyzer_path": str(analyzer.binary()),
        "perf_analyzer_flags": dict(PERF_ANALYZER_FLAGS, **{"input-data": str(out / "input.json")}),
        "output_model_repository_path": str(out / study / "output_repository"),
        "override_output_model_repository": True,
        "export_path": str(out / study / "results"),
        "checkpoint_directory": str(out / study / "checkpoints"),
        "skip_detailed_reports": True,
    }


def common_config(out: Path, study: str, server: LocalServer) -> dict[str, Any]:
    """Settings both local studies share: the real server on free loopback ports, results under `out/study`."""
    http, grpc, metrics = Ports.free()
    return study_files(out, study) | {
        "model_repository": str(out / "repository"),
        "triton_launch_mode": "local",
        "triton_server_path": str(server.path),
        # Only the listener flags of model_repository/flags.py server_arguments: Model Analyzer loads and unloads
        # its variants (it starts the server in explicit model-control mode) and reads statistics, which the
        # launcher's fixed models and restricted APIs would refuse.
        "triton_server_flags": {
            "backend-directory": str(server.backends),
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
    }


def on_gpu(repository: Path, model: str) -> bool:
    config = configs.parse_pbtxt((repository / model / "config.pbtxt").read_text())
    return any(group.kind == group.KIND_GPU for group in config.instance_group)


def ensemble_study(
    entry: catalog.ModelEntry, out: Path, cores: int, budget_ms: int, server: LocalServer
) -> dict[str, Any]:
    """Quick search over every composing step's instances and max batch size, concurrency 1-4."""
    steps = [configs.preprocess_name(entry), configs.network_name(entry), configs.postprocess_name()]
    return common_config(out, "ensemble", server) | {
        "profile_models": [entry.triton_name],
        "run_config_search_mode": "quick",
        # No latency_budget here: with one, 1.44's quick search steps back and forth without end once a
        # configuration past the budget follows one within it (TMA-871). The report applies the budget.
        # Steps Model Analyzer must keep on KIND_CPU: the Python steps, and the network unless it runs on a GPU.
        "cpu_only_composing_models": [step for step in steps if not on_gpu(out / "repository", step)],
        "run_config_search_max_instance_count": cores,
        "run_config_search_min_model_batch_size": 1,
        "run_config_search_max_model_batch_size": configs.MAX_BATCH_SIZE,
        "run_config_search_min_concurrency": 1,
        "run_config_search_max_concurrency": 4,
    }


def network_study(
    entry: catalog.ModelEntry, out: Path, cores: int, budget_ms: int, server: LocalServer
) -> dict[str, Any]:
    """A manual brute sweep of the network: instances x threads (portable) x queue delay, at its max batch.

    The portable network's ONNX Runtime threads are a model parameter (`intra_op_threads`), which
    Model Analyzer can sweep only on the model itself, not through the ensemble's quick search.
    """
    name = configs.network_name(entry)
    gpu = on_gpu(out / "repository", name)
    counts = [1, 2] if gpu else sorted({1, cores})
    sweep: dict[str, Any] = {
        "max_batch_size": [configs.GPU_MAX_BATCH_SIZE if gpu else configs.MAX_BATCH_SIZE],
        "instance_group": [[{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": counts}]],
        "dynamic_batching": {"max_queue_delay_microseconds": list(NETWORK_QUEUE_DELAYS_US)},
    }
    if not gpu:
        sweep["parameters"] = {"intra_op_threads": {"string_value": [str(n) for n in counts]}}
    concurrency = [1, 16, 64] if gpu else list(NETWORK_CONCURRENCY)
    model = {"model_config_parameters": sweep, "parameters": {"concurrency": concurrency, "batch_sizes": [1]}}
    config = common_config(out, "network", server) | {
        "profile_models": {name: model},
        "run_config_search_disable": True,
        "latency_budget": budget_ms,
    }
    del config["perf_analyzer_flags"]["input-data"]  # random uint8 crops: the network's speed ignores values
    return config


def run_study(name: str, config: dict[str, Any], out: Path, env: dict[str, str]) -> Path:
    """Write the study's Model Analyzer config and run `model-analyzer profile` on it; returns its log.

    Model Analyzer and the tritonserver and perf_analyzer it starts run in their own process group,
    stopped together on a timeout or a stall (no new measurement for STALL_S: 1.44's quick search can
    step back and forth between measured configurations forever, its own TODO TMA-871).
    """
    study_dir = out / name
    study_dir.mkdir(parents=True, exist_ok=True)
    config_path = study_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = study_dir / "model-analyzer.log"
    cmd = [str(model_analyzer()), "profile", "-f", str(config_path)]
    print(f"[{name}] {shlex.join(cmd)} (log: {log})", flush=True)
    with log.open("wb") as sink:
        # perf_analyzer writes its CSV files into the working directory: the study's, not the checkout.
        process = subprocess.Popen(
            cmd, cwd=study_dir, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            problem = watch(process, log)
        except BaseException:  # Ctrl-C or SIGTERM (main turns it into SystemExit): nothing left running
            stop_group(process)
            raise
    if problem:
        raise AnalyzeError(f"study {name}: {problem}; see {log}")
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise AnalyzeError(f"study {name}: model-analyzer exited with {process.returncode}; see {log}:\n{tail}")
    return log


def watch(process: subprocess.Popen, log: Path) -> str | None:
    """Wait for Model Analyzer; None when it ended by itself, else why its process group was stopped."""
    start = last_progress = time.monotonic()
    measured = 0
    while process.poll() is None:
        time.sleep(5)
        now = time.monotonic()
        count = log.read_text(errors="replace").count("] Profiling ")
        if count > measured:
            measured, last_progress = count, now
        problem = None
        if now - start > STUDY_TIMEOUT_S:
            problem = f"ran past {STUDY_TIMEOUT_S} s"
        elif now - last_progress > STALL_S:
            problem = f"no new measurement for {STALL_S} s (Model Analyzer's search stalled)"
        if problem:
            stop_group(process)
            return problem
    return None


def stop_group(process: subprocess.Popen) -> None:
    """Stop Model Analyzer and everything it started (it puts perf_analyzer in a session of its own)."""
    started = [child.pid for child in procfs.descendants(process.pid)[1:]]
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in started:  # tritonserver or perf_analyzer left behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = arguments("perf analyze", __doc__, DEFAULT_OUT)
    parser.add_argument("--latency-budget-ms", type=int, default=500, help="p99 latency budget of a request")
    parser.add_argument("--cores", type=int, default=None, help="cores to size for (default: the usable cores)")
    parser.add_argument("--studies", nargs="+", choices=("ensemble", "network"), default=["ensemble", "network"])
    parser.add_argument("--triton-server-path", type=Path, help="local mode: tritonserver (default: the wheel's 2.51)")
    parser.add_argument("--backend-directory", type=Path, help="local mode: its backends (default: the wheel's Python)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite report.md from the last run's results (no measuring)"
    )
    parser.add_argument(
        "--url", help="remote mode (experimental): gRPC host:port of a server in explicit model control"
    )
    parser.add_argument("--metrics-url", help="remote mode: its metrics URL (default: the same host, port 8002)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="remote mode: the concurrencies to measure"
    )
    parser.add_argument("--cpu-only", action="store_true", help="remote mode: a server without GPUs")
    return parser.parse_args(argv)


def remote_study(entry: catalog.ModelEntry, out: Path, args: argparse.Namespace) -> dict:
    """The ensemble on a running server at the given concurrencies (experimental: see docs/operations.md).

    Model Analyzer 1.44 needs the server's model-repository API without a key (it cannot send one)
    and --model-control-mode=explicit, so a serving release refuses it; perf_analyzer still sends
    the admin key for the statistics API.
    """
    host, config = args.url.rsplit(":", 1)[0], study_files(out, "remote")
    if key := key_from_environment():
        config["perf_analyzer_flags"]["http-header"] = f"{header_name('grpc')}:{key}"
    return config | {
        "model_repository": str(out / "remote-repository"),
        "triton_launch_mode": "remote",
        "triton_grpc_endpoint": args.url,
        "triton_http_endpoint": f"{host}:8000",
        "triton_metrics_url": args.metrics_url or f"http://{host}:8002/metrics",
        "reload_model_disable": True,
        "run_config_search_disable": True,
        "profile_models": {
            entry.triton_name: {"parameters": {"concurrency": args.concurrency}, "cpu_only": args.cpu_only}
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so run_study stops what it started
    entry = catalog.get(args.model)
    out = args.out.resolve()
    if args.report_only:
        record = json.loads((out / "analysis.json").read_text())
        for name, study in record["studies"].items():
            record["studies"][name] = summarize(out / name, study["seconds"])
        print(f"report: {write_report(record, out / 'report.md')}", flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_input_data(sample_photo_paths(), out / "input.json")
    cores = args.cores or usable_cores()
    started, facts = time.time(), machine.facts()
    try:
        env = environment()
        if args.url:
            (out / "remote-repository").mkdir(exist_ok=True)
            studies = {"remote": remote_study(entry, out, args)}
            serving = None
        else:
            ensure_exported(args.repository, [entry])
            serving = analyzer_repository(args.repository, entry, out / "repository", cores)
            builders = {"ensemble": ensemble_study, "network": network_study}
            server = LocalServer(
                args.triton_server_path or server_binary(), args.backend_directory or backend_directory()
            )
            studies = {name: builders[name](entry, out, cores, args.latency_budget_ms, server) for name in args.studies}
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
        "committed_layout": dataclasses.asdict(layout.resolve(cores).layout),
        "serving": serving,
        "studies": {name: summarize(out / name, timings[name]) for name in studies},
        "command": command("perf analyze", argv),
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
        name, _, composing = row.get("Model Config Path", "").partition(": ")  # ensembles list their steps' configs
        config_dir = output / name
        if composing:
            levers = {"steps": {step: describe(output / step) for step in composing.split(", ")}}
        else:
            levers = describe(config_dir) if (config_dir / "config.pbtxt").is_file() else {}
        points.append(
            {
                "config": name,
                "concurrency": int(float(row.get("Concurrency", 0) or 0)),
                "throughput": float(row.get("Throughput (infer/sec)", 0) or 0),
                "p99_ms": float(row.get("p99 Latency (ms)", 0) or 0),
                "levers": levers,
                "satisfies": row.get("Satisfies Constraints", ""),
            }
        )
    return {"seconds": seconds, "points": points}


def best(points: list[dict[str, Any]], budget_ms: int) -> dict[str, Any] | None:
    """Model Analyzer's rule: the highest throughput among the points within the p99 latency budget."""
    within = [p for p in points if p["p99_ms"] <= budget_ms]
    return max(within, key=lambda p: p["throughput"]) if within else None


def levers_text(levers: dict[str, Any]) -> str:
    """One cell: `2 inst x 1 thr, batch 8, delay 500 us`, or the steps of an ensemble joined by ' / '."""
    if "steps" in levers:
        kinds = {name: configs.step_kind(name.rpartition("_config_")[0] or name) for name in levers["steps"]}
        return " / ".join(f"{kinds[name]}: {levers_text(step)}" for name, step in levers["steps"].items())
    parts = [f"{levers.get('instances')} inst"]
    if "threads" in levers:
        parts[0] += f" x {levers['threads']} thr"
    parts.append(f"batch {levers.get('max_batch_size')}")
    if levers.get("queue_delay_us") is not None:
        parts.append(f"delay {levers['queue_delay_us']} us")
    return ", ".join(parts)


def study_table(study: dict[str, Any], budget_ms: int) -> list[str]:
    header = ["config", "levers", "concurrency", "infer/s", "p99 ms", "within budget"]
    rows = []
    for p in sorted(study["points"], key=lambda p: -p["throughput"]):
        cells = [p["config"], levers_text(p["levers"]), p["concurrency"], f"{p['throughput']:.1f}"]
        rows.append([*cells, f"{p['p99_ms']:.0f}", "yes" if p["p99_ms"] <= budget_ms else "no"])
    return table(header, rows)


def write_report(record: dict[str, Any], path: Path) -> Path:
    """report.md: what each study measured, its choice within the budget, and the committed layout beside it."""
    facts = record["machine_before"]
    flags = facts["cpu_flags"]
    committed = record["committed_layout"]
    lines = [
        f"# Model Analyzer: {record['model']}",
        "",
        f"`{record['command']}`, started {record['started']}, on {facts['cpu_model']} "
        f"({facts['usable_cores']} usable cores; {', '.join(flags) or 'no AVX'}), load average "
        f"{facts['load_average'][0]:.2f} at the start and {record['load_average_after'][0]:.2f} at the end. "
        f"Latency budget: p99 {record['latency_budget_ms']} ms per request.",
        "",
        f"Committed layout for {record['cores']} cores (model_repository/configs.py `Layout.for_cores`): "
        f"preprocess {committed['preprocess_instances']} instances, network {committed['network_cpu_instances']} "
        f"instance x {committed['network_cpu_threads']} threads, postprocess {committed['postprocess_instances']}; "
        f"max batch {configs.MAX_BATCH_SIZE}, network queue delay 500 us.",
    ]
    for name, study in record["studies"].items():
        chosen = best(study["points"], record["latency_budget_ms"])
        lines += ["", f"## {name} ({study['seconds']:.0f} s)", "", *study_table(study, record["latency_budget_ms"])]
        if chosen:
            lines.append(
                f"Model Analyzer's choice within the budget: **{chosen['config']}** ({levers_text(chosen['levers'])}) "
                f"at concurrency {chosen['concurrency']}: {chosen['throughput']:.1f} infer/s, "
                f"p99 {chosen['p99_ms']:.0f} ms."
            )
        else:
            lines.append("No measured point met the latency budget.")
    path.write_text("\n".join(lines) + "\n")
    return path
