"""GPU memory estimates of the real exported networks (paddle2onnx output), their check on ONNX Runtime's CPU
provider, the production config's gpu_mem_limit, and the chart's copy of the figures (export/memory.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

import catalog
from export import memory
from model_repository import configs, install, layout
from tests.support.deployment import SERVED_MODELS

VIT = catalog.get("ViT_base_patch16_224")
NEXTVIT = catalog.get("NextViT_small_224")


def onnx_file(repository: Path, entry: catalog.ModelEntry) -> Path:
    return repository / configs.network_name(entry) / "1" / "model.onnx"


def record(repository: Path, entry: catalog.ModelEntry) -> dict:
    return json.loads((repository / configs.network_name(entry) / install.EXPORT_RECORD).read_text())


def test_weights_are_the_bytes_of_every_initializer(exported_repository: Path) -> None:
    model = onnx.load(str(onnx_file(exported_repository, VIT)))
    stored = sum(onnx.numpy_helper.to_array(init).nbytes for init in model.graph.initializer)
    assert memory.estimate(onnx_file(exported_repository, VIT), 2).weights_bytes == stored
    # ViT-B/16 is 86.6 M float32 parameters (catalog, published): the weights are those, plus the folded constants.
    assert stored == pytest.approx(VIT.published.params_m * 1e6 * 4, rel=0.01)


def test_the_largest_vit_tensor_is_the_mlp_hidden_layer(exported_repository: Path) -> None:
    """ViT-B/16 at 224: 197 tokens, MLP width 3072 (4 x 768), float32: 197 x 3072 x 4 bytes per image."""
    for batch in (1, 8, configs.GPU_MAX_BATCH_SIZE):
        figure = memory.estimate(onnx_file(exported_repository, VIT), batch)
        assert figure.largest_tensor_bytes == batch * 197 * 3072 * 4
        # Several such tensors are alive at the peak (GELU's pieces), never the whole graph's.
        assert 2 * figure.largest_tensor_bytes <= figure.activations_bytes <= 8 * figure.largest_tensor_bytes


def test_activations_grow_with_the_batch(exported_repository: Path) -> None:
    small, large = (memory.estimate(onnx_file(exported_repository, NEXTVIT), b) for b in (8, 64))
    assert large.weights_bytes == small.weights_bytes
    # Per-image tensors dominate: 8x the batch is 8x the bytes, give or take the batch-free ones.
    assert large.activations_bytes == pytest.approx(8 * small.activations_bytes, rel=0.01)


def test_the_export_records_the_estimate_at_the_served_batch(exported_repository: Path) -> None:
    for name in SERVED_MODELS:
        entry = catalog.get(name)
        recorded = record(exported_repository, entry)["memory"]
        fresh = memory.estimate(onnx_file(exported_repository, entry))
        assert recorded["batch"] == configs.GPU_MAX_BATCH_SIZE
        assert recorded["weights_bytes"] == fresh.weights_bytes
        assert recorded["activations_bytes"] == fresh.activations_bytes
        assert recorded["gpu"] == memory.GPU_NOTE


@pytest.mark.parametrize("name", SERVED_MODELS)
def test_onnx_runtime_on_cpu_holds_what_the_arena_margin_covers(exported_repository: Path, name: str) -> None:
    """What ONNX Runtime's planner held in one run on CPU is within the margin the GPU cap gives the estimate.

    Measured here: NextViT's estimate exceeds what it held (the planner reuses a dying input's buffer
    for an output, which the walk does not); ViT held ~8 % more than its estimate. Both within
    configs.ORT_ARENA_ACTIVATION_HEADROOM, and neither far below the estimate.
    """
    check = memory.check_on_cpu(onnx_file(exported_repository, catalog.get(name)), batch=4)
    assert check["batch"] == 4
    for label in memory.CPU_LEVELS:
        held = check[label]["held_bytes"]
        assert 0.5 * check["estimated_activations_bytes"] <= held, check
        assert held <= configs.ORT_ARENA_ACTIVATION_HEADROOM * check["estimated_activations_bytes"], check


def test_production_install_writes_the_cap_and_refuses_a_record_without_an_estimate(
    exported_repository: Path, tmp_path: Path
) -> None:
    network = exported_repository / configs.network_name(NEXTVIT)
    exported = record(exported_repository, NEXTVIT)
    repository = tmp_path / "production"
    install.install(NEXTVIT, network / "1" / "model.onnx", exported, repository, "production")
    served = layout.model_configs(repository, NEXTVIT, configs.Layout())[network.name]
    config = configs.parse_pbtxt(configs.to_pbtxt(served))
    memory_record = exported["memory"]
    expected = configs.ort_gpu_mem_limit(memory_record["weights_bytes"], memory_record["activations_bytes"])
    assert config.parameters["gpu_mem_limit"].string_value == str(expected)
    old = {key: value for key, value in exported.items() if key != "memory"}
    with pytest.raises(ValueError, match=r"python -m export memory --repository"):
        install.install(NEXTVIT, network / "1" / "model.onnx", old, tmp_path / "other", "production")
    assert not (tmp_path / "other" / network.name).exists()


def test_the_memory_command_records_an_older_repository_and_its_next_start_caps_it(
    exported_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository exported before the estimate existed: the command writes it and the cap, no re-export."""
    network = exported_repository / configs.network_name(NEXTVIT)
    exported = record(exported_repository, NEXTVIT)
    repository = tmp_path / "production"
    install.install(NEXTVIT, network / "1" / "model.onnx", exported, repository, "production")
    installed = repository / network.name
    old = {key: value for key, value in install.read_record(installed).items() if key != "memory"}
    (installed / install.EXPORT_RECORD).write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no memory estimate"):
        layout.model_configs(repository, NEXTVIT, configs.Layout())  # such a repository cannot be served
    assert memory.main(["--repository", str(repository)]) == 0
    assert "NextViT_small_224: weights" in capsys.readouterr().out
    assert record(repository, NEXTVIT)["memory"]["activations_bytes"] == exported["memory"]["activations_bytes"]
    served = layout.model_configs(repository, NEXTVIT, configs.Layout())[network.name]
    assert int(served["parameters"]["gpu_mem_limit"]["string_value"]) > exported["memory"]["total_bytes"]


def test_the_chart_file_holds_these_networks_figures(exported_repository: Path, tmp_path: Path) -> None:
    """files/network-memory.json was generated from exports of every model: the same graphs give the same lines.

    The graph, not the weights, sets the figures, so the session's seeded exports must reproduce them.
    """
    committed = json.loads(memory.NETWORK_FIGURES.read_text("utf-8"))["models"]
    for name in SERVED_MODELS:
        entry = catalog.get(name)
        assert memory.chart_entry(name, record(exported_repository, entry)["memory"]) == committed[entry.triton_name]
    # The generator refuses a repository that lacks a model, rather than write a partial file.
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in SERVED_MODELS:
        directory = configs.network_name(catalog.get(name))
        (partial / directory).mkdir()
        shutil.copy(exported_repository / directory / install.EXPORT_RECORD, partial / directory)
    with pytest.raises(memory.MemoryEstimateError, match="no memory record of NextViT_base_224"):
        memory.chart_figures(partial)
