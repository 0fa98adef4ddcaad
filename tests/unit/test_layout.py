"""The serving copy: only the selected models and the steps they call, every config rendered for the node."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import catalog
from export import trt_plans
from model_repository import __main__ as repository_cli
from model_repository import configs, install, layout
from tests.support.records import placeholder_record

NEXTVIT, VIT = catalog.get("NextViT_small_224"), catalog.get("ViT_base_patch16_224")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """NextViT and ViT installed (portable), a placeholder network file: nothing here runs a network."""
    network = tmp_path / "placeholder.onnx"
    network.write_bytes(b"placeholder")
    repo = tmp_path / "installed"
    for entry in (NEXTVIT, VIT):
        install.install(entry, network, {"weights_note": "placeholder"}, repo, "portable")
    return repo


def served_config(target: Path, name: str):
    return configs.parse_pbtxt((target / name / "config.pbtxt").read_text())


def test_render_selects_the_named_models_and_their_steps_only(repository: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    summary = layout.render(repository, target, ["ViT_base_patch16_224"], configs.Layout.for_cores(4), 4)
    rendered_only = [configs.interactive_network_name(VIT)]  # portable: a reserved network, not installed
    expected = sorted(configs.own_models(VIT) + configs.shared_steps(VIT) + rendered_only)
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == expected
    assert summary["models"] == [VIT.triton_name] and summary["python_step_models"] == 4
    # What the liveness check counts (health.py): 4 + 1 interactive + 2 PIXELS + 1 top-k + 1 network
    # instance + 1 interactive network instance.
    assert summary["python_stub_processes"] == 10


def test_the_interactive_network_serves_the_installed_network_on_an_instance_of_its_own(
    repository: Path, tmp_path: Path
) -> None:
    target = tmp_path / "serving"
    layout.render(repository, target, ["ViT_base_patch16_224"], configs.Layout.for_cores(4), 4)
    reserved = target / configs.interactive_network_name(VIT)
    installed = repository / configs.network_name(VIT) / "1" / "model.onnx"
    assert (reserved / "1" / "model.onnx").resolve() == installed.resolve()  # linked, not a second copy
    assert (reserved / "1" / "model.py").read_bytes() == (layout.PYTHON_MODELS / "onnx_network.py").read_bytes()
    served = served_config(target, configs.interactive_network_name(VIT))
    assert served.instance_group[0].count == 1 and served.parameters["intra_op_spinning"].string_value == "0"
    # No queue policy and no priority levels: 2.51's batcher prefetches for it (configs.py, load shedding).
    assert not served.dynamic_batching.HasField("default_queue_policy") and served.dynamic_batching.priority_levels == 0
    ensemble = served_config(target, configs.interactive_ensemble_name(VIT))
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == [configs.interactive_preprocess_name(VIT), reserved.name, configs.postprocess_name()]


def test_render_sizes_every_step_and_links_everything_else(repository: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    sized = configs.Layout.for_cores(6)
    layout.render(repository, target, None, sized, 6)
    assert served_config(target, configs.preprocess_name(NEXTVIT)).instance_group[0].count == 6
    assert served_config(target, configs.pixels_preprocess_name(VIT)).instance_group[0].count == 3
    assert served_config(target, configs.interactive_preprocess_name(VIT)).instance_group[0].count == 1  # not scaled
    assert served_config(target, configs.postprocess_name()).instance_group[0].count == 1
    network = served_config(target, configs.network_name(VIT))
    assert network.instance_group[0].count == 1 and network.parameters["intra_op_threads"].string_value == "6"
    assert network == configs.parse_pbtxt(configs.to_pbtxt(configs.network_config(VIT, "portable", sized)))
    # The step's code is this checkout's, copied; the installed data (network, warmup) is linked.
    step = target / configs.preprocess_name(VIT)
    assert (step / "1" / "model.py").read_bytes() == (layout.PYTHON_MODELS / "preprocess.py").read_bytes()
    assert not (step / "1" / "model.py").is_symlink() and (step / "1" / "preprocess" / "decoding.py").is_file()
    warmup = step / "warmup"
    assert warmup.is_symlink() and warmup.resolve() == (repository / configs.preprocess_name(VIT) / "warmup")
    onnx = target / configs.network_name(VIT) / "1" / "model.onnx"
    assert onnx.is_symlink() and (target / configs.network_name(VIT) / "1").is_dir()
    assert not list(repository.glob("*/config.pbtxt")), "the installed repository holds no config"


def test_explicit_counts_win_over_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "usable_cores", lambda: 3)
    cores, resolved = layout.resolve(None, preprocess_instances=7, network_gpu_instances=2)
    assert cores == 3
    assert resolved == configs.Layout(7, 1, 1, 1, 3, 2)
    assert layout.resolve(12).layout == configs.Layout.for_cores(12)


def test_unknown_or_missing_models_stop_with_the_names(repository: Path, tmp_path: Path) -> None:
    with pytest.raises(catalog.UnknownModelError, match="did you mean"):
        layout.render(repository, tmp_path / "a", ["NextViT_smal_224"], configs.Layout(), 1)
    with pytest.raises(layout.LayoutError, match="ViT_large_patch16_384 is not installed"):
        layout.render(repository, tmp_path / "b", ["ViT_large_patch16_384"], configs.Layout(), 1)


def test_render_never_clears_a_directory_it_did_not_write(repository: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(layout.LayoutError, match="not a serving copy"):
        layout.render(repository, precious, None, configs.Layout(), 1)
    assert (precious / "notes.txt").read_text() == "keep me"
    target = tmp_path / "serving"
    layout.render(repository, target, None, configs.Layout(), 1)
    layout.render(repository, target, ["NextViT_small_224"], configs.Layout(), 1)  # its own copy: replaced
    assert json.loads((target / layout.MARKER).read_text())["models"] == [NEXTVIT.triton_name]
    assert not (target / VIT.triton_name).exists()


def test_command_line_prints_what_it_rendered(repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "serving"
    argv = ["render", "--repository", str(repository), "--out", str(target), "--models", "nextvit_small_224"]
    assert repository_cli.main([*argv, "--cores", "2", "--postprocess-instances", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cores"] == 2 and summary["layout"]["postprocess_instances"] == 2
    assert served_config(target, configs.postprocess_name()).instance_group[0].count == 2
    assert repository_cli.main(["render", "--repository", str(tmp_path / "nothing"), "--out", str(target)]) == 1
    assert "holds no exported model" in capsys.readouterr().err


def test_queue_sizes_follow_the_instance_counts(repository: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    layout.render(repository, target, None, configs.Layout.for_cores(6), 6)
    preprocess = served_config(target, configs.preprocess_name(NEXTVIT)).dynamic_batching.default_queue_policy
    assert preprocess.max_queue_size == 6 * configs.QUEUE_PER_INSTANCE["preprocess"]
    pixels = served_config(target, configs.pixels_preprocess_name(VIT)).dynamic_batching.default_queue_policy
    assert pixels.max_queue_size == 3 * configs.QUEUE_PER_INSTANCE["pixels_preprocess"]
    assert preprocess.default_timeout_microseconds == configs.PREPROCESS_TIMEOUT_US  # the timeout stays


def _queue(target: Path, name: str) -> int:
    return served_config(target, name).dynamic_batching.default_queue_policy.max_queue_size


def test_a_longer_preprocess_queue_lengthens_only_the_preprocess_steps(repository: Path, tmp_path: Path) -> None:
    default, longer = tmp_path / "default", tmp_path / "longer"
    layout.render(repository, default, None, configs.Layout.for_cores(6), 6)
    argv = ["--repository", str(repository), "--out", str(longer), "--cores", "6", "--preprocess-queue", "4"]
    assert layout.main(argv) == 0
    assert _queue(longer, configs.preprocess_name(NEXTVIT)) == 6 * 4
    assert _queue(longer, configs.pixels_preprocess_name(VIT)) == 3 * 4
    assert (
        _queue(longer, configs.interactive_preprocess_name(VIT))
        == _queue(default, configs.interactive_preprocess_name(VIT))
        == 1
    )
    others = [path.parent.name for path in default.glob("*/config.pbtxt")]
    others = [name for name in others if configs.step_kind(name) in ("network", "postprocess")]
    assert others and all(_queue(longer, name) == _queue(default, name) for name in others)


def test_preprocess_queue_zero_is_the_default_and_below_is_refused() -> None:
    assert configs.Layout(preprocess_queue=0) == configs.Layout()
    with pytest.raises(ValueError, match="preprocess_queue must be at least 0"):
        configs.Layout(preprocess_queue=-1)


def test_a_benchmark_copy_without_queue_policies_keeps_everything_else(repository: Path, tmp_path: Path) -> None:
    bounded, unbounded = tmp_path / "bounded", tmp_path / "unbounded"
    layout.render(repository, bounded, None, configs.Layout.for_cores(2), 2)
    layout.render(repository, unbounded, None, configs.Layout.for_cores(2), 2, queue_policies=False)
    for config_file in sorted(bounded.glob("*/config.pbtxt")):
        with_policy, without = (
            served_config(bounded, config_file.parent.name),
            served_config(unbounded, config_file.parent.name),
        )
        assert not without.dynamic_batching.HasField("default_queue_policy"), without.name
        if with_policy.HasField("dynamic_batching"):  # ensembles have none
            for field in ("default_queue_policy", "priority_queue_policy", "priority_levels", "default_priority_level"):
                with_policy.dynamic_batching.ClearField(field)
        assert without == with_policy  # instances, threads, batching, warmup: the same served step
    assert served_config(bounded, configs.preprocess_name(NEXTVIT)).dynamic_batching.HasField("default_queue_policy")


def test_a_longer_preprocess_queue_raises_the_production_ensembles_inflight_bound() -> None:
    node = configs.Layout.for_cores(96)  # preprocessing, not the network, is the busiest step here
    longer = dataclasses.replace(node, preprocess_queue=4)
    assert configs.ensemble_inflight_limit(longer) - configs.ensemble_inflight_limit(node) == 96 * (4 - 1)
    policy = configs.preprocess_config(NEXTVIT, longer)["dynamic_batching"]["default_queue_policy"]
    assert policy["max_queue_size"] == 96 * 4  # the step's own config honours it, not only a renderer


def test_stale_installed_configs_and_code_are_never_served(repository: Path, tmp_path: Path) -> None:
    """An install of an older checkout (configs and step code in the repository) serves this checkout's."""
    step = repository / configs.postprocess_name()
    (step / "config.pbtxt").write_text('name: "postprocess"\nbackend: "python"\n')
    (step / "1" / "model.py").write_text("raise SystemExit('an older step')\n")
    ensemble = repository / VIT.triton_name
    (ensemble / "1").mkdir(parents=True)
    (ensemble / "config.pbtxt").write_text("not even a config")
    target = tmp_path / "serving"
    layout.render(repository, target, None, configs.Layout(), 1)
    assert served_config(target, configs.postprocess_name()) == configs.parse_pbtxt(
        configs.to_pbtxt(configs.postprocess_config())
    )
    assert (target / step.name / "1" / "model.py").read_bytes() == (
        layout.PYTHON_MODELS / "postprocess.py"
    ).read_bytes()
    assert served_config(target, VIT.triton_name).name == VIT.triton_name
    assert (target / step.name / "1" / install.LABELS_FILE).is_symlink()


def test_response_cache_warmup_and_fast_decode_are_options_of_the_rendered_configs(
    repository: Path, tmp_path: Path
) -> None:
    target = tmp_path / "serving"
    layout.render(repository, target, None, configs.Layout(), 1, warmup=False, response_cache=True, fast_decode=True)
    for path in sorted(target.glob("*/config.pbtxt")):
        config = configs.parse_pbtxt(path.read_text())
        assert not config.model_warmup, config.name
        assert config.response_cache.enable == (configs.step_kind(config.name) == "ensemble"), config.name
        fast = configs.step_kind(config.name) in ("preprocess", "interactive_preprocess")  # the IMAGE steps
        assert (config.parameters["decode"].string_value == "fast") == fast, config.name


@pytest.fixture
def production(tmp_path: Path) -> Path:
    network = tmp_path / "placeholder.onnx"
    network.write_bytes(b"placeholder")
    network.with_name(install.FP16_NETWORK).write_bytes(b"placeholder fp16")
    repo = tmp_path / "production"
    install.install(VIT, network, placeholder_record(VIT), repo, "production")
    return repo


def test_a_production_network_is_rendered_from_its_record_plans_or_provider_choice(
    production: Path, tmp_path: Path
) -> None:
    network = production / configs.network_name(VIT)
    record = install.read_record(network)
    node = configs.Layout.for_cores(8, network_gpu_instances=2)

    def served() -> configs.model_config_pb2.ModelConfig:
        target = tmp_path / "serving"
        layout.render(production, target, None, node, 8)
        return served_config(target, network.name)

    onnxruntime = served()
    assert onnxruntime.backend == "onnxruntime" and onnxruntime.instance_group[0].count == 2
    assert int(onnxruntime.parameters["gpu_mem_limit"].string_value) == install.gpu_mem_limit(record)
    assert json.loads((tmp_path / "serving" / network.name / trt_plans.TENSORRT_BUILD).read_text()) == {
        "profiles": configs.trt_profiles(VIT)
    }
    install.write_ort_tensorrt(network, configs.OrtTensorrt("fp16", "/cache"))
    provider = served()
    assert provider.default_model_filename == install.FP16_NETWORK
    (accelerator,) = provider.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.parameters["trt_engine_cache_path"] == "/cache"
    install.write_ort_tensorrt(network, None)
    plans = {"plans": {"8.9": {"file": "model_sm89.plan", "precision": "fp32"}}, "default": "8.9"}
    (network / "1" / trt_plans.PLANS_RECORD).write_text(json.dumps(plans))
    plan = served()
    assert plan.platform == "tensorrt_plan" and dict(plan.cc_model_filenames) == {"8.9": "model_sm89.plan"}
    assert plan.default_model_filename == "model_sm89.plan" and plan.parameters["precision"].string_value == "fp32"
    assert plan.instance_group[0].count == 2 and configs.tensorrt_config_problems(plan) == []


def test_plans_built_in_the_pod_are_named_by_the_render_step(production: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    summary = layout.render(production, target, None, configs.Layout(), 1, tensorrt_plans="fp16")
    plan = served_config(target, configs.network_name(VIT))
    assert plan.default_model_filename == trt_plans.DEFAULT_PLAN and not plan.cc_model_filenames
    assert plan.parameters["precision"].string_value == "fp16" and summary["tensorrt_plans"] == "fp16"
    with pytest.raises(layout.LayoutError, match="plan precision 'int8'"):
        layout.render(production, target, None, configs.Layout(), 1, tensorrt_plans="int8")


def test_only_the_networks_queue_the_interactive_level_apart(repository: Path, tmp_path: Path) -> None:
    layout.render(repository, tmp_path / "copy", None, configs.Layout.for_cores(4), 4)
    batching = served_config(tmp_path / "copy", configs.network_name(NEXTVIT)).dynamic_batching
    interactive = batching.priority_queue_policy[configs.INTERACTIVE_PRIORITY]
    assert (batching.priority_levels, batching.default_priority_level) == (2, 2)
    assert interactive.max_queue_size == batching.default_queue_policy.max_queue_size > 0
    # The preprocess steps have one level: interactive requests have an instance of their own instead.
    for name in (configs.preprocess_name(NEXTVIT), configs.pixels_preprocess_name(NEXTVIT)):
        preprocess = served_config(tmp_path / "copy", name).dynamic_batching
        assert preprocess.priority_levels == 0 and not preprocess.priority_queue_policy, name
    reserved = served_config(tmp_path / "copy", configs.interactive_preprocess_name(NEXTVIT)).dynamic_batching
    assert reserved.priority_levels == 0 and not reserved.priority_queue_policy
    assert reserved.default_queue_policy.max_queue_size == 1
    assert reserved.default_queue_policy.default_timeout_microseconds == configs.INTERACTIVE_TIMEOUT_US
