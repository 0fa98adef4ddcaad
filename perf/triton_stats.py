"""Triton's own view of a measurement: per-model statistics (gRPC API, behind the admin key), Prometheus
metrics, and the layout the server really runs.

perf_analyzer reports the ensemble as a whole; where the time goes inside it (preprocess, network,
postprocess, each split into queueing and compute) comes from the server's cumulative per-model
counters, read before and after each measurement point and subtracted. Failures are read the same
way from the metrics endpoint, so "no failed requests" is the server's word, not the client's.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import astuple, dataclass
from typing import NamedTuple

from model_repository import configs

DURATIONS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model, durations (DURATIONS) in ns; subtract two snapshots to get one measurement."""

    success: int = 0
    fail: int = 0
    inferences: int = 0
    executions: int = 0
    queue: int = 0
    compute_input: int = 0
    compute_infer: int = 0
    compute_output: int = 0

    def __sub__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(*(mine - theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True)))


def _counters(entry: dict) -> ModelCounters:
    stats = entry.get("inference_stats", {})
    return ModelCounters(
        success=int(stats.get("success", {}).get("count", 0)),
        fail=int(stats.get("fail", {}).get("count", 0)),
        inferences=int(entry.get("inference_count", 0)),
        executions=int(entry.get("execution_count", 0)),
        **{name: int(stats.get(name, {}).get("ns", 0)) for name in DURATIONS},
    )


def snapshot(client, headers: dict[str, str] | None = None) -> dict[str, ModelCounters]:
    """Counters of every loaded model; `headers` carries the admin key (the statistics API is restricted)."""
    stats = client.get_inference_statistics(as_json=True, headers=headers)
    return {entry["name"]: _counters(entry) for entry in stats.get("model_stats", [])}


def difference(before: dict[str, ModelCounters], after: dict[str, ModelCounters]) -> dict[str, ModelCounters]:
    return {name: after[name] - before[name] for name in after if name in before}


def ensemble_steps(client, ensemble: str) -> list[str]:
    """Composing model names of an ensemble, in step order (none for a model that is not an ensemble)."""
    config = client.get_model_config(ensemble, as_json=True)["config"]
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def step_split(delta: dict[str, ModelCounters], steps: list[str]) -> list[dict[str, object]]:
    """Mean time per request in each composing model: queueing and compute (input + infer + output).

    Triton accumulates every duration per request (a batch of 8 adds its compute time to all 8),
    so dividing by the successful request count gives what one request spent in that step.
    """
    return [_step(name, delta[name]) for name in steps if name in delta and delta[name].success]


def _step(name: str, counters: ModelCounters) -> dict[str, object]:
    per_request = {key: getattr(counters, key) / counters.success / 1e6 for key in DURATIONS}
    return {
        "step": configs.step_kind(name),  # steps are shared between models: name them by kind
        "model": name,
        "requests": counters.success,
        "queue_ms": per_request["queue"],
        "compute_ms": sum(per_request[key] for key in DURATIONS[1:]),
        "mean_batch": counters.inferences / counters.executions if counters.executions else 0.0,
    }


def served_layout(client, ensemble: str) -> dict[str, dict[str, object]]:
    """What the server runs for each step of an ensemble: instances, threads, batching (a cluster's too)."""
    layout = {}
    for model in ensemble_steps(client, ensemble):
        config = client.get_model_config(model, as_json=True)["config"]
        batching = config.get("dynamic_batching")
        layout[configs.step_kind(model)] = {
            "instances": sum(int(group.get("count", 1)) for group in config.get("instance_group", [])),
            "intra_op_threads": config.get("parameters", {}).get("intra_op_threads", {}).get("string_value"),
            "max_queue_delay_us": None if batching is None else int(batching.get("max_queue_delay_microseconds", 0)),
            "preferred_batch_size": [int(size) for size in (batching or {}).get("preferred_batch_size", [])],
        }
    return layout


class Sample(NamedTuple):
    metric: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(metrics_url: str, timeout: float = 5.0) -> list[Sample]:
    """Samples from a Prometheus text endpoint; none if it does not answer.

    A cluster may not expose its metrics port to the machine running the harness; the failure
    count then still comes from the per-model statistics, so a missing endpoint is not fatal.
    """
    url = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    matches = (_SAMPLE.match(line) for line in text.splitlines() if not line.startswith("#"))
    return [Sample(m["name"], dict(_LABEL.findall(m["labels"] or "")), float(m["value"])) for m in matches if m]


def failures_by_reason(samples: list[Sample], model: str) -> dict[str, float]:
    """nv_inference_request_failure of one model, by Triton's reason label (REJECTED, BACKEND, ...)."""
    return {
        s.labels.get("reason", "unknown"): s.value
        for s in samples
        if s.metric == "nv_inference_request_failure" and s.labels.get("model") == model
    }


def gauge(samples: list[Sample], metric: str) -> float | None:
    return next((s.value for s in samples if s.metric == metric), None)
