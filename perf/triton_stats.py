"""Triton's own view of a measurement: per-model statistics (gRPC API, behind the admin key) and Prometheus metrics.

perf_analyzer reports the ensemble as a whole; where the time goes inside it (preprocess, network,
postprocess, each split into queueing and compute) comes from the server's cumulative per-model
counters, read before and after each measurement point and subtracted. Failures are read the same
way from the metrics endpoint, so "no failed requests" is the server's word, not the client's.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field

from model_repository import configs

DURATIONS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model; subtract two snapshots to get one measurement."""

    success: int
    fail: int
    inferences: int
    executions: int
    ns: dict[str, int]
    executions_by_batch: dict[int, int] = field(default_factory=dict)

    def __sub__(self, other: ModelCounters) -> ModelCounters:
        batches = {
            size: count - other.executions_by_batch.get(size, 0) for size, count in self.executions_by_batch.items()
        }
        return ModelCounters(
            success=self.success - other.success,
            fail=self.fail - other.fail,
            inferences=self.inferences - other.inferences,
            executions=self.executions - other.executions,
            ns={key: self.ns[key] - other.ns.get(key, 0) for key in self.ns},
            executions_by_batch={size: count for size, count in batches.items() if count},
        )


def _count(stat: dict, key: str = "count") -> int:
    return int(stat.get(key, 0) or 0)


def _counters(entry: dict) -> ModelCounters:
    stats = entry.get("inference_stats", {})
    return ModelCounters(
        success=_count(stats.get("success", {})),
        fail=_count(stats.get("fail", {})),
        inferences=int(entry.get("inference_count", 0) or 0),
        executions=int(entry.get("execution_count", 0) or 0),
        ns={name: _count(stats.get(name, {}), "ns") for name in DURATIONS},
        executions_by_batch={
            int(b["batch_size"]): _count(b.get("compute_infer", {})) for b in entry.get("batch_stats", [])
        },
    )


def snapshot(client, headers: dict[str, str] | None = None) -> dict[str, ModelCounters]:
    """Counters of every loaded model, from a tritonclient.grpc InferenceServerClient.

    The statistics API is restricted (docs/security.md): `headers` carries the admin key
    (analyzer.Target.admin_headers()).
    """
    stats = client.get_inference_statistics(as_json=True, headers=headers)
    return {entry["name"]: _counters(entry) for entry in stats.get("model_stats", [])}


def difference(before: dict[str, ModelCounters], after: dict[str, ModelCounters]) -> dict[str, ModelCounters]:
    return {name: after[name] - before[name] for name in after if name in before}


def ensemble_steps(client, ensemble: str) -> list[str]:
    """Composing model names of an ensemble, in step order."""
    config = client.get_model_config(ensemble, as_json=True)["config"]
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def step_split(delta: dict[str, ModelCounters], ensemble: str, steps: list[str]) -> list[dict[str, object]]:
    """Mean time per request in each composing model: queueing and compute (input + infer + output).

    Triton accumulates every duration per request (a batch of 8 adds its compute time to all 8),
    so dividing by the successful request count gives what one request spent in that step.
    """
    split = []
    for name in steps:
        counters = delta.get(name)
        if counters is None or counters.success == 0:
            continue
        per_request = {key: counters.ns[key] / counters.success / 1e6 for key in DURATIONS}
        split.append(
            {
                "step": configs.step_kind(name),  # steps are shared between models: name them by kind
                "model": name,
                "requests": counters.success,
                "failed": counters.fail,
                "queue_ms": per_request["queue"],
                "compute_ms": sum(per_request[key] for key in DURATIONS[1:]),
                "compute_infer_ms": per_request["compute_infer"],
                "mean_batch": counters.inferences / counters.executions if counters.executions else 0.0,
                "executions_by_batch": {str(k): v for k, v in sorted(counters.executions_by_batch.items())},
            }
        )
    return split


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(metrics_url: str, timeout: float = 5.0) -> list[tuple[str, dict[str, str], float]]:
    """Samples from a Prometheus text endpoint: (metric, labels, value); none if it does not answer.

    A cluster may not expose its metrics port to the machine running the harness; the failure
    count then still comes from the per-model statistics, so a missing endpoint is not fatal.
    """
    url = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def failures_by_reason(samples: list[tuple[str, dict[str, str], float]], model: str) -> dict[str, float]:
    """nv_inference_request_failure of one model, by Triton's reason label (REJECTED, BACKEND, ...)."""
    return {
        labels.get("reason", "unknown"): value
        for name, labels, value in samples
        if name == "nv_inference_request_failure" and labels.get("model") == model
    }


def gauge(samples: list[tuple[str, dict[str, str], float]], metric: str) -> float | None:
    values = [value for name, _, value in samples if name == metric]
    return values[0] if values else None
