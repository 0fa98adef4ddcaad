"""`make perf`: a perf_analyzer concurrency sweep of each model on one server, into results.json.

Without a URL the local server (perf.serving) starts on the exported models and stops afterwards;
each model is warmed up, then measured at every concurrency of the profile; then, on the same cores and
photographs, PaddleClas's own deploy path (perf.peer), the baseline the report divides Triton by.
perf.report renders results.json as markdown and plots (and can again, later, alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from catalog import ModelEntry
from catalog.reference import sample_photo_paths
from perf import machine, serving, study, triton_stats
from perf.analyzer import Analyzer, PerfAnalyzerError, Target, Windows
from perf.input_data import write_input_data


@dataclass(frozen=True)
class Profile:
    """How long a run measures: `full` for the committed report, `smoke` for CI (seconds, same code paths)."""

    concurrencies: tuple[int, ...]
    windows: Windows
    peer_seconds: float  # how long the PaddleClas deploy path is timed, per model


PROFILES = {
    "full": Profile((1, 2, 3, 4), Windows(window_ms=5000, stability_percent=30, max_trials=6, quiet_percent=10), 20.0),
    "smoke": Profile((1, 2), Windows(window_ms=1000, stability_percent=100, max_trials=10), 2.0),
}


def sweep_server(target: Target, entries: list[ModelEntry], profile: Profile, out: Path) -> dict:
    """Every model swept on one server: per-model points and the layout the server runs."""
    import tritonclient.grpc as grpcclient

    input_data = write_input_data(sample_photo_paths(), out / "input_data.json")
    results = {}
    with grpcclient.InferenceServerClient(target.grpc_url) as client:
        version = client.get_server_metadata(as_json=True).get("version")
        analyzer = Analyzer(client, target, input_data, profile.windows, out)
        for entry in entries:
            if not client.is_model_ready(entry.triton_name):
                raise PerfAnalyzerError(f"model {entry.triton_name} is not ready at {target.grpc_url}")
            results[entry.triton_name] = {
                "catalog_name": entry.name,
                "points": [asdict(p) for p in analyzer.sweep(entry.triton_name, profile.concurrencies)],
                "layout": triton_stats.served_layout(client, entry.triton_name),
                "server_version": version,
            }
    return results


def peers(entries: list[ModelEntry], repository: Path, profile: Profile) -> dict:
    """PaddleClas's deploy path per model, on the sample photographs the sweep sent."""
    from perf import peer

    print(f"PaddleClas's deploy path in process ({peer.SOURCE}), batches of {peer.BATCH}")
    quiet, photos = profile.windows.quiet_percent, sample_photo_paths()
    return {e.triton_name: peer.measure(e, repository, photos, profile.peer_seconds, quiet) for e in entries}


def run(
    entries: list[ModelEntry], repository: Path, out: Path, profile: str, url: str | None, metrics_url: str | None
) -> Path:
    """The whole measurement with the PROFILES entry named `profile`; returns the path of results.json."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "kind": "perf",
        "profile": profile,
        "command": study.command("perf"),
        "started_at": machine.utc_now(),
        "machine": machine.facts(),
    }
    started = time.monotonic()
    local = url is None
    remote = None if local else contextlib.nullcontext(serving.remote(url, metrics_url))
    with remote or serving.local(repository, entries, out / "tritonserver.log") as target:
        print(f"perf_analyzer sweep against {'a local tritonserver at ' if local else ''}{target.grpc_url}")
        results["models"] = sweep_server(target, entries, PROFILES[profile], out)
    if local:  # the cores the server used are free again: the peer gets the same ones
        results["peer"] = peers(entries, repository, PROFILES[profile])
    results["target"] = {"url": target.grpc_url, "metrics_url": target.metrics_url, "local_server": local}
    results |= {"finished_at": machine.utc_now(), "duration_s": round(time.monotonic() - started, 1)}
    results["load_average_end"] = os.getloadavg()
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {path}")
    return path
