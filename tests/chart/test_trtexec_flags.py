"""Every trtexec flag the project generates is documented by trtexec of TensorRT 10.12+ and of 11.x alike.

TensorRT 11 removed weak typing: trtexec no longer parses --fp16, --int8, --best and the other
precision flags, and a plan's precision is the types of its ONNX graph, built strongly typed. No
trtexec runs here, so the documented option lists are stored below, read from trtexec's own help
text: `AllOptions::help` (Model, Build, System, Inference, Reporting options) in NVIDIA/TensorRT
samples/common/sampleOptions.cpp at tags v10.12.0 and v11.1 (v10.16 and v11.0 list the same
flags used here). The safety builder's separate help (`SafeBuilderOptions::printHelp`, which still
names --int8) is not trtexec's build path and is left out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog import CATALOG
from export import trt_plans as plans
from model_repository import configs

# The flags this project may generate, and the precision flags, as each version documents them.
USED = (
    "--onnx",
    "--saveEngine",
    "--profile",
    "--minShapes",
    "--optShapes",
    "--maxShapes",
    "--memPoolSize",
    "--skipInference",
    "--timingCacheFile",
    "--stronglyTyped",  # 10.12: "Create a strongly typed network"; 11.1: "[Deprecated] ... now enabled by default"
)
PRECISION_FLAGS = (
    "--fp16",
    "--bf16",
    "--fp8",
    "--int4",
    "--int8",
    "--best",
    "--precisionConstraints",
    "--layerPrecisions",
    "--layerOutputTypes",
)
TRTEXEC_10_12 = frozenset(USED + PRECISION_FLAGS)  # sampleOptions.cpp, v10.12.0: all of these are documented
TRTEXEC_11_1 = frozenset(USED)  # sampleOptions.cpp, v11.1: none of PRECISION_FLAGS is documented any more
NAMES = ["NextViT_small_224", "NextViT_large_384", "ViT_large_patch16_384"]


def flag_names(command: list[str]) -> list[str]:
    """`--name=value` and `--name` arguments as their names; argv[0] (the trtexec path) is not a flag."""
    return [argument.split("=", 1)[0] for argument in command[1:]]


def test_the_stored_lists_say_what_tensorrt_11_removed() -> None:
    assert set(PRECISION_FLAGS) <= TRTEXEC_10_12 and not set(PRECISION_FLAGS) & TRTEXEC_11_1
    assert set(USED) <= TRTEXEC_10_12 & TRTEXEC_11_1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("timing_cache", [None, Path("/cache/timing.cache")])
def test_every_generated_flag_is_documented_by_both_and_none_is_a_precision_flag(
    name: str, timing_cache: Path | None
) -> None:
    build = plans.check_profiles(configs.trt_profiles(CATALOG[name]), name)  # what render writes into tensorrt.json
    command = plans.trtexec_command("trtexec", Path("m.onnx"), Path("m.plan"), build, 4096, timing_cache)
    names = flag_names(command)
    assert all(argument.startswith("--") for argument in command[1:]), command
    assert set(names) <= TRTEXEC_10_12 & TRTEXEC_11_1, sorted(set(names) - (TRTEXEC_10_12 & TRTEXEC_11_1))
    assert not set(names) & set(PRECISION_FLAGS)
    assert plans.STRONGLY_TYPED in names, "TensorRT 10 builds weakly typed without it"


def test_the_precision_chooses_the_onnx_file_not_a_flag(tmp_path: Path) -> None:
    version_dir = tmp_path / "1"
    version_dir.mkdir()
    (version_dir / plans.ONNX_FILES["fp32"]).write_bytes(b"fp32 network")
    with pytest.raises(plans.PlanError, match=r"model\.fp16\.onnx does not exist.*re-export"):
        plans.onnx_file(version_dir, "fp16")
    (version_dir / plans.ONNX_FILES["fp16"]).write_bytes(b"fp16 network")
    assert {p: plans.onnx_file(version_dir, p).name for p in plans.PRECISIONS} == plans.ONNX_FILES
    with pytest.raises(plans.PlanError, match="expected one of"):
        plans.onnx_file(version_dir, "int8")
