"""The GPU memory budget: the render refuses served networks whose ONNX Runtime arenas do not fit one GPU.

The figures are the chart's files/network-memory.json (export/memory.py writes it from export records;
tests/export/test_memory.py ties it to real exports). The expected sums here are computed from that
file and values.yaml, independently of the template's arithmetic.
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_helpers import CHART_DIR, init_container, listed_after, render, render_case, render_files

import catalog

FIGURES = json.loads((CHART_DIR / "files" / "network-memory.json").read_text(encoding="utf-8"))["models"]
DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
ALL = sorted(FIGURES)


def need_mib(models: list[str], instances: int = 1) -> int:
    """MiB the served networks' arenas may take on one GPU, plus the reserve."""
    return sum(FIGURES[name.lower()]["gpuMemLimitMiB"] for name in set(models)) * instances + reserved()


def reserved() -> int:
    return int(DEFAULTS["gpu"]["reservedMiB"])


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmRenderError) as caught:
        render_files(values)
    return str(caught.value)


def test_the_default_models_are_the_224_px_ones_and_fit_the_default_gpu() -> None:
    default_models = DEFAULTS["models"]
    assert default_models == [entry.name for entry in catalog.CATALOG.values() if entry.input_size == 224]
    assert need_mib(ALL) > DEFAULTS["gpu"]["memoryGiB"] * 1024, "were all 19 to fit, the default would serve them"
    assert need_mib(default_models) <= DEFAULTS["gpu"]["memoryGiB"] * 1024
    args = init_container(render_case("01-default-gpu-values.yaml"), "render-repository")["args"]
    assert listed_after(args, "--models") == default_models


def test_every_model_on_the_default_gpu_is_refused_with_the_numbers() -> None:
    message = refusal({"models": []})
    total = need_mib(ALL)
    networks = total - reserved()
    assert f"need {networks} MiB of GPU memory" in message, message
    assert f"({len(ALL)} models x 1 instances" in message
    assert f"= {total} MiB, more than gpu.memoryGiB {DEFAULTS['gpu']['memoryGiB']}" in message
    # Largest first; equal figures in reverse name order (the template sorts "<figure> <name>" strings).
    largest = sorted(ALL, key=lambda name: (FIGURES[name]["gpuMemLimitMiB"], name), reverse=True)[:3]
    named = re.search(r"largest: (.*?)\. ", message)
    assert named, message
    assert named.group(1) == ", ".join(f"{name} {FIGURES[name]['gpuMemLimitMiB']} MiB" for name in largest)


def test_a_card_with_room_for_every_model_renders_and_one_gib_less_is_refused() -> None:
    gib = -(-need_mib(ALL) // 1024)  # rounded up
    render({"models": [], "gpu": {"memoryGiB": gib}})
    assert "more than gpu.memoryGiB" in refusal({"models": [], "gpu": {"memoryGiB": gib - 1}})


def test_instances_multiply_the_networks_and_the_reserve_counts() -> None:
    one = [max(ALL, key=lambda name: FIGURES[name]["gpuMemLimitMiB"])]
    fits_once = -(-need_mib(one) // 1024)
    render({"models": one, "gpu": {"memoryGiB": fits_once}})
    message = refusal({"models": one, "gpu": {"memoryGiB": fits_once}, "capacity": {"networkGpuInstances": 2}})
    assert f"need {2 * FIGURES[one[0]]['gpuMemLimitMiB']} MiB" in message and "1 models x 2 instances" in message
    squeezed = {"models": one, "gpu": {"memoryGiB": fits_once, "reservedMiB": fits_once * 1024}}
    assert f"plus gpu.reservedMiB {fits_once * 1024}" in refusal(squeezed)


def test_a_fitting_selection_renders_in_both_spellings() -> None:
    small = ["NextViT_small_224", "vit_base_patch16_224"]
    assert need_mib(small) <= 24 * 1024
    render({"models": small, "gpu": {"memoryGiB": 24}})


def test_no_check_where_no_gpu_network_is_served() -> None:
    # cpu mode serves the portable repository (networks on CPU): every model renders on any gpu value.
    render({"mode": "cpu", "models": [], "gpu": {"memoryGiB": 1}})
    # Object storage: the chart cannot see which models the bucket holds.
    render(
        {
            "models": [],
            "gpu": {"memoryGiB": 1},
            "modelRepository": {"source": "objectStorage", "objectStorage": {"url": "s3://b/p"}},
        }
    )


def test_the_figures_cover_the_catalog() -> None:
    assert {entry.triton_name for entry in catalog.CATALOG.values()} == set(FIGURES)
