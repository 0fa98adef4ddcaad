"""The serving copy: only the selected models and the steps they call, sized for the node, linked to the install."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import catalog
from model_repository import configs, install, layout

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
    expected = sorted(configs.own_models(VIT) + configs.shared_steps(VIT))
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == expected
    assert summary["models"] == [VIT.triton_name] and summary["python_step_models"] == 3


def test_render_sizes_every_step_and_links_everything_else(repository: Path, tmp_path: Path) -> None:
    target = tmp_path / "serving"
    sized = configs.Layout.for_cores(6)
    layout.render(repository, target, None, sized, 6)
    assert served_config(target, configs.preprocess_name(NEXTVIT)).instance_group[0].count == 6
    assert served_config(target, configs.pixels_preprocess_name(VIT)).instance_group[0].count == 3
    assert served_config(target, configs.postprocess_name()).instance_group[0].count == 1
    network = served_config(target, configs.network_name(VIT))
    assert network.instance_group[0].count == 1 and network.parameters["intra_op_threads"].string_value == "6"
    # Everything but the sizes is the installed config, field for field.
    installed = configs.parse_pbtxt((repository / configs.network_name(VIT) / "config.pbtxt").read_text())
    installed.parameters["intra_op_threads"].string_value = "6"
    assert network == installed
    model_py = target / configs.preprocess_name(VIT) / "1" / "model.py"
    assert (
        model_py.is_symlink()
        and model_py.resolve() == (repository / configs.preprocess_name(VIT) / "1" / "model.py").resolve()
    )
    assert (target / configs.preprocess_name(VIT) / "1").is_dir() and not (
        target / configs.preprocess_name(VIT) / "1"
    ).is_symlink()
    assert (repository / configs.preprocess_name(NEXTVIT) / "config.pbtxt").read_text().count(
        "count: 1"
    ) == 1  # source untouched


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
    argv = ["--source", str(repository), "--target", str(target), "--models", "nextvit_small_224", "--cores", "2"]
    assert layout.main([*argv, "--postprocess-instances", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cores"] == 2 and summary["layout"]["postprocess_instances"] == 2
    assert layout.main(["--source", str(tmp_path / "nothing"), "--target", str(target)]) == 1
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
    argv = ["--source", str(repository), "--target", str(longer), "--cores", "6", "--preprocess-queue", "4"]
    assert layout.main(argv) == 0
    assert _queue(longer, configs.preprocess_name(NEXTVIT)) == 6 * 4
    assert _queue(longer, configs.pixels_preprocess_name(VIT)) == 3 * 4
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


def test_the_interactive_level_has_a_queue_of_its_own_sized_like_the_default(repository: Path, tmp_path: Path) -> None:
    layout.render(repository, tmp_path / "copy", None, configs.Layout.for_cores(4), 4)
    for name in (configs.preprocess_name(NEXTVIT), configs.network_name(NEXTVIT)):
        batching = served_config(tmp_path / "copy", name).dynamic_batching
        interactive = batching.priority_queue_policy[configs.INTERACTIVE_PRIORITY]
        assert (batching.priority_levels, batching.default_priority_level) == (2, 2), name
        assert interactive.max_queue_size == batching.default_queue_policy.max_queue_size > 0, name
    preprocess = served_config(tmp_path / "copy", configs.preprocess_name(NEXTVIT)).dynamic_batching
    assert preprocess.default_queue_policy.max_queue_size == 4  # one per instance on 4 cores
    assert preprocess.priority_queue_policy[configs.INTERACTIVE_PRIORITY].default_timeout_microseconds == 100_000
