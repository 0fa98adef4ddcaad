"""Every generated config parses into Triton's ModelConfig, and every ensemble edge names a real tensor."""

from __future__ import annotations

import math
import os
from pathlib import Path

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


def _portable_network_module(monkeypatch: pytest.MonkeyPatch):
    """The portable network's model.py, loaded outside the server (the backend's utils stubbed out)."""
    import importlib.util
    import sys
    import types

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    path = Path(configs.__file__).parent / "python_models" / "onnx_network.py"
    spec = importlib.util.spec_from_file_location("onnx_network_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no limit
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2, limits.cpu: 1500m
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, no limit
        ({}, None),  # no cgroup files at all
    ],
)
def test_network_threads_follow_the_container_cpu_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    """A Kubernetes CPU limit is a CFS quota the affinity mask does not show; the pool must fit it."""
    network = _portable_network_module(monkeypatch)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert network.cgroup_cpu_limit(tmp_path) == expected
    affinity = len(os.sched_getaffinity(0))
    usable = network.usable_cores(tmp_path)
    assert usable == (affinity if expected is None else min(affinity, math.ceil(expected)))


def test_network_threads_auto_shares_the_cores_between_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _portable_network_module(monkeypatch)
    assert network.intra_op_threads(0, instances=1, cores=16) == 16
    assert network.intra_op_threads(0, instances=4, cores=16) == 4
    assert network.intra_op_threads(0, instances=3, cores=2) == 1
    assert network.intra_op_threads(3, instances=1, cores=16) == 3
