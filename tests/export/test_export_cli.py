"""The export command: records what it did, refuses bad input with one clear line, changes nothing then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

import catalog
from catalog.resolve import photo_batch, photo_crops
from export import normalization
from export.__main__ import main
from model_repository import configs, install


@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_base_patch16_224"])
def test_export_record_and_graph(exported_repository: Path, name: str) -> None:
    entry = catalog.get(name)
    network = exported_repository / configs.network_name(entry)
    record = json.loads((network / install.EXPORT_RECORD).read_text())
    assert record["model"] == name
    assert record["weights_note"].startswith("RANDOM WEIGHTS")
    assert record["parity"]["passed"] and record["parity"]["max_abs_diff"] <= 1e-4
    assert record["parity"]["max_abs_diff"] > 0  # a real comparison: exact zeros would mean saturated outputs
    assert record["onnx"]["opset"] == 17
    assert record["onnx"]["input"] == "CROPS uint8 NHWC, normalization in graph"
    model = onnx.load(str(network / "1" / "model.onnx"), load_external_data=False)
    (crops,) = model.graph.input
    dims = crops.type.tensor_type.shape.dim
    assert crops.name == configs.NETWORK_INPUT and crops.type.tensor_type.elem_type == TensorProto.UINT8
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [entry.input_size] * 2 + [3]
    assert [o.name for o in model.graph.output] == [configs.NETWORK_OUTPUT]
    assert [n.op_type for n in model.graph.node[:5]] == ["Cast", "Mul", "Sub", "Div", "Transpose"]
    assert "LayerNormalization" in {n.op_type for n in model.graph.node} or entry.family == "NextViT"


def without_normalization(model: onnx.ModelProto, entry: catalog.ModelEntry) -> onnx.ModelProto:
    """The exported graph with its normalization prefix cut off: the network as PaddleClas exported it."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    graph = stripped.graph
    prefix = {node.name for node in normalization.nodes(entry)[0]}
    kept = [node for node in graph.node if node.name not in prefix]
    assert len(kept) == len(graph.node) - len(prefix)
    del graph.node[:]
    graph.node.extend(kept)
    kept_constants = [init for init in graph.initializer if not init.name.startswith(normalization.PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(kept_constants)
    (inner,) = [value for value in graph.value_info if value.name == configs.NORMALIZED_IMAGE]
    del graph.input[:]
    graph.input.append(inner)
    return stripped


@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_base_patch16_224"])
def test_exported_graph_normalizes_as_paddleclas(exported_repository: Path, name: str) -> None:
    """The served model.onnx on uint8 crops equals its own network on PaddleClas's float input.

    Both at ONNX Runtime's default optimization level (the servers'), so any difference is what the
    normalization prefix, and the optimizations applied across it, do to the numbers.
    """
    entry = catalog.get(name)
    model = onnx.load(str(exported_repository / configs.network_name(entry) / "1" / "model.onnx"))
    crops = photo_crops(entry)

    def run(graph: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
        session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feeds)[0]

    served = run(model, {configs.NETWORK_INPUT: crops})
    reference = run(without_normalization(model, entry), {configs.NORMALIZED_IMAGE: photo_batch(entry)})
    difference = float(np.abs(served - reference).max())
    assert difference <= 1e-6, f"{name}: max |p(crops) - p(PaddleClas input)| = {difference:.3g}"


def test_unknown_name_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["NextViT_smal_224", "--random-weights"]) == 2
    assert "did you mean NextViT_small_224" in capsys.readouterr().err


def test_directory_without_model_fails_and_changes_nothing(
    tmp_path: Path, exported_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    (tmp_path / "empty").mkdir()
    assert (
        main(["ViT_small_patch16_224", "--inference-dir", str(tmp_path / "empty"), "--repository", str(repository)])
        == 1
    )
    err = capsys.readouterr().err
    assert "holds no PaddleClas inference model" in err and "left as it was" in err
    assert list(repository.iterdir()) == []
    # No temporary files left; the failed run's log (export-logs/) is kept on purpose.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "export-logs") == ["empty", "repo"]
