"""CI smoke of `make perf` and `make load` against the shared real server: complete report, no failures.

Seconds of load, one model, the `smoke` profile: this proves the harness works end to end (real
perf_analyzer, real Locust, the server's own statistics, the report and its plots), never how fast
anything is. No assertion here looks at a time or at a ratio's value.
The targets run exactly as a user types them, with URL pointing at the test server.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from model_repository.admin import ADMIN_KEY_ENV

PROJECT = Path(__file__).resolve().parents[2]
MODEL = "NextViT_small_224"
POINT_FIELDS = ("throughput", "p50_ms", "p95_ms", "p99_ms")
REPORT_SECTIONS = (
    "## Triton end to end: perf_analyzer over gRPC",
    "## Where the time goes (Triton per-model statistics)",
    "## Load test: Locust, step load over gRPC",
    "## Machine and versions",
)
PLOTS = ("throughput", "latency", "time_split")


def make(target: str, admin_key: str | None = None, **variables: str) -> subprocess.CompletedProcess:
    """`make TARGET VAR=value...` from the project directory, as the README tells users to run it.

    A running server's statistics API is restricted: its key goes in the environment, as for a cluster.
    """
    cmd = ["make", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())]
    env = {**os.environ, **({ADMIN_KEY_ENV: admin_key} if admin_key else {})}
    return subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)


def passed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def perf_dir(triton_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke `make perf`, then `make load` into the same directory, then `make perf-report`."""
    out = tmp_path_factory.mktemp("perf") / "run"
    server = {"URL": triton_server.grpc_url, "METRICS_URL": triton_server.metrics_url}
    common = {"PERF_DIR": str(out), "REPOSITORY": str(triton_server.repository)}
    result = make("perf", triton_server.admin_key, PERF_MODELS=MODEL, PERF_PROFILE="smoke", **server, **common)
    assert passed(result), output(result)
    result = make("load", MODEL=MODEL, LOAD_STEP_USERS="1", LOAD_STEP_SECONDS="3", LOAD_STEPS="2", **server, **common)
    assert passed(result), output(result)
    result = make("perf-report", PERF_DIR=str(out))
    assert passed(result), output(result)
    return out


def test_every_point_has_percentiles_throughput_and_no_failures(perf_dir: Path) -> None:
    results = json.loads((perf_dir / "results.json").read_text())
    points = results["models"][MODEL.lower()]["points"]
    assert [p["concurrency"] for p in points] == [1, 2]
    for point in points:
        assert all(point[field] > 0 for field in POINT_FIELDS), point
        assert point["failed_requests"] == 0
        assert sum(point["failures_by_reason"].values()) == 0
        assert [s["step"] for s in point["split"]] == ["preprocess", "network", "postprocess"]


def test_the_served_layout_is_read_from_the_server(perf_dir: Path, triton_server) -> None:
    layout = json.loads((perf_dir / "results.json").read_text())["models"][MODEL.lower()]["layout"]
    assert list(layout) == ["preprocess", "network", "postprocess"]
    assert layout["preprocess"]["instances"] == triton_server.serving["layout"]["preprocess_instances"]


def test_report_has_every_section_and_plot(perf_dir: Path) -> None:
    report = (perf_dir / "report.md").read_text()
    for section in REPORT_SECTIONS:
        assert section in report
    for name in PLOTS:
        assert (perf_dir / "plots" / f"{name}.png").stat().st_size > 0
        assert f"plots/{name}.png" in report


def test_load_writes_locust_csv_and_no_request_fails(perf_dir: Path) -> None:
    out = perf_dir / "load"
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "requests.csv"):
        assert (out / name).is_file()
    summary = json.loads((out / "load.json").read_text())
    assert summary["requests"] > 0 and summary["locust_exit_code"] == 0
    assert summary["failures"] == 0 and summary["failures_by_cause"] == []
    assert [step["users"] for step in summary["per_step"]] == [1, 2]
    assert all(step["requests"] > 0 and step["failures"] == 0 for step in summary["per_step"])
    assert "Failures by cause" not in (out / "load.md").read_text()
