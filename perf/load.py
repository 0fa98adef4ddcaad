"""`make load`: Locust headless against a server (given URL, or a local one), then a summary.

Locust's own CSV files stay under build/perf/load/ as written; each step's exact percentiles and
goodput come from the locustfile's per-request rows (requests.csv), and the summary (load.json,
load.md) counts failures by cause. The exit status is non-zero when any request failed.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from client.classify import DEFAULT_DEADLINE_S
from perf import report, study
from perf.machine import utc_now

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class Settings:
    """The step shape: `step_users` more users every `step_seconds`, for `steps` steps."""

    step_users: int
    step_seconds: float
    steps: int


def locust_command(url: str, model: str, out: Path, settings: Settings) -> list[str]:
    return [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url, "--triton-model", model),
        *("--step-users", str(settings.step_users), "--step-seconds", str(settings.step_seconds)),
        *("--steps", str(settings.steps), "--csv", str(out / "locust"), "--csv-full-history"),
        *("--samples-csv", str(out / "requests.csv"), "--only-summary", "--loglevel", "WARNING"),
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def failures_by_cause(out: Path) -> list[dict[str, object]]:
    """Locust's failures CSV (one row per distinct error message), largest first."""
    causes: Counter[str] = Counter()
    for row in _rows(out / "locust_failures.csv"):
        causes[row["Error"]] += int(row["Occurrences"])
    return [{"error": error, "occurrences": count} for error, count in causes.most_common()]


def per_step(out: Path) -> list[dict[str, object]]:
    """Requests, rate, goodput, p50/p95 and failures for each user count, from the per-request rows."""
    groups: dict[int, list[dict[str, str]]] = {}
    for row in _rows(out / "requests.csv"):
        groups.setdefault(int(row["users"]), []).append(row)
    steps = []
    for users, rows in sorted(groups.items()):
        latencies = np.array([float(row["latency_ms"]) for row in rows if not row["error"]])
        span = float(np.ptp([float(row["time"]) for row in rows]))
        steps.append(
            {
                "users": users,
                "requests": len(rows),
                "rps": (len(rows) - 1) / span if span > 0 else None,
                "goodput_rps": latencies.size / span if span > 0 else None,  # answered within the deadline
                **{f"p{q}_ms": float(np.percentile(latencies, q)) if latencies.size else None for q in (50, 95)},
                "failures": len(rows) - latencies.size,
                "failures_by_kind": dict(Counter(row.get("cause") or "other" for row in rows if row["error"])),
            }
        )
    return steps


def summarize(out: Path, url: str, model: str, settings: Settings, command: str, exit_code: int) -> dict:
    aggregated = next((r for r in _rows(out / "locust_stats.csv") if r["Name"] == "Aggregated"), None)
    if aggregated is None:
        raise RuntimeError(f"locust wrote no aggregated statistics; see {out / 'locust.log'}")
    return {
        "kind": "load",
        "finished_at": utc_now(),
        "url": url,
        "model": model,
        "command": command,
        **asdict(settings),
        "deadline_s": DEFAULT_DEADLINE_S,
        "locust_exit_code": exit_code,
        "requests": int(aggregated["Request Count"]),
        "failures": int(aggregated["Failure Count"]),
        "rps": float(aggregated["Requests/s"]),
        **{f"p{q}_ms": float(aggregated[f"{q}%"]) for q in (50, 95, 99)},
        "per_step": per_step(out),
        "failures_by_cause": failures_by_cause(out),
    }


def load(url: str, model: str, out: Path, settings: Settings, progress=print) -> dict:
    """One headless Locust run against `url`; writes load.json and load.md next to Locust's CSV files."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("locust_*.csv"):
        stale.unlink()
    cmd = locust_command(url, model, out, settings)
    progress(f"locust: {settings} against {url} ({model})")
    with (out / "locust.log").open("w") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        timeout = settings.steps * settings.step_seconds + 300
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=study.PROJECT)
    summary = summarize(out, url, model, settings, study.command("perf"), code.returncode)
    (out / "load.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "load.md").write_text("\n".join(report.load_section(summary)))
    progress(
        f"locust: {summary['requests']} requests, {summary['failures']} failed, {summary['rps']:.2f} requests/s, "
        f"p50 {summary['p50_ms']:.0f} ms, p95 {summary['p95_ms']:.0f} ms; CSV files in {out}"
    )
    for cause in summary["failures_by_cause"]:
        progress(f"  failed {cause['occurrences']}x: {cause['error']}")
    return summary
