"""Every generated config parses into Triton's ModelConfig, and every ensemble edge names a real tensor."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

import catalog
from model_repository import configs
from tests.support.ensembles import assert_wired

ENTRIES = list(catalog.CATALOG.values())
PLANS = configs.PlanFiles("model.plan", "fp16")  # what a pod builds (render --tensorrt-plans fp16)


def _all_configs(entry: catalog.ModelEntry, variant: configs.Variant) -> dict[str, configs.ConfigDict]:
    models = [
        configs.ensemble_config(entry, "test", None, variant),
        configs.interactive_ensemble_config(entry, "test", None, variant),
        configs.pixels_ensemble_config(entry, "test", None, variant),
        configs.preprocess_config(entry),
        configs.interactive_preprocess_config(entry),
        configs.pixels_preprocess_config(entry),
        configs.network_config(entry, variant),
        configs.postprocess_config(),
    ]
    if variant == "portable":
        models.append(configs.interactive_network_config(entry))
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


def test_variants_share_tensors_and_batch_for_their_hardware() -> None:
    entry = catalog.get("NextViT_small_224")
    production = configs.network_config(entry, "production")
    portable = configs.network_config(entry, "portable")
    assert (production["backend"], production["instance_group"][0]["kind"]) == ("onnxruntime", "KIND_GPU")
    assert (portable["backend"], portable["instance_group"][0]["kind"]) == ("python", "KIND_CPU")
    assert all(production[k] == portable[k] for k in ("input", "output"))
    # The GPU network batches across requests; a request still carries at most MAX_BATCH_SIZE images.
    assert production["max_batch_size"] == configs.GPU_MAX_BATCH_SIZE > configs.MAX_BATCH_SIZE
    assert portable["max_batch_size"] == configs.MAX_BATCH_SIZE


def test_network_input_is_the_uint8_crop() -> None:
    for entry in ENTRIES:
        (crops,) = configs.parse_pbtxt(configs.to_pbtxt(configs.network_config(entry, "production"))).input
        size = entry.input_size
        assert (crops.name, crops.data_type, list(crops.dims)) == (
            configs.NETWORK_INPUT,
            2,
            [size, size, 3],
        )  # 2 = UINT8
        (produced,) = configs.parse_pbtxt(configs.to_pbtxt(configs.preprocess_config(entry))).output
        assert (produced.name, produced.data_type, produced.dims) == (crops.name, crops.data_type, crops.dims)


def test_preprocess_parameters_come_from_the_catalog() -> None:
    for entry in ENTRIES:
        params = {k: v["string_value"] for k, v in configs.preprocess_config(entry)["parameters"].items()}
        prep = entry.preprocessing
        assert int(params["resize_short"]) == prep.resize_short and int(params["crop"]) == prep.crop
        assert params["resize"] == prep.resize
        assert "mean" not in params and "std" not in params  # the network normalizes (export/normalization.py)


def test_all_models_share_thirteen_python_steps() -> None:
    """Four preprocessing keys x (IMAGE, interactive IMAGE, PIXELS) + one postprocess, whatever the number of models."""
    steps = {name for entry in ENTRIES for name in configs.shared_steps(entry)}
    assert len(steps) == 13
    kinds = {configs.step_kind(name) for name in steps}
    assert kinds == {"preprocess", "interactive_preprocess", "pixels_preprocess", "postprocess"}
    for entry in ENTRIES:  # models share a step exactly when their crops are made the same way
        prep = entry.preprocessing
        twins = {o.name for o in ENTRIES if configs.preprocess_name(o) == configs.preprocess_name(entry)}
        same = {
            o.name
            for o in ENTRIES
            if (o.preprocessing.resize, o.preprocessing.resize_short, o.preprocessing.crop)
            == (prep.resize, prep.resize_short, prep.crop)
        }
        assert twins == same
    own = [name for entry in ENTRIES for name in configs.own_models(entry)]
    assert len(own) == len(set(own)) == 5 * len(ENTRIES)
    assert not set(own) & steps


def test_step_kind_names_every_generated_model() -> None:
    for entry in ENTRIES:
        kinds = {
            config["name"]: configs.step_kind(config["name"]) for config in _all_configs(entry, "portable").values()
        }
        assert kinds == {
            entry.triton_name: "ensemble",
            configs.interactive_ensemble_name(entry): "ensemble",
            configs.pixels_ensemble_name(entry): "ensemble",
            configs.preprocess_name(entry): "preprocess",
            configs.interactive_preprocess_name(entry): "interactive_preprocess",
            configs.pixels_preprocess_name(entry): "pixels_preprocess",
            configs.network_name(entry): "network",
            configs.interactive_network_name(entry): "network",
            configs.postprocess_name(): "postprocess",
        }


def test_the_step_pattern_matches_every_step_and_no_ensemble() -> None:
    """The monitoring queries select steps with it (PromQL's =~ matches the whole name, as fullmatch does)."""
    pattern, kinds = re.compile(configs.step_name_pattern()), set()
    for entry in ENTRIES:
        for name in [*configs.own_models(entry), *configs.shared_steps(entry), configs.interactive_network_name(entry)]:
            kinds.add(configs.step_kind(name))
            assert bool(pattern.fullmatch(name)) == (configs.step_kind(name) != "ensemble"), name
    assert kinds == {"ensemble", "preprocess", "interactive_preprocess", "pixels_preprocess", "network", "postprocess"}


@pytest.mark.parametrize("variant", configs.VARIANTS)
def test_ensembles_never_send_more_than_a_step_takes(variant: configs.Variant) -> None:
    for entry in ENTRIES:
        models = _all_configs(entry, variant)
        for ensemble in (
            entry.triton_name,
            configs.interactive_ensemble_name(entry),
            configs.pixels_ensemble_name(entry),
        ):
            for step in models[ensemble]["ensemble_scheduling"]["step"]:
                assert models[step["model_name"]]["max_batch_size"] >= models[ensemble]["max_batch_size"]


@pytest.mark.parametrize("variant", configs.VARIANTS)
def test_every_step_warms_up_within_its_batch_limit(variant: configs.Variant) -> None:
    entry = catalog.get("ViT_base_patch16_384")
    for name, config in _all_configs(entry, variant).items():
        if configs.step_kind(name) == "ensemble":
            assert "model_warmup" not in config  # Triton cannot warm an ensemble: its steps are warmed
            continue
        warmups = configs.parse_pbtxt(configs.to_pbtxt(config)).model_warmup
        assert warmups, name
        assert all(1 <= w.batch_size <= config["max_batch_size"] for w in warmups), name
    network = configs.parse_pbtxt(configs.to_pbtxt(configs.network_config(entry, variant)))
    assert sorted(w.batch_size for w in network.model_warmup) == configs.network_warmup_batches(variant)


def test_tensorrt_config_profiles_batching_and_graphs_agree() -> None:
    entry = catalog.get("NextViT_small_224")
    config = configs.parse_pbtxt(
        configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS, configs.Layout(network_gpu_instances=2)))
    )
    assert (config.platform, config.backend, config.max_batch_size) == (
        "tensorrt_plan",
        "tensorrt",
        configs.GPU_MAX_BATCH_SIZE,
    )
    (group,) = config.instance_group
    assert (group.count, list(group.profile)) == (2, [str(i) for i in range(len(configs.TRT_PROFILES))])
    lows, opts, highs = zip(*configs.TRT_PROFILES, strict=True)
    assert lows[0] == 1 and highs[-1] == configs.GPU_MAX_BATCH_SIZE
    assert all(low <= high + 1 for high, low in zip(highs, lows[1:], strict=False))  # every batch size has a profile
    assert list(config.dynamic_batching.preferred_batch_size) == list(opts)
    assert [spec.batch_size for spec in config.optimization.cuda.graph_spec] == list(configs.CUDA_GRAPH_BATCH_SIZES)
    assert {w.batch_size for w in config.model_warmup} >= {1, *opts}
    profiles = configs.trt_profiles(entry)
    assert len(profiles) == len(configs.TRT_PROFILES)
    assert profiles[0] == {
        "min": {"CROPS": [1, 224, 224, 3]},
        "opt": {"CROPS": [8, 224, 224, 3]},
        "max": {"CROPS": [16, 224, 224, 3]},
    }
    assert config.default_model_filename == PLANS.default and config.parameters["precision"].string_value == "fp16"


def _nearest_profile(batch: int) -> int:
    """Where the tensorrt backend runs `batch`: the nearest optimum that admits it (GetMostOptimizedProfile)."""
    admitting = [i for i, (low, _, high) in enumerate(configs.TRT_PROFILES) if low <= batch <= high]
    return min(admitting, key=lambda i: abs(configs.TRT_PROFILES[i][1] - batch))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_tensorrt_configs_load_clean(entry: catalog.ModelEntry) -> None:
    """Every graph batch and lower bound lies in every profile of the group capturing it; 1-16 all have a graph."""
    for layout in (configs.Layout(), configs.Layout(network_gpu_instances=2)):
        config = configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS, layout)))
        assert configs.tensorrt_config_problems(config) == []
        for group in config.instance_group:
            for name in group.profile:
                low, _, high = configs.TRT_PROFILES[int(name)]
                for spec in config.optimization.cuda.graph_spec:
                    assert low <= spec.graph_lower_bound.batch_size <= spec.batch_size <= high
                    assert list(spec.input["CROPS"].dim) == list(spec.graph_lower_bound.input["CROPS"].dim)
                    assert list(spec.input["CROPS"].dim) == [entry.input_size, entry.input_size, 3]
        assert config.parameters["execution_context_allocation_strategy"].string_value == "ON_PROFILE_CHANGE"
        covered = {
            b
            for s in config.optimization.cuda.graph_spec
            for b in range(s.graph_lower_bound.batch_size, s.batch_size + 1)
        }
        assert covered == set(range(1, 17))
    # Batches still split as before the profiles overlapped: 1-16 on the small one, the rest on the large one.
    assert [_nearest_profile(b) for b in (1, 16, 17, 128)] == [0, 0, 1, 1]


def test_the_check_names_what_the_backend_would_log() -> None:
    """Configs the tensorrt backend would load with errors, or without a graph for a claimed batch, are named."""
    entry = catalog.get("ViT_base_patch16_224")
    good = configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS)))
    # The profiles of before: graphs 1-16 captured on a context of profile 17-128 fail to set their shape.
    disjoint = configs.tensorrt_config_problems(good, profiles=((1, 8, 16), (17, 64, 128)))
    assert len(disjoint) == len(configs.CUDA_GRAPH_BATCH_SIZES) and "outside profile 1 (17-128)" in disjoint[0]
    missing_bound = configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS)))
    missing_bound.optimization.cuda.graph_spec[-1].ClearField("graph_lower_bound")  # 16 serves only 16
    assert configs.tensorrt_config_problems(missing_bound) == ["batches [13, 14, 15] have no CUDA graph"]
    shapeless = configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS)))
    shapeless.optimization.cuda.graph_spec[0].ClearField("input")
    assert "input shapes" in configs.tensorrt_config_problems(shapeless)[0]
    static = configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(entry, PLANS)))
    del static.parameters["execution_context_allocation_strategy"]
    assert configs.tensorrt_config_problems(static) == [
        "execution_context_allocation_strategy is '', expected 'ON_PROFILE_CHANGE'"
    ]


def test_layout_for_cores() -> None:
    assert configs.Layout.for_cores(2) == configs.Layout(2, 1, 1, 1, 2, 1)
    assert configs.Layout.for_cores(16, network_gpu_instances=2) == configs.Layout(16, 8, 1, 1, 16, 2)
    assert configs.Layout.for_cores(64).interactive_preprocess_instances == 1  # a reserve, not scaled
    with pytest.raises(ValueError, match="preprocess_instances"):
        configs.Layout(preprocess_instances=0)
    with pytest.raises(ValueError, match="cores"):
        configs.Layout.for_cores(0)


def test_pinned_pool_holds_two_largest_batches_per_gpu_instance() -> None:
    entries_224 = [catalog.get("ViT_base_patch16_224")]
    assert (
        configs.pinned_pool_bytes(entries_224, 1) == configs.TRITON_DEFAULT_PINNED_POOL_BYTES
    )  # 38 MB fit the default
    two_instances = 2 * 2 * configs.GPU_MAX_BATCH_SIZE * (384 * 384 * 3 + 1000 * 4)  # 229 MB
    assert configs.pinned_pool_bytes(ENTRIES, 2) == configs.TRITON_DEFAULT_PINNED_POOL_BYTES > two_instances
    pool = configs.pinned_pool_bytes(ENTRIES, 4)
    assert 2 * two_instances <= pool < 2 * two_instances + (1 << 20)


def test_unknown_field_is_rejected_at_generation_time() -> None:
    config = configs.postprocess_config() | {"dynamic_batchin": {}}
    with pytest.raises(Exception, match="dynamic_batchin"):
        configs.to_pbtxt(config)


def _portable_network_module(monkeypatch: pytest.MonkeyPatch):
    """The portable network's model.py, loaded outside the server (the backend's utils stubbed out)."""
    import importlib.util
    import sys
    import types

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    from model_repository import cores

    monkeypatch.setitem(sys.modules, "cores", cores)  # install copies cores.py beside model.py
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
    from model_repository import cores

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cores.cgroup_cpu_limit(tmp_path) == expected
    affinity = len(os.sched_getaffinity(0))
    usable = cores.usable_cores(tmp_path)
    assert usable == (affinity if expected is None else min(affinity, math.ceil(expected)))


def test_network_threads_auto_shares_the_cores_between_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _portable_network_module(monkeypatch)
    assert network.intra_op_threads(0, instances=1, cores=16) == 16
    assert network.intra_op_threads(0, instances=4, cores=16) == 4
    assert network.intra_op_threads(0, instances=3, cores=2) == 1
    assert network.intra_op_threads(3, instances=1, cores=16) == 3


@pytest.mark.parametrize("variant", configs.VARIANTS)
def test_every_step_that_can_fall_behind_has_a_bounded_rejecting_queue(variant: configs.Variant) -> None:
    entry = catalog.get("NextViT_small_224")
    steps = [configs.network_config(entry, variant), configs.tensorrt_network_config(entry, PLANS)]
    steps += [configs.preprocess_config(entry), configs.pixels_preprocess_config(entry)]
    steps += [configs.interactive_preprocess_config(entry)]
    for config in steps:
        policy = configs.parse_pbtxt(configs.to_pbtxt(config)).dynamic_batching.default_queue_policy
        assert policy.max_queue_size > 0 and policy.timeout_action == policy.REJECT, config["name"]
        assert policy.default_timeout_microseconds >= configs.QUEUE_TIMEOUT_FLOOR_US and policy.allow_timeout_override
    # Fed only by bounded networks: no policy, the one way 2.51's batcher prefetches (configs.py, load shedding).
    postprocess = configs.parse_pbtxt(configs.to_pbtxt(configs.postprocess_config()))
    assert postprocess.HasField("dynamic_batching")
    assert not postprocess.dynamic_batching.HasField("default_queue_policy")
    ensembles = (configs.ensemble_config, configs.interactive_ensemble_config, configs.pixels_ensemble_config)
    for config in (ensemble(entry, "test") for ensemble in ensembles):
        assert "dynamic_batching" not in config  # 2.51: no ensemble back-pressure field exists
    assert [f.name for f in configs.model_config_pb2.ModelEnsembling.DESCRIPTOR.fields] == ["step"]


def test_portable_network_queues_hold_a_second_of_work_and_timeouts_let_them_drain() -> None:
    nextvit, vit = catalog.get("NextViT_small_224"), catalog.get("ViT_base_patch16_224")
    # 80 ms (NextViT-S) and 220 ms (ViT-B) per image measured on 2 cores; the estimate is within 20 %.
    # In one second after a full running batch of 8: 12 - 8 = 4 single images for NextViT-S; ViT-B's
    # batch alone takes longer, so it gets the floor: a request stranded by 2.51's batcher and the next.
    assert configs.max_queue_size("network", 1, entry=nextvit) == 4
    assert configs.max_queue_size("network", 1, entry=vit) == configs.MIN_NETWORK_QUEUE == 2
    with pytest.raises(ValueError, match="give the entry"):
        configs.max_queue_size("network", 1)
    # Twice the drain of a full queue of 8-image requests and the running batch (8): 2 x (32 + 8) and 2 x (16 + 8).
    assert 0.8 * 80 * 80_000 <= configs.network_timeout_us(nextvit, None) <= 1.2 * 80 * 80_000
    assert 0.8 * 48 * 220_000 <= configs.network_timeout_us(vit, None) <= 1.2 * 48 * 220_000
    layout = configs.Layout(preprocess_instances=3)
    assert (
        configs.preprocess_config(nextvit, layout)["dynamic_batching"]["default_queue_policy"]["max_queue_size"]
        == 3  # one request per instance
    )


def _served_runtime(config: configs.ConfigDict) -> configs.GpuRuntime:
    """The runtime a generated GPU network config is served by, read from the config itself."""
    if config.get("platform") == "tensorrt_plan":
        return ("tensorrt", config["parameters"]["precision"]["string_value"])
    assert config["backend"] == "onnxruntime" and "optimization" not in config  # CUDA provider, the FP32 export
    return configs.ONNXRUNTIME_RUNTIME


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_the_last_admitted_request_is_not_timed_out_on_the_served_runtime(entry: catalog.ModelEntry) -> None:
    """A full queue of 8-image requests behind a full running batch drains within the timeout, at the served rate."""
    for make in (configs.network_config, configs.tensorrt_network_config):
        for instances in (1, 2):
            layout = configs.Layout(network_gpu_instances=instances)
            config = make(entry, "production", layout) if make is configs.network_config else make(entry, PLANS, layout)
            policy = configs.parse_pbtxt(configs.to_pbtxt(config)).dynamic_batching.default_queue_policy
            per_instance_images = policy.max_queue_size // instances * configs.MAX_BATCH_SIZE
            ms = configs.gpu_ms_per_image(entry, _served_runtime(config))
            wait_us = (configs.GPU_MAX_BATCH_SIZE + per_instance_images) * ms * 1000
            assert wait_us < policy.default_timeout_microseconds, (config["name"], instances)
            # and the queue holds what the runtime runs in the budget, unless the floor or the cap rules
            queued_ms = per_instance_images * ms
            per_instance = policy.max_queue_size // instances
            assert queued_ms <= configs.NETWORK_QUEUE_BUDGET_MS or per_instance == configs.MIN_NETWORK_QUEUE


def test_the_default_network_is_priced_as_onnxruntime_fp32_not_tensorrt_fp16() -> None:
    """The onnxruntime network's queue and timeout follow ONNX Runtime FP32 rates, several times TensorRT FP16's."""
    vit_l = catalog.get("ViT_large_patch16_384")
    ort = configs.network_config(vit_l, "production")["dynamic_batching"]["default_queue_policy"]
    fp16_ms = configs.gpu_ms_per_image(vit_l, ("tensorrt", "fp16"))
    fp32_ms = configs.gpu_ms_per_image(vit_l, configs.ONNXRUNTIME_RUNTIME)
    assert fp32_ms > 5 * fp16_ms  # CUDA provider FP32 vs TensorRT FP16: 0.1 of its low rate
    full = (configs.GPU_MAX_BATCH_SIZE + ort["max_queue_size"] * configs.MAX_BATCH_SIZE) * fp32_ms * 1000
    assert full < ort["default_timeout_microseconds"]
    assert ort["max_queue_size"] == configs.MIN_NETWORK_QUEUE  # its running batch alone is seconds at FP32
    vit_b = catalog.get("ViT_base_patch16_224")
    assert configs.gpu_images_per_s("ViT_base_patch16_224", ("tensorrt", "fp16")) == (8_000, 12_000)
    assert configs.gpu_images_per_s("ViT_base_patch16_224", configs.ONNXRUNTIME_RUNTIME) == (800, 4_200)
    assert configs.max_queue_size("network", 2, True, vit_b) == 2 * configs.gpu_network_queue(
        vit_b, ("onnxruntime", "fp32")
    )
    with pytest.raises(ValueError, match="give the entry"):
        configs.max_queue_size("network", 1, gpu=True)


@pytest.mark.parametrize("variant", configs.VARIANTS)
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_the_interactive_ensemble_is_the_main_one_on_reserved_instances(
    entry: catalog.ModelEntry, variant: configs.Variant
) -> None:
    main, interactive = (
        config(entry, "test", None, variant)
        for config in (configs.ensemble_config, configs.interactive_ensemble_config)
    )
    assert interactive["name"] == entry.triton_name + "_interactive"
    first, network, postprocess = interactive["ensemble_scheduling"].pop("step")
    main_first, main_network, main_postprocess = main["ensemble_scheduling"].pop("step")
    assert postprocess == main_postprocess
    assert first == main_first | {"model_name": configs.interactive_preprocess_name(entry)}
    # On CPU a network instance of its own (a flood's batch takes seconds there); a GPU's is shared.
    reserved = configs.interactive_network_name(entry) if variant == "portable" else configs.network_name(entry)
    assert network == main_network | {"model_name": reserved}
    assert {key: value for key, value in interactive.items() if key != "name"} == {
        key: value for key, value in main.items() if key != "name"
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_the_interactive_network_is_the_portable_network_on_instances_of_its_own(entry: catalog.ModelEntry) -> None:
    layout = configs.Layout.for_cores(4)
    shared, reserved = (
        configs.network_config(entry, "portable", layout),
        configs.interactive_network_config(entry, layout),
    )
    assert configs.installed_name(reserved["name"]) == shared["name"]  # the same files, so the same answers
    assert reserved["parameters"] == shared["parameters"] | {"intra_op_spinning": {"string_value": "0"}}
    assert reserved["instance_group"] == [{"kind": "KIND_CPU", "count": layout.interactive_network_cpu_instances}]
    assert reserved["dynamic_batching"] == {}  # no queue policy: 2.51's batcher prefetches (configs.py)
    differing = {"name", "parameters", "instance_group", "dynamic_batching"}
    assert {k: v for k, v in reserved.items() if k not in differing} == {
        k: v for k, v in shared.items() if k not in differing
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_the_interactive_step_is_the_preprocess_step_for_small_requests(entry: catalog.ModelEntry) -> None:
    layout = configs.Layout.for_cores(16, network_gpu_instances=2)
    shared, reserved = configs.preprocess_config(entry, layout), configs.interactive_preprocess_config(entry, layout)
    assert reserved["name"] == f"interactive_preprocess_{configs.preprocess_key(entry)}"
    assert reserved["instance_group"] == [{"kind": "KIND_CPU", "count": 1}]  # 16 cores: still one
    limits = {"max_request_pixels": "13000000", "max_request_bytes": str(6 * 1024 * 1024)}
    shared_parameters = {key: value["string_value"] for key, value in shared["parameters"].items()}
    assert shared_parameters.pop(configs.NICENESS_PARAMETER) == str(configs.PREPROCESS_NICENESS)
    assert {key: value["string_value"] for key, value in reserved["parameters"].items()} == {
        **shared_parameters,
        **limits,
    }  # the catalog's decode and crop, the request limits, and the server's own CPU priority
    assert {"max_request_pixels", "max_request_bytes"}.isdisjoint(shared["parameters"])  # the shared step's defaults
    policy = reserved["dynamic_batching"]
    assert policy == {
        "default_queue_policy": {
            "max_queue_size": 1,
            "timeout_action": "REJECT",
            "default_timeout_microseconds": configs.INTERACTIVE_TIMEOUT_US,
            "allow_timeout_override": True,
        }
    }
    differ = {"name", "instance_group", "parameters", "dynamic_batching"}
    assert {key: value for key, value in reserved.items() if key not in differ} == {
        key: value for key, value in shared.items() if key not in differ
    }


def test_the_interactive_step_takes_one_phone_photo_and_refuses_more_before_decoding() -> None:
    """Its limits reach the served code: a 12 MP phone photo (4032x3024) passes, two are refused by name."""
    from preprocess import ImageDecodeError, Preprocessor
    from tests.support import images

    params = configs.interactive_preprocess_config(catalog.get("NextViT_small_224"))["parameters"]
    reserved = Preprocessor.from_parameters({key: value["string_value"] for key, value in params.items()})
    phone = images.jpeg_declaring(images.sized(64, 48), 4032, 3024)  # declares 12.2 MP in a few kB
    reserved.check_request([phone])
    with pytest.raises(ImageDecodeError, match=r"over the limit of 13,000,000 pixels per request .*max_request_pixels"):
        reserved.check_request([phone, phone])
    padded = phone + bytes(5 * 10**6)  # a large phone JPEG's bytes: allowed; two are over the byte limit
    reserved.check_request([padded])
    with pytest.raises(ImageDecodeError, match=f"over the limit of {6 * 2**20:,} bytes per request"):
        reserved.check_request([padded, padded])
