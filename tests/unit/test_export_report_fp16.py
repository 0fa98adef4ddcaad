"""docs/models.md's FP16 price section, rendered from results shaped as `python -m export fp16-price` writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import catalog
from export import fp16, fp16_price, report


def results(tmp_path: Path) -> dict:
    """Two measured models and an `_ssld` twin, the way fp16_price.main stores them (agreement on real arrays)."""
    rng = np.random.default_rng(0)
    models = {}
    for name in ("NextViT_small_224", "ViT_base_patch16_224"):
        p32 = rng.dirichlet(np.ones(1000), size=8).astype(np.float32)
        p16 = p32 + rng.normal(0, 1e-4, p32.shape).astype(np.float32)
        raw = tmp_path / f"{name}.npz"
        np.savez_compressed(raw, fp32=p32, fp16=p16)
        models[name] = {
            "model": name,
            "photographs": fp16.agreement(p16[:5], p32[:5]).as_dict(),
            "all": fp16.agreement(p16, p32).as_dict(),
            "derived_images": 3,
            "seconds_fp32": 1.0,
            "seconds_fp16": 2.0,
            "raw": str(raw),
            "machine": {"cpu_model": "a CPU", "cpu_flags": ["avx2"], "versions": {"onnxruntime": "1.19.2"}},
        }
    models["NextViT_small_224_ssld"] = models["NextViT_small_224"] | {"same_network_as": "NextViT_small_224"}
    price = {"command": "python -m export fp16-price --derived 3", "models": models}
    fp16_price.backfill(price)
    return price


def test_every_catalog_model_has_a_row_with_its_price_or_why_not(tmp_path: Path) -> None:
    text = report.fp16_section(results(tmp_path), Path("build/fp16-price/results.json"))
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(catalog.CATALOG)  # all 19, in catalog order
    by_name = {row.split("`")[1]: row for row in rows}
    assert "| 5 + 3 |" in by_name["NextViT_small_224"] and "| 1 / 2 |" in by_name["NextViT_small_224"]
    assert "same network as `NextViT_small_224`" in by_name["NextViT_small_224_ssld"]
    assert "not measured" in by_name["ViT_large_patch16_384"]
    assert "python -m export fp16-price --derived 3" in text and "ONNX Runtime 1.19.2" in text and "avx2" in text
    assert "A floor" in text and "--against FP32_HOST:8001/NAME" in text and "unverified on a GPU" in text


def test_without_results_the_section_says_how_to_measure() -> None:
    text = report.fp16_section(None, Path("build/fp16-price/results.json"))
    assert "Not measured yet: run `make fp16-price`" in text and "|" not in text
