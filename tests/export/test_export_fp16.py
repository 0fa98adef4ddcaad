"""The FP16 network of real exported networks (a NextViT and a ViT), as the production export writes it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import catalog
from catalog.resolve import photo_crops
from export import fp16, fp16_price, pipeline
from export.parity import run_onnx
from model_repository import configs
from tests.support.deployment import SERVED_MODELS


@pytest.mark.parametrize("name", SERVED_MODELS)
def test_the_export_writes_a_checked_fp16_network(name: str, exported_repository: Path, tmp_path: Path) -> None:
    entry = catalog.get(name)
    onnx_path = tmp_path / "model.onnx"
    os.link(exported_repository / configs.network_name(entry) / "1" / "model.onnx", onnx_path)
    record = pipeline._fp16_network(entry, onnx_path)  # what export_model records for the production variant
    written = onnx_path.with_name(fp16.FP16_FILE)
    assert record["file"] == fp16.FP16_FILE and record["bytes"] == written.stat().st_size
    fp32_model, fp16_model = onnx.load(str(onnx_path)), onnx.load(str(written))
    assert fp16.layout_problems(fp32_model, fp16_model) == []
    ops = {node.op_type for node in fp32_model.graph.node}
    # ViT normalizes with LayerNorm (one opset-17 op per norm), NextViT with folded BatchNorms; both end in Softmax.
    assert ("LayerNormalization" in ops) == (entry.family == "ViT") and "Softmax" in ops
    assert set(record["fp32_ops"]) == ops & set(fp16.kept_fp32(fp32_model)[0])  # e.g. ViT's Max: the converter's
    assert set(fp16.KEEP_FP32_OPS) & ops <= set(record["fp32_ops"])
    assert record["fp16_weights"] > 50 * record["fp32_weights"]  # almost every weight is FP16
    assert written.stat().st_size < 0.6 * onnx_path.stat().st_size
    photos = record["photographs"]
    assert photos["accepted"] and photos["images"] == len(photo_crops(entry))
    assert 0 < photos["max_abs_diff"] <= fp16.FP16_ATOL  # FP16 rounds: never identical, never far
    probabilities = run_onnx(written, photo_crops(entry))
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)
    assert fp16_model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_the_price_script_measures_installed_networks(exported_repository: Path, tmp_path: Path) -> None:
    """`python -m export fp16-price` on one model, few variants: the per-model record and raw probabilities."""
    name = SERVED_MODELS[0]
    output = tmp_path / "price" / "results.json"
    arguments = [name, "--repository", str(exported_repository), "--output", str(output), "--derived", "3"]
    assert fp16_price.main(arguments) == 0
    result = fp16_price.read_results(output)["models"][name]
    photos = len(photo_crops(name))
    assert result["all"]["images"] == photos + 3 and result["photographs"]["images"] == photos
    raw = np.load(result["raw"])
    assert raw["fp16"].shape == raw["fp32"].shape == (photos + 3, 1000)
    assert result["all"]["max_abs_diff"] == pytest.approx(float(np.abs(raw["fp16"] - raw["fp32"]).max()))
    assert fp16_price.main(arguments) == 0  # measured models are skipped, not measured again
    assert fp16_price.read_results(output)["models"][name] == result
