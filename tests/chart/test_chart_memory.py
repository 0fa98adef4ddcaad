"""The chart's memory request and limit, allocator and frontend flags come from model_repository/memory.py.

The formula (docs/reliability.md, "Memory") is evaluated for the deployment the chart's defaults
render: the cores of the mode's CPU limit, every catalog model (models: []), /dev/shm's size limit,
and in gpu mode the server's own and the networks' host memory plus the pinned pool.
"""

from __future__ import annotations

import math

import pytest
import yaml
from chart_helpers import CHART_DIR, flags, render, server_container

from catalog import CATALOG
from model_repository import memory
from model_repository.configs import Layout
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES

VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
GIB = 1 << 30


def gib(quantity: str) -> float:
    assert quantity.endswith("Gi"), f"memory quantities of this chart are in Gi: {quantity}"
    return float(quantity[:-2])


def formula_gib(mode: str) -> int:
    """The documented bound for the chart's default deployment in `mode`, rounded up to whole GiB."""
    gpu = mode == "gpu"
    cores = math.ceil(float(VALUES["resources"][mode]["limits"]["cpu"]))
    extra = (memory.GPU_SERVER_GIB + memory.GPU_NETWORKS_GIB) * GIB if gpu else 0
    extra += VALUES["server"]["pinnedMemoryPoolMiB"] * memory.MIB if gpu else 0
    extra += VALUES["responseCache"]["sizeMiB"] * memory.MIB if VALUES["responseCache"]["enabled"] else 0
    models = VALUES["models"] or list(CATALOG)
    deployment = memory.Deployment.of(
        Layout.for_cores(cores), models, gpu, int(gib(VALUES["shm"]["sizeLimit"]) * GIB), extra_bytes=extra
    )
    return math.ceil(memory.pod_memory_bytes(deployment) / GIB)


@pytest.mark.parametrize("mode", ["gpu", "cpu"])
def test_memory_request_and_limit_follow_the_formula(mode: str) -> None:
    resources = server_container(render({"mode": mode}))["resources"]
    expected = formula_gib(mode)
    assert gib(resources["limits"]["memory"]) == expected, f"{mode}: the formula gives {expected}Gi"
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


@pytest.mark.parametrize("malloc", memory.MALLOCS)
def test_the_allocator_and_its_settings_are_the_launchers(malloc: str) -> None:
    env = {e["name"]: e.get("value") for e in server_container(render({"server": {"malloc": malloc}}))["env"]}
    assert env.get("LD_PRELOAD") == memory.IMAGE_LIBRARIES.get(malloc)
    settings = {name: env[name] for name in env if name in memory.MALLOC_VARIABLES and name != "LD_PRELOAD"}
    assert settings == memory.MALLOC_ENV[malloc]


def test_the_frontend_keeps_no_request_and_refuses_http_inputs_over_the_request_limit() -> None:
    args = flags(server_container(render())["args"])
    for flag in memory.frontend_flags():
        name, _, value = flag.partition("=")
        assert args[name] == value
    assert int(args["--http-max-input-size"]) == DEFAULT_MAX_REQUEST_BYTES
