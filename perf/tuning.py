"""`make perf-tune`: serve the same exported models under candidate layouts and measure each.

A layout is the set of levers configs.py fixes: preprocess instances, network instances and
ONNX Runtime threads per instance, dynamic batching queue delay and preferred sizes. Each
candidate gets its own staged repository and a fresh local server, then a short perf_analyzer
sweep per model; the table in tuning.json is the evidence for the numbers in configs.py.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import catalog
from catalog.reference import sample_photo_paths
from perf import analyzer, baselines, machine, repository, serving
from perf.input_data import write_input_data
from perf.profiles import PROFILES
from perf.repository import Layout

# Two cores. One two-threaded ONNX Runtime instance: the best single-request latency. Two
# single-threaded instances: no intra-op pool to synchronise, the best throughput per core.
# Two two-threaded instances whose idle threads block instead of spinning: both, if the
# oversubscription is cheap enough. And the throughput layout given time to form batches.
CANDIDATES = (
    Layout("net 2x1", network_instances=2, network_threads=1),
    Layout("net 1x2", network_instances=1, network_threads=2, network_spinning=True),
    Layout("net 2x2 no spin", network_instances=2, network_threads=2, network_spinning=False),
    Layout("net 2x1, pre 1", preprocess_instances=1, network_instances=2, network_threads=1),
    Layout(
        "net 2x1, batch 2/4 within 20 ms",
        network_instances=2,
        network_threads=1,
        queue_delay_us=20_000,
        preferred_batch_sizes=(2, 4),
    ),
)


def parse_layout(spec: str) -> Layout:
    """NAME=pre:2,inst:1,threads:2,spin:0,delay:500,preferred:4/8 (any subset of the keys)."""
    name, _, body = spec.partition("=")
    values: dict[str, object] = {}
    keys = {"pre": "preprocess_instances", "inst": "network_instances", "threads": "network_threads"}
    keys |= {"spin": "network_spinning"}
    keys |= {"delay": "queue_delay_us", "preferred": "preferred_batch_sizes"}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        if key not in keys:
            raise ValueError(f"unknown layout key {key!r} in {spec!r}; expected {', '.join(keys)}")
        if key == "preferred":
            values[keys[key]] = tuple(int(v) for v in value.split("/"))
        else:
            values[keys[key]] = bool(int(value)) if key == "spin" else int(value)
    return Layout(name, **values)  # type: ignore[arg-type]


def measure_candidate(
    target: analyzer.Target, entries: list[catalog.ModelEntry], concurrencies: list[int], window_ms: int, out: Path
) -> dict[str, dict[str, object]]:
    import tritonclient.grpc as grpcclient

    windows = replace(PROFILES["full"].windows, window_ms=window_ms)
    input_data = write_input_data(sample_photo_paths(), out / "input_data.json")
    measured = {}
    with grpcclient.InferenceServerClient(target.grpc_url) as client:
        for entry in entries:
            model = entry.triton_name
            analyzer.warm_up(target, model, input_data, out, requests=2 * len(sample_photo_paths()))
            points = analyzer.sweep(client, target, model, concurrencies, windows, input_data, out)
            best = max(points, key=lambda p: p.throughput)
            c1 = next(p for p in points if p.concurrency == 1)
            measured[model] = {
                "best_throughput": best.throughput,
                "best_concurrency": best.concurrency,
                "c1_p50_ms": c1.p50_ms,
                "failed": sum(p.failed_requests for p in points),
                "points": [p.as_dict() for p in points],
                "layout": repository.served_layout(client, model),
            }
    return measured


def tune(
    models: list[str],
    source_repository: Path,
    out: Path,
    layouts: list[Layout],
    concurrencies: list[int],
    window_ms: int,
    progress=print,
) -> Path:
    entries = [catalog.get(name) for name in models]
    repository.ensure_exported(source_repository, entries, progress)
    # The in-process pipeline is measured in this run too, so every candidate can be judged
    # against the goals without comparing numbers from different runs.
    progress("in-process pipeline baselines (full profile)")
    in_process = {
        entry.triton_name: baselines.pipelines(entry, source_repository, PROFILES["full"], out, progress)
        for entry in entries
    }
    results: dict[str, object] = {
        "kind": "tuning",
        "command": "python -m perf " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "concurrencies": concurrencies,
        "load_average_start": machine.load_average(),
        "baselines": in_process,
        "candidates": [],
    }
    for layout in layouts:
        progress(f"candidate {layout.name!r}")
        served = repository.derive(source_repository, out / "model_repository", entries, layout)
        work = out / "runs" / "".join(ch if ch.isalnum() else "_" for ch in layout.name)
        with serving.local(served, work / "tritonserver.log", layout.serving_layout()) as (target, _server):
            models_measured = measure_candidate(target, entries, concurrencies, window_ms, work)
        results["candidates"].append({"layout": layout.as_dict(), "models": models_measured})  # type: ignore[union-attr]
        for model, m in models_measured.items():
            progress(
                f"  {model}: best {m['best_throughput']:.2f} images/s at concurrency {m['best_concurrency']}, "
                f"p50 at 1: {m['c1_p50_ms']:.1f} ms"
            )
        results["load_average_end"] = machine.load_average()
        (out / "tuning.json").write_text(json.dumps(results, indent=2) + "\n")
    return out / "tuning.json"
