"""CPU time per served image against the real server: the roles found in /proc, short open-loop windows, and
the stand-in network (perf/standin.py) served by the real tritonserver in the exported network's place."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

import catalog
from catalog.resolve import preprocessor
from model_repository import configs
from model_repository.server import TritonServer
from perf import cpu_cost, standin
from perf import preprocess_bench as bench

MODEL = "NextViT_small_224"


def test_the_server_processes_split_into_tritonserver_steps_and_networks(triton_server) -> None:
    roles = cpu_cost.processes(triton_server)
    assert roles["tritonserver"] == [triton_server.process.pid]
    layout, served = triton_server.serving["layout"], triton_server.serving["python_step_models"]
    networks = layout["network_cpu_instances"] + layout["interactive_network_cpu_instances"]  # shared + interactive
    assert len(roles["network"]) == networks * len(triton_server.served_models)
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


def test_a_request_of_eight_images_counts_eight_served_images(triton_server) -> None:
    entry = catalog.get(MODEL)
    model, inputs = cpu_cost.requests(entry, bench.photo_jpegs((500, 375)), False, images=8)
    assert [tensor.shape() for tensor in inputs[0]] == [[8, 1]]
    measured = cpu_cost.window(triton_server, model, inputs, 0.4, 5.0)  # 2 requests
    assert measured["images"] == 16, measured  # the server's statistics count images, not requests


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.server
def test_the_standin_serves_the_real_steps_and_leaves_the_exported_network_alone(
    exported_repository: Path, tmp_path: Path
) -> None:
    entry = catalog.get(MODEL)
    network_file = exported_repository / configs.network_name(entry) / "1" / "model.onnx"
    before = _digest(network_file)
    served = standin.standin_repository(exported_repository, tmp_path / "standin")
    assert _digest(network_file) == before
    assert (served / configs.network_name(entry) / "1" / "model.onnx").stat().st_size < 100_000
    assert (served / configs.preprocess_name(entry)).resolve() == (exported_repository / configs.preprocess_name(entry))
    photos = bench.photo_jpegs((500, 375))[:2]
    with TritonServer.on_free_ports(served, tmp_path / "triton.log", models=[MODEL]) as server:
        model, inputs = cpu_cost.requests(entry, photos, False, images=2)
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            result = client.infer(model, inputs[0])
    # The answer is the stand-in's on the exact crops: the real preprocess step ran, the stand-in in its place.

    crops = np.stack([preprocessor(entry).crop_encoded(data) for data in photos])
    session = ort.InferenceSession(str(served / configs.network_name(entry) / "1" / "model.onnx"))
    (probabilities,) = session.run(None, {configs.NETWORK_INPUT: crops})
    np.testing.assert_array_equal(result.as_numpy("CLASS_IDS")[:, 0], probabilities.argmax(axis=1))
    np.testing.assert_allclose(result.as_numpy("SCORES")[:, 0], probabilities.max(axis=1), rtol=1e-6)
