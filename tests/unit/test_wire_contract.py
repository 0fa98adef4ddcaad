"""The wire contract has one definition, client/contract.py: every catalog model's rendered configs follow it.

configs.py renders from the contract's names; this test reads them back from the generated configs
of every model, so a config that names a tensor, type or limit of its own fails here.
"""

from __future__ import annotations

import pytest

import catalog
from client import contract
from model_repository import configs

ENTRIES = list(catalog.CATALOG.values())


def tensors(config: configs.ConfigDict, key: str) -> list[tuple[str, str]]:
    return [(tensor["name"], tensor["data_type"]) for tensor in config[key]]


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_client_constants_are_the_generated_configs(entry: catalog.ModelEntry) -> None:
    image = configs.ensemble_config(entry, "weights")
    pixels = configs.pixels_ensemble_config(entry, "weights")
    crops = configs.crop_ensemble_config(entry, "weights")
    assert tensors(image, "input") == [(contract.IMAGE_INPUT, "TYPE_STRING")]
    assert tensors(pixels, "input") == [(contract.PIXELS_INPUT, "TYPE_UINT8")]
    assert tensors(crops, "input") == [(contract.CROPS_INPUT, "TYPE_UINT8")]
    assert pixels["name"] == entry.triton_name + contract.PIXELS_SUFFIX
    assert crops["name"] == entry.triton_name + contract.CROP_SUFFIX
    assert configs.network_name(entry) == entry.triton_name + contract.NETWORK_SUFFIX
    for config in (image, pixels, crops):
        assert tensors(config, "output") == list(contract.TOP_K_OUTPUTS.items())
        assert [tensor["dims"] for tensor in config["output"]] == [[contract.TOP_K]] * len(contract.OUTPUTS)
        assert config["max_batch_size"] == contract.MAX_BATCH_SIZE


def test_the_postprocess_step_gives_each_output_one_type() -> None:
    """postprocess.py tells its outputs apart by type (OUTPUT_ROLES): one string, one float, one integer."""
    types = [data_type for _, data_type in tensors(configs.postprocess_config(), "output")]
    assert sorted(types) == sorted(set(types)) == sorted(["TYPE_STRING", "TYPE_FP32", "TYPE_INT64"])
