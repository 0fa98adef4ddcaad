"""How long a run measures: `full` for the committed report, `smoke` for CI (seconds, same code paths).

In-process sample sizes adapt to the model: the naive pipeline is measured first, and its rate
turns "seconds per configuration" into image counts, so ViT-Base (a few images/s on 2 cores)
and NextViT-Small (about 10) get comparable measurement times. perf_analyzer points are time
windows (see perf/analyzer.py), which adapt by themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perf.analyzer import Windows


@dataclass(frozen=True)
class Profile:
    name: str
    naive_images: int  # images through the naive in-process pipeline (its p50 is a goal's reference)
    sweep_seconds: float  # per in-process sweep configuration
    sweep_batches: tuple[int, ...]
    sweep_sessions: tuple[int, ...] | None  # None: 1 to the number of cores
    sweep_threads: tuple[int, ...] | None  # None: 1 and the number of cores
    network_seconds: float  # per engine and batch size, network alone
    network_batches: tuple[int, ...]
    concurrencies: tuple[int, ...]  # perf_analyzer sweep
    windows: Windows  # perf_analyzer's measurement windows per concurrency level

    def images_for(self, rate: float, sessions: int, batch: int) -> int:
        """Images for one sweep configuration: at least two calls per session, about sweep_seconds long."""
        step = sessions * batch
        wanted = max(2 * step, math.ceil(rate * self.sweep_seconds))
        return math.ceil(wanted / step) * step


PROFILES = {
    "full": Profile(
        name="full",
        naive_images=40,
        sweep_seconds=8.0,
        sweep_batches=(1, 4, 8),
        sweep_sessions=None,
        sweep_threads=None,
        network_seconds=5.0,
        network_batches=(1, 8),
        concurrencies=(1, 2, 4, 6, 8),
        windows=Windows(window_ms=5000, stability_percent=30, max_trials=6, quiet_percent=10.0),
    ),
    "smoke": Profile(
        name="smoke",
        naive_images=5,
        sweep_seconds=0.0,
        sweep_batches=(1, 2),
        sweep_sessions=(2,),
        sweep_threads=(1,),
        network_seconds=0.0,
        network_batches=(1, 8),
        concurrencies=(1, 2),
        windows=Windows(window_ms=1000, stability_percent=100, max_trials=5),
    ),
}
