"""The wire contract has one definition, model_repository/configs.py; the client's constants must equal it.

The client keeps its own copies so it needs no server-side package (tritonclient and numpy only); this
test ties each of them to the generated configs of every catalog model.
"""

from __future__ import annotations

import pytest

import catalog
from catalog.reference import NUM_CLASSES
from client import classify
from model_repository import configs

ENTRIES = list(catalog.CATALOG.values())


def tensors(config: configs.ConfigDict, key: str) -> list[tuple[str, str]]:
    return [(tensor["name"], tensor["data_type"]) for tensor in config[key]]


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_client_constants_are_the_generated_configs(entry: catalog.ModelEntry) -> None:
    image = configs.ensemble_config(entry, "weights")
    pixels = configs.pixels_ensemble_config(entry, "weights")
    crops = configs.crop_ensemble_config(entry, "weights")
    assert tensors(image, "input") == [(classify.IMAGE_INPUT, "TYPE_STRING")]
    assert tensors(pixels, "input") == [(classify.PIXELS_INPUT, "TYPE_UINT8")]
    assert tensors(crops, "input") == [(classify.CROPS_INPUT, "TYPE_UINT8")]
    assert pixels["name"] == entry.triton_name + classify.PIXELS_SUFFIX
    assert crops["name"] == entry.triton_name + classify.CROP_SUFFIX
    assert configs.network_name(entry) == entry.triton_name + classify.NETWORK_SUFFIX
    for config in (image, pixels, crops):
        assert [name for name, _ in tensors(config, "output")] == list(classify.OUTPUTS)
        assert [tensor["dims"] for tensor in config["output"]] == [[classify.TOP_K]] * len(classify.OUTPUTS)
        assert config["max_batch_size"] == classify.MAX_BATCH_SIZE
    assert classify.NUM_CLASSES == NUM_CLASSES


def test_the_postprocess_step_gives_each_output_one_type() -> None:
    """postprocess.py tells its outputs apart by type (OUTPUT_ROLES): one string, one float, one integer."""
    types = [data_type for _, data_type in tensors(configs.postprocess_config(), "output")]
    assert sorted(types) == sorted(set(types)) == sorted(["TYPE_STRING", "TYPE_FP32", "TYPE_INT64"])
