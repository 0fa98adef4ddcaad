"""`make perf`: baselines, then the perf_analyzer sweep, then the report, all in one run.

Order matters on a small machine: the in-process baselines run first, while no server holds any
core; then the local server starts (or the given URL is used), each model is warmed up and swept
over concurrency, and the server stops before the report is drawn. Everything lands in one
results.json, from which perf.report renders markdown and plots (and can again, later, alone).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import catalog
from catalog.reference import sample_photo_paths
from perf import analyzer, baselines, machine, repository, serving
from perf.input_data import write_input_data
from perf.profiles import Profile


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sweep_server(
    target: analyzer.Target,
    entries: list[catalog.ModelEntry],
    profile: Profile,
    out: Path,
    progress=print,
) -> dict[str, dict[str, object]]:
    """Warm up and sweep every model on one server; returns per-model points and served layout."""
    import tritonclient.grpc as grpcclient

    input_data = write_input_data(sample_photo_paths(), out / "input_data.json")
    results: dict[str, dict[str, object]] = {}
    with grpcclient.InferenceServerClient(target.grpc_url) as client:
        server = client.get_server_metadata(as_json=True)
        for entry in entries:
            model = entry.triton_name
            if not client.is_model_ready(model):
                raise analyzer.PerfAnalyzerError(f"model {model} is not ready at {target.grpc_url}")
            analyzer.warm_up(target, model, input_data, out, requests=2 * len(sample_photo_paths()))
            concurrencies = list(profile.concurrencies)
            points = analyzer.sweep(client, target, model, concurrencies, profile.windows, input_data, out, progress)
            results[model] = {
                "points": [p.as_dict() for p in points],
                "layout": repository.served_layout(client, model),
                "server_version": server.get("version"),
            }
    return results


def run(
    models: list[str],
    source_repository: Path,
    out: Path,
    profile: Profile,
    url: str | None = None,
    metrics_url: str | None = None,
    progress=print,
) -> Path:
    """The whole measurement; returns the path of results.json."""
    entries = [catalog.get(name) for name in models]
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "kind": "perf",
        "profile": profile.name,
        "command": "python -m perf " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "started_at": _now(),
        "machine": machine.facts(),
        "target": {"url": url, "local_server": url is None},
    }
    started = time.monotonic()
    repository.ensure_exported(source_repository, entries, progress)
    per_model: dict[str, dict[str, object]] = {}
    progress(f"baselines in-process ({profile.name} profile)")
    for entry in entries:
        measured = baselines.measure(entry, source_repository, profile, out, progress)
        per_model[entry.triton_name] = {"catalog_name": entry.name, "baselines": measured}
    if url is None:
        served = repository.derive(source_repository, out / "model_repository", entries)
        progress(f"starting a local tritonserver on {served} (configs from model_repository/configs.py)")
        with serving.local(served, out / "tritonserver.log") as (target, _server):
            progress(f"perf_analyzer sweep against {target.grpc_url}")
            triton = sweep_server(target, entries, profile, out, progress)
    else:
        target = serving.remote(url, metrics_url)
        progress(f"perf_analyzer sweep against {target.grpc_url}")
        triton = sweep_server(target, entries, profile, out, progress)
    for model, data in triton.items():
        per_model[model].update(data)
    results["target"] = {"url": target.grpc_url, "metrics_url": target.metrics_url, "local_server": url is None}
    results["models"] = per_model
    results["finished_at"] = _now()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["load_average_end"] = machine.load_average()
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    progress(f"raw results: {path}")
    return path
