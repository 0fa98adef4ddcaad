"""The harness's own logic, without a server: input encoding, the quiet guard, Locust summaries, make wiring."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from client import failures
from perf import analyzer, load, machine
from perf.input_data import input_data

PROJECT = Path(__file__).resolve().parents[2]


def test_input_data_is_the_length_prefixed_wire_form(sample_photos: list[Path]) -> None:
    steps = input_data(sample_photos)["data"]
    assert len(steps) == len(sample_photos)
    for step, photo in zip(steps, sample_photos, strict=True):
        raw = base64.b64decode(step["IMAGE"]["b64"])
        (length,) = struct.unpack("<I", raw[:4])
        assert length == len(raw) - 4
        assert raw[4:] == photo.read_bytes()


def test_a_measurement_is_repeated_while_other_processes_are_busy() -> None:
    """No share of the machine is below -1 %: every attempt counts as contaminated, up to the limit."""
    calls: list[int] = []
    measured = machine.measure_quietly(lambda: calls.append(1) or len(calls), -1.0, repeats=2, max_wait_s=0)
    assert (measured.value, measured.attempts, len(calls)) == (3, 3, 3)
    assert machine.measure_quietly(lambda: calls.append(1), None).attempts == 1


def test_locust_failures_are_counted_by_cause(tmp_path: Path) -> None:
    (tmp_path / "locust_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        'grpc,m,"[StatusCode.UNAVAILABLE] failed to connect",3\n'
        "grpc,m,\"in ensemble 'm', not a decodable image\",1\n"
    )
    (tmp_path / "requests.csv").write_text(
        "time,users,latency_ms,error,cause\n1.0,1,100,,\n2.0,1,110,,\n3.0,2,120,boom,overloaded\n4.0,2,130,,\n"
    )
    assert load.failures_by_cause(tmp_path) == [
        {"error": "[StatusCode.UNAVAILABLE] failed to connect", "occurrences": 3},
        {"error": "in ensemble 'm', not a decodable image", "occurrences": 1},
    ]
    steps = load.per_step(tmp_path)
    assert [(s["users"], s["requests"], s["failures"]) for s in steps] == [(1, 2, 0), (2, 2, 1)]
    assert steps[1]["failures_by_kind"] == {"overloaded": 1}


def test_make_perf_and_load_pass_the_url_through() -> None:
    for target, expected in (("perf", "-m perf run"), ("load", "-m perf load")):
        dry = subprocess.run(
            ["make", "-n", target, "URL=10.0.0.7:8001", "PERF_PROFILE=smoke"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert expected in dry and "--url 10.0.0.7:8001" in dry


def test_every_perf_target_runs_one_entry_point_and_each_command_parses_its_own_options() -> None:
    """`python -m perf <command>`: the Makefile's benchmark targets, and each study's own --help."""
    from perf.__main__ import STUDIES

    targets = {"bench-preprocess": "preprocess", "bench-capacity": "capacity", "drills": "drills"}
    targets |= {"analyze": "analyze", "bench-cache": "cache", "bench-allocators": "allocators"}
    targets |= {"bench-resize-tier": "resize-tier"}
    assert sorted(targets.values()) == sorted(STUDIES)
    for target, name in targets.items():
        dry = subprocess.run(["make", "-n", target], cwd=PROJECT, capture_output=True, text=True, check=True).stdout
        assert f"-m perf {name}" in dry, dry
    for name in STUDIES:
        shown = subprocess.run(
            [str(PROJECT / ".venv/bin/python"), "-m", "perf", name, "--help"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert shown.startswith(f"usage: python -m perf {name}"), shown


def test_a_sweep_ends_at_the_first_overload_refusal_and_fails_on_anything_else(monkeypatch, tmp_path: Path) -> None:
    """The refusal text is Triton's own (failures.QUEUE_REJECTIONS, which the client library also matches)."""
    refusal = f"perf_analyzer exited with 99; Thread [0] had error: {failures.QUEUE_REJECTIONS[0]}"
    outcomes: list[object] = []

    def measure(_self, _model: str, concurrency: int) -> object:
        outcome = outcomes[concurrency - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(analyzer.Analyzer, "warm_up", lambda *_: None)
    monkeypatch.setattr(analyzer.Analyzer, "measure", measure)
    point = SimpleNamespace(throughput=1.0, p50_ms=1.0)
    sweeper = analyzer.Analyzer(None, None, tmp_path, None, tmp_path, progress=lambda _: None)
    outcomes[:] = [point, point, analyzer.PerfAnalyzerError(refusal), point]
    assert sweeper.sweep("m", [1, 2, 3, 4]) == [point, point]
    for outcomes[:] in ([analyzer.PerfAnalyzerError(refusal)], [point, analyzer.PerfAnalyzerError("no such model")]):
        with pytest.raises(analyzer.PerfAnalyzerError):
            sweeper.sweep("m", [1, 2])


def test_the_flood_sends_the_largest_request_the_server_accepts() -> None:
    from perf.drills import CAMERA, largest_request
    from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES

    photos = [bytes(3_000_000), bytes(2_500_000), bytes(1_000_000)]
    request = largest_request({CAMERA: photos})
    # Largest first while they fit: 3 + 2.5 + 1 + 3 + 2.5 + 1 + 3 = 16 MB; one more byte-sized photo would not.
    assert [len(p) for p in request] == [3_000_000, 2_500_000, 1_000_000] * 2 + [3_000_000]
    assert sum(map(len, request)) + 1_000_000 > DEFAULT_MAX_REQUEST_BYTES


def test_memory_is_back_only_once_it_stays_back() -> None:
    from perf.drills import _returned_after

    samples = [(0.0, 500.0), (10.0, 1200.0), (10.5, 560.0), (11.0, 900.0), (11.5, 600.0), (12.0, 590.0)]
    assert _returned_after(samples, 10.0, idle=500.0) == 1.5  # 10.5 dipped back, 11.0 rose again
    assert _returned_after(samples, 10.0, idle=300.0) is None


def test_the_interactive_goal_is_answered_within_2_s_or_refused_within_1_s() -> None:
    from perf.drills import _interactive, interactive_goal_met

    probe = [
        {"sent": 0.0, "done": 1.9, "kind": "ok", "message": ""},
        {"sent": 1.0, "done": 1.8, "kind": "overloaded", "message": "Request timeout expired"},
        {"sent": 9.0, "done": 12.0, "kind": "ok", "message": ""},  # after the flood: not counted
    ]
    during = _interactive(probe, burst_end=5.0)
    assert (during["answered"], during["answered_max_ms"], during["refused_max_ms"]) == (1, 1900, 800)
    assert interactive_goal_met(during)
    late_refusal = _interactive([*probe[:1], {**probe[1], "done": 2.1}], burst_end=5.0)
    assert not interactive_goal_met(late_refusal)  # refused after 1.1 s


def test_the_report_divides_triton_best_point_by_the_paddleclas_deploy_path() -> None:
    from perf import report

    points = [{"throughput": 3.0, "concurrency": 1}, {"throughput": 6.0, "concurrency": 2}]
    peer = {"images_per_s": 4.0, "images": 40, "other_cpu_percent": 2.0, "threads": 2}
    results = {"models": {"m": {"points": points}}, "peer": {"m": peer}}
    (row,) = report.peer_rows(results)
    assert row[1].startswith("6.00 (concurrency 2)") and row[3] == "**1.50**"
    assert "Triton / PaddleClas" in "\n".join(report.peer_section(results))
    assert report.peer_section({"models": {"m": {"points": points}}}) == []  # a URL run has no peer
