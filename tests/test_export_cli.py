"""The export command: records what it did, refuses bad input with one clear line, changes nothing then."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import catalog
from export.__main__ import main
from model_repository import configs, install

pytestmark = pytest.mark.export


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
    model = onnx.load(str(network / "1" / "model.onnx"), load_external_data=False)
    assert [i.name for i in model.graph.input] == [configs.NETWORK_INPUT]
    assert [o.name for o in model.graph.output] == [configs.NETWORK_OUTPUT]
    assert "LayerNormalization" in {n.op_type for n in model.graph.node} or entry.family == "NextViT"


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
