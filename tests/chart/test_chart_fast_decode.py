"""preprocessing.fastDecode: off by default, and when on, the render step switches the served decode steps.

The rendered render-repository command is run here against a repository installed by
model_repository.install (placeholder networks: nothing runs one), with the project code laid out as
the server image holds it, so the test sees what the pod's serving copy would hold.
"""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest
from chart_helpers import image_code_tree, init_container, render, render_files
from test_chart_capacity import RENDER, installed, run_render, values_file

import catalog
from model_repository import configs

SERVED = ("NextViT_small_224", "ViT_base_patch16_224")


def test_default_is_exact() -> None:
    assert values_file()["preprocessing"]["fastDecode"] is False
    assert "--fast-decode" not in init_container(render(), RENDER)["args"]


def test_value_reaches_the_render_step() -> None:
    args = init_container(render({"preprocessing": {"fastDecode": True}}), RENDER)["args"]
    assert args.count("--fast-decode") == 1


def test_margin_reaches_the_render_step_only_when_set() -> None:
    assert not any(
        "margin" in arg for arg in init_container(render({"preprocessing": {"fastDecode": True}}), RENDER)["args"]
    )
    values = {"preprocessing": {"fastDecode": True, "fastDecodeMargin": 1.25}}
    assert "--fast-decode-margin=1.25" in init_container(render(values), RENDER)["args"]


def test_margin_without_fast_decode_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"fastDecodeMargin .* needs preprocessing\.fastDecode: true"):
        render_files({"preprocessing": {"fastDecodeMargin": 1.25}})


def test_schema_refuses_a_margin_below_one() -> None:
    with pytest.raises(helm.HelmValuesError, match="/preprocessing/fastDecodeMargin"):
        render_files({"preprocessing": {"fastDecode": True, "fastDecodeMargin": 0.5}})


def test_rendered_command_switches_the_decoding_steps_only(tmp_path: Path) -> None:
    values = {"mode": "cpu", "models": list(SERVED), "preprocessing": {"fastDecode": True, "fastDecodeMargin": 1.25}}
    container = init_container(render(values), RENDER)
    source = installed(tmp_path / "installed", "portable", list(SERVED))
    volume, cwd = tmp_path / "volume", tmp_path / "cwd"
    volume.mkdir()
    cwd.mkdir()
    summary = run_render(container, source, volume, image_code_tree(tmp_path / "opt-paddleclas"), cwd)
    assert summary["decode"] == "fast"
    assert summary["fast_decode_margin"] == 1.25
    for name in SERVED:
        entry = catalog.get(name)
        step = configs.parse_pbtxt((volume / "models" / configs.preprocess_name(entry) / "config.pbtxt").read_text())
        frames = configs.parse_pbtxt(
            (volume / "models" / configs.pixels_preprocess_name(entry) / "config.pbtxt").read_text()
        )
        assert step.parameters["decode"].string_value == "fast"
        assert float(step.parameters["fast_decode_margin"].string_value) == 1.25
        assert "decode" not in frames.parameters  # PIXELS steps never decode
        assert "fast_decode_margin" not in frames.parameters


def test_object_storage_cannot_take_it() -> None:
    values = {
        "preprocessing": {"fastDecode": True},
        "models": [],
        "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
    }
    with pytest.raises(helm.HelmRenderError, match=r"preprocessing\.fastDecode is applied by the render-repository"):
        render_files(values)


def test_schema_wants_a_boolean() -> None:
    with pytest.raises(helm.HelmValuesError, match="/preprocessing/fastDecode"):
        render_files({"preprocessing": {"fastDecode": "yes"}})
