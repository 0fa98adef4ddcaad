"""`make analyze`'s inputs to Model Analyzer, without running it (a run takes ~15 minutes: `make analyze`).

What is checked is what the project decides: the repository Model Analyzer starts from, the search
each study asks for, the server flags, and the rule that picks a configuration from its results.
"""

from __future__ import annotations

from pathlib import Path

import catalog
from model_repository import configs, layout
from perf import analyze

MODEL = catalog.get("NextViT_small_224")
SERVER = analyze.LocalServer(Path("/opt/tritonserver/bin/tritonserver"), Path("/opt/tritonserver/backends"))


def test_the_analyzer_repository_is_the_serving_copy_without_warmup_or_queue_policies(
    exported_repository: Path, tmp_path: Path
) -> None:
    summary = analyze.analyzer_repository(exported_repository, MODEL, tmp_path / "repository", 2)
    assert summary["models"] == [MODEL.triton_name] and summary["warmup"] is False
    names = sorted(path.parent.name for path in (tmp_path / "repository").glob("*/config.pbtxt"))
    assert MODEL.triton_name in names and configs.network_name(MODEL) in names
    for name in names:
        config = configs.parse_pbtxt((tmp_path / "repository" / name / "config.pbtxt").read_text())
        assert not config.model_warmup, name
        assert not config.dynamic_batching.HasField("default_queue_policy"), name  # else 2.51 cannot prefetch


def test_the_studies_ask_for_what_the_docs_say(exported_repository: Path, tmp_path: Path) -> None:
    analyze.analyzer_repository(exported_repository, MODEL, tmp_path / "repository", 2)
    ensemble = analyze.ensemble_study(MODEL, tmp_path, 2, 500, SERVER)
    assert ensemble["run_config_search_mode"] == "quick" and ensemble["profile_models"] == [MODEL.triton_name]
    steps = [configs.preprocess_name(MODEL), configs.network_name(MODEL), configs.postprocess_name()]
    assert ensemble["cpu_only_composing_models"] == steps  # portable: every step on the CPU
    assert ensemble["run_config_search_max_instance_count"] == 2
    assert "latency_budget" not in ensemble  # see ensemble_study: the report applies it
    assert ensemble["triton_server_flags"]["grpc-address"] == "127.0.0.1"
    assert ensemble["triton_server_flags"]["allow-sagemaker"] == "false"

    network = analyze.network_study(MODEL, tmp_path, 2, 500, SERVER)
    sweep = network["profile_models"][configs.network_name(MODEL)]["model_config_parameters"]
    assert sweep["instance_group"] == [[{"kind": "KIND_CPU", "count": [1, 2]}]]
    assert sweep["parameters"] == {"intra_op_threads": {"string_value": ["1", "2"]}}
    assert sweep["dynamic_batching"]["max_queue_delay_microseconds"] == list(analyze.NETWORK_QUEUE_DELAYS_US)
    assert network["run_config_search_disable"] is True and network["latency_budget"] == 500
    assert network["triton_server_path"] == str(SERVER.path)


def test_the_choice_is_the_highest_throughput_within_the_budget() -> None:
    points = [
        {"config": "a", "throughput": 9.0, "p99_ms": 900.0},
        {"config": "b", "throughput": 7.0, "p99_ms": 300.0},
        {"config": "c", "throughput": 5.0, "p99_ms": 200.0},
    ]
    assert analyze.best(points, 500)["config"] == "b"
    assert analyze.best(points, 100) is None


def test_levers_are_read_from_the_configs_model_analyzer_wrote(exported_repository: Path, tmp_path: Path) -> None:
    layout.render(exported_repository, tmp_path / "serving", [MODEL.name], configs.Layout(), 1)
    levers = analyze.describe(tmp_path / "serving" / configs.network_name(MODEL))
    assert levers["instances"] == 1 and levers["max_batch_size"] == configs.MAX_BATCH_SIZE
    threads = configs.Layout().network_cpu_threads  # 0: the model resolves it from its cores
    assert levers["threads"] == threads and "queue_delay_us" in levers
    assert analyze.levers_text(levers).startswith(f"1 inst x {threads} thr, batch 8")
