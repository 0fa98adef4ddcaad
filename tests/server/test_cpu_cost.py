"""CPU time per served image against the real server: the roles found in /proc, one short open-loop window."""

from __future__ import annotations

import catalog
from model_repository import configs
from perf import cpu_cost
from perf import preprocess_bench as bench

MODEL = "NextViT_small_224"


def test_the_server_processes_split_into_tritonserver_steps_and_networks(triton_server) -> None:
    roles = cpu_cost.processes(triton_server)
    assert roles["tritonserver"] == [triton_server.process.pid]
    layout, served = triton_server.serving["layout"], triton_server.serving["python_step_models"]
    assert len(roles["network"]) == layout["network_cpu_instances"] * len(triton_server.served_models)
    assert len(roles["steps"]) >= served - len(roles["network"])


def test_an_open_loop_window_prices_the_served_image_and_leaves_the_network_out(triton_server) -> None:
    entry = catalog.get(MODEL)
    jpegs = bench.photo_jpegs((500, 375))
    for crops in (False, True):
        model, inputs = cpu_cost.requests(entry, jpegs, crops)
        assert model == (configs.crop_ensemble_name(entry) if crops else entry.triton_name)
        # one request a second: the shared server keeps its queue bounds, which a burst on a busy machine can meet
        measured = cpu_cost.window(triton_server, model, inputs, 1.0, 5.0)
        assert measured["images"] == 5, measured  # every request sent was answered, and counted by the server
        assert all(measured["cpu_s"][role] > 0 for role in ("tritonserver", "steps", "network")), measured
        assert measured["served_ms"] > 0 and measured["network_ms"] > 0
