"""preprocessing.resizeTier: exact by default; near-exact reaches the render step, which switches NextViT's steps.

The rendered render-repository command runs here against a repository installed by
model_repository.install (placeholder networks), with the project code laid out as the server image
holds it. pillow-simd's folder is this checkout's (make setup), given through PADDLECLAS_PILLOW_SIMD as
the image's ENV gives it; that the image sets the variable to the folder it copies pillow-simd into is
read from the Dockerfile (no container engine runs here).
"""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm
import pytest
from chart_helpers import HELM_DIR, image_code_tree, init_container, render, render_files
from test_chart_capacity import RENDER, installed, run_render, values_file
from test_server_image import BASE_IMAGE, dockerfile_instructions

import catalog
from model_repository import configs, layout
from preprocess import PILLOW_SIMD_DIR_PARAMETER, RESIZE_TIER_PARAMETER

SERVED = ("NextViT_small_224", "ViT_base_patch16_224")
DOCKERFILE = HELM_DIR / "image" / "Dockerfile"


def test_default_is_exact() -> None:
    assert values_file()["preprocessing"]["resizeTier"] == "exact"
    assert not any("resize-tier" in arg for arg in init_container(render(), RENDER)["args"])


def test_near_exact_reaches_the_render_step() -> None:
    args = init_container(render({"preprocessing": {"resizeTier": "near-exact"}}), RENDER)["args"]
    assert args.count("--resize-tier=near-exact") == 1


def test_schema_refuses_an_unknown_tier() -> None:
    with pytest.raises(helm.HelmValuesError, match="/preprocessing/resizeTier"):
        render_files({"preprocessing": {"resizeTier": "fast"}})


def test_object_storage_cannot_take_it() -> None:
    values = {
        "preprocessing": {"resizeTier": "near-exact"},
        "models": [],
        "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
    }
    with pytest.raises(helm.HelmRenderError, match=r"preprocessing\.resizeTier is applied by the render-repository"):
        render_files(values)


def test_the_image_points_the_render_step_at_its_pillow_simd() -> None:
    text = DOCKERFILE.read_text()
    env = re.search(rf"^ENV {layout.PILLOW_SIMD_ENV}=(\S+)$", text, re.MULTILINE)
    assert env, f"the server image sets no {layout.PILLOW_SIMD_ENV}"
    assert re.search(rf"^COPY --from=pillow-simd \S+ {re.escape(env.group(1))}$", text, re.MULTILINE)
    assert re.search(rf"--target {re.escape(env.group(1))} --requirement /tmp/pillow-simd.txt$", text, re.MULTILINE)


def test_pillow_simd_is_built_from_the_pinned_sdist_in_a_stage_of_its_own() -> None:
    """The compiler stays in the build stage; the server stage only copies the result."""
    stage = dockerfile_instructions("pillow-simd")
    assert stage[0] == ("FROM", f"{BASE_IMAGE} AS pillow-simd")
    assert ("COPY", "requirements/pillow-simd.txt /tmp/pillow-simd.txt") in stage
    (pip,) = [args for keyword, args in stage if keyword == "RUN" and "pip install" in args]
    assert pip.startswith('CC="cc -mavx2" python3 -m pip install') and "--no-binary pillow-simd" in pip
    assert not [args for keyword, args in dockerfile_instructions() if keyword == "RUN" and "gcc" in args]


def test_rendered_command_switches_the_pillow_steps_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pillow_simd = layout.default_pillow_simd_dir().resolve()  # this checkout's, standing in for the image's
    monkeypatch.setenv(layout.PILLOW_SIMD_ENV, str(pillow_simd))
    container = init_container(
        render({"mode": "cpu", "models": list(SERVED), "preprocessing": {"resizeTier": "near-exact"}}), RENDER
    )
    source = installed(tmp_path / "installed", "portable", list(SERVED))
    volume, cwd = tmp_path / "volume", tmp_path / "cwd"
    volume.mkdir()
    cwd.mkdir()
    summary = run_render(container, source, volume, image_code_tree(tmp_path / "opt-paddleclas"), cwd)
    assert summary["resize_tier"] == "near-exact"
    for name, tier in (("NextViT_small_224", "near-exact"), ("ViT_base_patch16_224", None)):
        entry = catalog.get(name)
        for step in (configs.preprocess_name(entry), configs.pixels_preprocess_name(entry)):
            params = configs.parse_pbtxt((volume / "models" / step / "config.pbtxt").read_text()).parameters
            assert (params[RESIZE_TIER_PARAMETER].string_value if RESIZE_TIER_PARAMETER in params else None) == tier
            if tier:
                assert params[PILLOW_SIMD_DIR_PARAMETER].string_value == str(pillow_simd)
