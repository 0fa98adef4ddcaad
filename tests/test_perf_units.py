"""The harness's own logic, without a server: input encoding, goals, layouts, Locust summaries, make wiring."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from pathlib import Path

import pytest

import catalog
from perf import goals, load
from perf.input_data import input_data
from perf.repository import Layout
from perf.tuning import parse_layout

PROJECT = Path(__file__).resolve().parent.parent


def test_input_data_is_the_length_prefixed_wire_form(sample_photos: list[Path]) -> None:
    steps = input_data(sample_photos)["data"]
    assert len(steps) == len(sample_photos)
    for step, photo in zip(steps, sample_photos, strict=True):
        raw = base64.b64decode(step["IMAGE"]["b64"])
        (length,) = struct.unpack("<I", raw[:4])
        assert length == len(raw) - 4
        assert raw[4:] == photo.read_bytes()


def _results(triton_tput: float, naive_tput: float, best_tput: float, c1_p50: float, naive_p50: float) -> dict:
    network = {
        engine: [{"batch": b, "throughput": t, "ms_per_batch": b / t * 1000, "threads": 2} for b, t in rates]
        for engine, rates in {"onnxruntime": [(1, 12.0), (8, 14.0)], "paddle": [(1, 10.0), (8, 13.0)]}.items()
    }
    return {
        "models": {
            "m": {
                "points": [
                    {"concurrency": 1, "throughput": triton_tput / 2, "p50_ms": c1_p50},
                    {"concurrency": 4, "throughput": triton_tput, "p50_ms": 400.0},
                ],
                "baselines": {
                    "pipeline_naive": {"throughput": naive_tput, "p50_ms": naive_p50},
                    "pipeline_best": {"throughput": best_tput, "sessions": 2, "threads": 1, "batch": 1},
                    "network": network,
                },
            }
        }
    }


def test_goals_use_the_best_concurrency_and_the_same_run() -> None:
    evaluated = {g.goal: g for g in goals.evaluate_all(_results(11.0, 10.0, 11.5, 103.0, 100.0))}
    assert evaluated["Triton vs naive in-process"].value == pytest.approx(1.1)
    assert evaluated["Triton vs naive in-process"].met
    assert evaluated["Triton vs best in-process"].value == pytest.approx(11.0 / 11.5)
    assert evaluated["ONNX Runtime vs Paddle Inference, batch 1"].met  # 1.2x
    assert not evaluated["ONNX Runtime vs Paddle Inference, batch 8"].met  # 1.08x
    assert evaluated["p50 at concurrency 1, Triton minus in-process"].value == pytest.approx(3.0)


def test_layout_specs_parse_and_reject_unknown_keys() -> None:
    assert parse_layout("x=pre:1,inst:2,threads:1,delay:500,preferred:4/8") == Layout(
        "x",
        preprocess_instances=1,
        network_instances=2,
        network_threads=1,
        queue_delay_us=500,
        preferred_batch_sizes=(4, 8),
    )
    assert parse_layout("y=threads:2,spin:0") == Layout("y", network_threads=2, network_spinning=False)
    with pytest.raises(ValueError, match="unknown layout key"):
        parse_layout("x=cores:3")


def test_a_tuning_layout_reaches_the_served_network_config(tmp_path: Path) -> None:
    """Layout.apply edits the staged config that tritonserver will read, spinning lever included."""
    from model_repository import configs

    entry = catalog.get("NextViT_small_224")
    (tmp_path / configs.network_name(entry)).mkdir()
    config = configs.to_pbtxt(configs.network_config(entry, "portable"))
    (tmp_path / configs.network_name(entry) / "config.pbtxt").write_text(config)
    Layout("t", network_instances=2, network_threads=1, network_spinning=False).apply(tmp_path, entry)
    served = configs.parse_pbtxt((tmp_path / configs.network_name(entry) / "config.pbtxt").read_text())
    assert served.instance_group[0].count == 2
    assert served.parameters["intra_op_threads"].string_value == "1"
    assert served.parameters["intra_op_spinning"].string_value == "0"


def test_locust_failures_are_counted_by_cause(tmp_path: Path) -> None:
    (tmp_path / "locust_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        'grpc,m,"[StatusCode.UNAVAILABLE] failed to connect",3\n'
        "grpc,m,\"in ensemble 'm', not a decodable image\",1\n"
    )
    (tmp_path / "requests.csv").write_text(
        "time,users,latency_ms,error\n1.0,1,100,\n2.0,1,110,\n3.0,2,120,boom\n4.0,2,130,\n"
    )
    assert load.failures_by_cause(tmp_path) == [
        {"error": "[StatusCode.UNAVAILABLE] failed to connect", "occurrences": 3},
        {"error": "in ensemble 'm', not a decodable image", "occurrences": 1},
    ]
    steps = load.per_step(tmp_path)
    assert [(s["users"], s["requests"], s["failures"]) for s in steps] == [(1, 2, 0), (2, 2, 1)]


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


def test_report_json_round_trip_is_plain_data() -> None:
    # Goals serialise for results consumers (dashboards, CI artifacts) without custom encoders.
    text = json.dumps([g.as_dict() for g in goals.evaluate_all(_results(9.0, 10.0, 11.0, 120.0, 100.0))])
    assert "missed" not in text and '"met": false' in text
