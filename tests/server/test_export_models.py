"""Catalog models beyond the two of the vertical slice, exported for real and answering through the ensemble.

`make test` exports a representative set (NextViT at 384, ViT with 32-pixel patches at 384, a ViT_large;
measured costs in the docs' parity table); `make test-all` adds every other catalog model (marker
`slow`). Each export's record must reproduce PaddleClas's published parameter and FLOP counts and
pass the parity limits; each served model must give, for the sample photographs sent as encoded
files over gRPC, the top-5 that ONNX Runtime computes from the same model file directly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import catalog
from catalog.resolve import photo_crops
from client import Classifier
from export import fold, parity, report
from model_repository import configs, install
from model_repository.server import TritonServer
from tests.support.deployment import SERVED_MODELS, export_models, serve

REPRESENTATIVE = ("NextViT_small_384", "ViT_base_patch32_384", "ViT_large_patch32_384")
EVERY_OTHER = tuple(name for name in catalog.CATALOG if name not in (*SERVED_MODELS, *REPRESENTATIVE))


def record_of(repository: Path, name: str) -> dict:
    path = repository / configs.network_name(catalog.get(name)) / install.EXPORT_RECORD
    return json.loads(path.read_text())


# depth and width of PaddleClas's ViT sizes (vision_transformer.py), for an independent count.
VIT_SIZES = {"small": (8, 768), "base": (12, 768), "large": (24, 1024)}


def vit_attention_and_patch_bias(name: str) -> tuple[int, int]:
    """MACs of `q @ k` and `attn @ v` over all blocks, and the bias adds of the patch convolution."""
    depth, width = VIT_SIZES[name.split("_")[1]]
    size, patch = catalog.get(name).input_size, int(name.split("patch")[1].split("_")[0])
    patches = (size // patch) ** 2
    return 2 * depth * (patches + 1) ** 2 * width, patches * width


def check_record(record: dict) -> None:
    """What every export must show: published figures reproduced, limits met, comparisons not vacuous."""
    entry = catalog.get(record["model"])
    measured = record["measured"]
    assert round(measured["params_paddleclas"] / 1e6, 2) == entry.published.params_m
    assert round(measured["flops_paddleclas"] / 1e9, 2) == entry.published.flops_g
    assert measured["macs_onnx"] > 0.9 * measured["flops_paddleclas"]
    parity_report = record["parity"]
    assert parity_report["passed"] and parity_report["atol"] == entry.parity_atol
    assert 0 < parity_report["max_abs_diff"] <= entry.parity_atol  # exact zeros would mean saturated outputs
    if entry.family == "NextViT":
        folded = record["merge_bn"]
        assert folded["folded_batchnorms"] > 0 and folded["max_abs_diff"] <= fold.FOLD_ATOL
        assert record["onnx"]["batchnorm_nodes"] <= 1  # only the final norm, which precedes pooling, remains
    else:
        assert record["merge_bn"] is None
        # The two FLOP counts differ by exactly what docs/models.md says: attention in, patch biases out.
        attention, patch_bias = vit_attention_and_patch_bias(entry.name)
        assert measured["macs_onnx"] - measured["flops_paddleclas"] == attention - patch_bias


def check_served(server: TritonServer, name: str, photos: list[Path]) -> None:
    """The ensemble's answer for encoded photos equals ONNX Runtime's on the catalog's preprocessing."""
    entry = catalog.get(name)
    onnx_file = server.repository / configs.network_name(entry) / "1" / "model.onnx"
    expected = parity.run_onnx(onnx_file, photo_crops(entry))  # uint8 crops, as the server feeds it
    with Classifier(server.grpc_url, entry.triton_name) as classifier:
        predictions = classifier.classify([p.read_bytes() for p in photos])
    for prediction, reference in zip(predictions, expected, strict=True):
        prediction.check()
        top5 = np.argsort(-reference, kind="stable")[: configs.TOP_K]
        assert prediction.class_ids == top5.tolist()
        np.testing.assert_allclose(prediction.scores, reference[top5], atol=1e-6, rtol=0)
    assert len({p.class_ids[0] for p in predictions}) > 1  # a constant answer would prove nothing


@pytest.fixture(scope="module")
def representative_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_models(tmp_path_factory.mktemp("representative") / "model_repository", REPRESENTATIVE)


@pytest.fixture(scope="module")
def representative_server(
    representative_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    with serve(representative_repository, tmp_path_factory.mktemp("triton-representative")) as server:
        yield server


def test_every_catalog_model_has_an_export_test() -> None:
    covered = {*SERVED_MODELS, *REPRESENTATIVE, *EVERY_OTHER}
    assert covered == set(catalog.CATALOG)
    assert {"NextViT", "ViT"} == {catalog.get(n).family for n in REPRESENTATIVE}
    assert any(catalog.get(n).input_size == 384 and n.startswith("NextViT") for n in REPRESENTATIVE)
    assert "ViT_base_patch32_384" in REPRESENTATIVE and any("large" in n for n in REPRESENTATIVE)


@pytest.mark.export
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_export_record(representative_repository: Path, name: str) -> None:
    check_record(record_of(representative_repository, name))


@pytest.mark.export
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_vertical_slice_export_record(exported_repository: Path, name: str) -> None:
    check_record(record_of(exported_repository, name))


@pytest.mark.server
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_model_answers_through_the_ensemble(
    representative_server: TritonServer, sample_photos: list[Path], name: str
) -> None:
    check_served(representative_server, name, sample_photos)


@pytest.mark.export
def test_docs_tables_render_from_real_records(representative_repository: Path) -> None:
    records = report.load_records(representative_repository)
    text = report.render(records, representative_repository)
    assert f"{len(REPRESENTATIVE)} of {len(catalog.CATALOG)} catalog models have an export record" in text
    vit = catalog.get("ViT_base_patch32_384")
    row = "| " + " | ".join(report.figures_row(vit, records[vit.name])) + " |"
    assert row in text
    assert f"| `{vit.name}` | {vit.published.params_m:.2f} | {vit.published.params_m:.2f} |" in row
    assert "(`cls_token`, `pos_embed`)" in row
    assert f"| `{EVERY_OTHER[0]}` | {report.MISSING} |" in text


@pytest.mark.slow
@pytest.mark.export
@pytest.mark.server
@pytest.mark.parametrize("name", EVERY_OTHER)
def test_catalog_model_exports_and_answers(name: str, tmp_path: Path, sample_photos: list[Path]) -> None:
    repository = tmp_path / "model_repository"
    try:
        export_models(repository, [name])
        check_record(record_of(repository, name))
        with serve(repository, tmp_path) as server:
            check_served(server, name, sample_photos)
    finally:
        shutil.rmtree(repository, ignore_errors=True)  # ViT_large networks are 1.2 GB each
