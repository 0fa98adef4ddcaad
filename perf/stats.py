"""Latency and throughput summaries shared by every measurement (Triton, in-process, Locust).

One definition of a percentile for the whole report, so numbers from different tools compare:
numpy's default linear interpolation, on milliseconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """What one measured configuration produced: images/s and request latency percentiles."""

    images: int
    seconds: float
    throughput: float  # images per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(latencies_s: list[float], images: int, seconds: float) -> Summary:
    """Summary of per-request latencies (seconds) for `images` images processed in `seconds` of wall time."""
    if not latencies_s:
        raise ValueError("no latencies to summarize")
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Summary(
        images=images,
        seconds=seconds,
        throughput=images / seconds,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
    )
