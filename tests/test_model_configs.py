"""Every generated config parses into Triton's ModelConfig, and every ensemble edge names a real tensor."""

from __future__ import annotations

import pytest

import catalog
from model_repository import configs
from tests.ensembles import assert_wired

ENTRIES = list(catalog.CATALOG.values())


def _all_configs(entry: catalog.ModelEntry, variant: configs.Variant) -> dict[str, configs.ConfigDict]:
    models = [
        configs.ensemble_config(entry, "test"),
        configs.preprocess_config(entry),
        configs.network_config(entry, variant),
        configs.postprocess_config(entry),
    ]
    return {m["name"]: m for m in models}


@pytest.mark.parametrize("variant", configs.VARIANTS)
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_configs_round_trip_through_model_config_proto(entry: catalog.ModelEntry, variant: configs.Variant) -> None:
    for name, config in _all_configs(entry, variant).items():
        parsed = configs.parse_pbtxt(configs.to_pbtxt(config))
        assert parsed.name == name
        assert parsed.max_batch_size >= 8


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_ensemble_maps_name_real_tensors(entry: catalog.ModelEntry) -> None:
    models = {n: configs.parse_pbtxt(configs.to_pbtxt(c)) for n, c in _all_configs(entry, "production").items()}
    assert_wired(models[entry.triton_name], models)


def test_wire_contract() -> None:
    ensemble = configs.parse_pbtxt(configs.to_pbtxt(configs.ensemble_config(ENTRIES[0], "test")))
    assert [(i.name, i.data_type, list(i.dims)) for i in ensemble.input] == [("IMAGE", 13, [1])]  # 13 = TYPE_STRING
    outputs = {o.name: (o.data_type, list(o.dims)) for o in ensemble.output}
    assert outputs == {"LABELS": (13, [5]), "SCORES": (11, [5]), "CLASS_IDS": (9, [5])}  # 11 = FP32, 9 = INT64
    assert ensemble.max_batch_size >= 8


def test_variants_differ_only_in_runtime() -> None:
    entry = catalog.get("NextViT_small_224")
    production = configs.network_config(entry, "production")
    portable = configs.network_config(entry, "portable")
    assert (production["backend"], production["instance_group"][0]["kind"]) == ("onnxruntime", "KIND_GPU")
    assert (portable["backend"], portable["instance_group"][0]["kind"]) == ("python", "KIND_CPU")
    shared = ("input", "output", "max_batch_size", "dynamic_batching")
    assert all(production[k] == portable[k] for k in shared)


def test_preprocess_parameters_come_from_the_catalog() -> None:
    for entry in ENTRIES:
        params = {k: v["string_value"] for k, v in configs.preprocess_config(entry)["parameters"].items()}
        prep = entry.preprocessing
        assert int(params["resize_short"]) == prep.resize_short and int(params["crop"]) == prep.crop
        assert params["resize"] == prep.resize
        assert tuple(map(float, params["mean"].split(","))) == prep.mean


def test_unknown_field_is_rejected_at_generation_time() -> None:
    config = configs.postprocess_config(ENTRIES[0]) | {"dynamic_batchin": {}}
    with pytest.raises(Exception, match="dynamic_batchin"):
        configs.to_pbtxt(config)
