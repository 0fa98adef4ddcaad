"""`python -m export --trt` / `--ort-trt`: the arguments, profiles, records and configs this project produces.

TensorRT cannot run here. `trtexec` below is a STAND-IN: a script that records its arguments and writes
placeholder bytes where the plan would go; `nvidia-smi` and libnvinfer are stand-ins too. These tests
check what the project asks of TensorRT and what it writes around the plan; they prove nothing about
a plan's numerics, which only a GPU run can (the chart's test pod does that in a cluster).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

import catalog
from catalog.resolve import photo_crops
from export import fp16, trt_plans
from export.__main__ import main
from model_repository import configs, install, layout
from tests.support.snapshots import snapshot

VALUES = Path(__file__).resolve().parents[2] / "helm" / "paddleclas-triton" / "values.yaml"

ENTRY = catalog.get("NextViT_small_224")
STAND_IN_TRTEXEC = """#!{python}
# STAND-IN for trtexec (no TensorRT here): records its arguments, writes placeholder bytes.
import os, sys
with open(os.environ["TRTEXEC_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
engine = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--saveEngine="))
with open(engine, "wb") as out:
    out.write(b"STAND-IN PLAN, not a TensorRT engine")
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def toolbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins on PATH (trtexec, nvidia-smi) and a stand-in libnvinfer 10.5.0; returns trtexec's log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "trtexec", STAND_IN_TRTEXEC.format(python=sys.executable))
    set_gpu(bin_dir, "NVIDIA L4", "8.9")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libnvinfer.so.10.5.0").touch()
    monkeypatch.setattr(trt_plans, "LIBNVINFER_GLOBS", (str(lib / "libnvinfer.so.*.*.*"),))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "trtexec.log"
    log.touch()
    monkeypatch.setenv("TRTEXEC_LOG", str(log))
    return log


def set_gpu(bin_dir: Path, name: str, capability: str) -> None:
    _executable(bin_dir / "nvidia-smi", f"#!/bin/sh\necho '{name}, {capability}'\n")


@pytest.fixture(scope="module")
def fp16_network(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The session's real NextViT_small_224 network with the FP16 network the production export writes beside it."""
    network = exported_repository / configs.network_name(ENTRY)
    work = tmp_path_factory.mktemp("fp16-network")
    onnx = work / "model.onnx"
    os.link(network / "1" / "model.onnx", onnx)
    return onnx, fp16.write(onnx, work / fp16.FP16_FILE, photo_crops(ENTRY))


@pytest.fixture
def production(exported_repository: Path, fp16_network: tuple[Path, dict], tmp_path: Path) -> Path:
    """A production-variant repository holding the session's real NextViT_small_224 network and its FP16 network."""
    record = json.loads((exported_repository / configs.network_name(ENTRY) / install.EXPORT_RECORD).read_text())
    repository = tmp_path / "production"
    install.install(ENTRY, fp16_network[0], record | {"fp16": fp16_network[1]}, repository, "production")
    return repository


def trt(repository: Path, cache: Path, *extra: str) -> int:
    return main([ENTRY.name, "--variant", "production", "--trt", "--repository", str(repository), *extra,
                 "--trt-cache", str(cache)])  # fmt: skip


def network_config(repository: Path) -> object:
    """The network's config as a server started on `repository` serves it (rendered, never installed)."""
    serving = repository.parent / "serving"
    layout.render(repository, serving, None, configs.Layout(), 1)
    return configs.parse_pbtxt((serving / configs.network_name(ENTRY) / "config.pbtxt").read_text())


def plan_config(default: str, precision: str, by_capability: dict[str, str]) -> object:
    files = configs.PlanFiles(default, precision, tuple(sorted(by_capability.items())))  # type: ignore[arg-type]
    return configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(ENTRY, files)))


def expected_shape_flags() -> list[str]:
    size = ENTRY.input_size
    return [
        f"--{key}Shapes={configs.NETWORK_INPUT}:{batch}x{size}x{size}x3"
        for profile in configs.TRT_PROFILES
        for key, batch in zip(("min", "opt", "max"), profile, strict=True)
    ]


def test_without_trtexec_the_error_says_how_to_build_in_the_cluster(
    production: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(trt_plans, "TRTEXEC_FALLBACKS", ())
    before = snapshot(production)
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.5.0") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1
    assert "trtexec not found" in errors[0] and "trtPlans.enabled=true" in errors[0]
    image = yaml.safe_load(VALUES.read_text())["trtPlans"]["image"]  # the image the chart builds plans in
    assert f"{image['repository']}:{image['tag']}" in errors[0] and errors[0].endswith("was left as it was.")
    assert snapshot(production) == before


def test_plan_build_arguments_profile_record_and_config(production: Path, tmp_path: Path, toolbox: Path) -> None:
    cache = tmp_path / "cache"
    assert trt(production, cache, "--server-tensorrt-version", "10.5.0") == 0
    (call,) = toolbox.read_text().splitlines()
    arguments = call.split()
    shapes = expected_shape_flags()  # the catalog's profiles, one triple per profile
    assert [a for a in arguments if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))] == shapes
    assert len(shapes) == 3 * len(configs.TRT_PROFILES) == 6
    start = arguments.index("--profile=0")  # trtexec: each --profile=N directly followed by its three flags
    assert arguments[start : start + 8] == ["--profile=0", *shapes[:3], "--profile=1", *shapes[3:]]
    for flag in (
        f"--minShapes={configs.NETWORK_INPUT}:1x{ENTRY.input_size}x{ENTRY.input_size}x3",
        f"--maxShapes={configs.NETWORK_INPUT}:{configs.GPU_MAX_BATCH_SIZE}x{ENTRY.input_size}x{ENTRY.input_size}x3",
        "--stronglyTyped",  # its types are the plan's precision: no precision flag (TensorRT 11 has none)
        "--memPoolSize=workspace:4096M",
        f"--timingCacheFile={cache}/NVIDIA-L4-sm8.9/trt-10.5.0-fp16/timing.cache",
    ):
        assert flag in arguments, (flag, call)
    assert not [a for a in arguments if a.startswith("--inputIOFormats")], "the uint8 input keeps its ONNX type"
    assert not set(arguments) & {"--fp16", "--fp32", "--int8", "--best"}
    (onnx,) = [a for a in arguments if a.startswith("--onnx=")]
    assert onnx.endswith(f"/{configs.network_name(ENTRY)}/1/{fp16.FP16_FILE}"), "the FP16 network is the precision"
    model = production / configs.network_name(ENTRY)
    version_dir = model / "1"
    assert (version_dir / "model_sm89.plan").read_bytes().startswith(b"STAND-IN PLAN")
    assert (version_dir / "model.onnx").is_file() and (version_dir / fp16.FP16_FILE).is_file()  # other GPUs' plans
    record = json.loads((version_dir / trt_plans.PLANS_RECORD).read_text())
    (plan,) = record["plans"].items()
    assert plan[0] == record["default"] == "8.9"
    assert plan[1] | {"built_at": None} == {
        "file": "model_sm89.plan",
        "tensorrt": "10.5.0",
        "gpu": "NVIDIA L4",
        "precision": "fp16",
        "onnx": fp16.FP16_FILE,
        "onnx_sha256_16": trt_plans.file_digest(version_dir / fp16.FP16_FILE),
        "profiles": [list(profile) for profile in configs.TRT_PROFILES],
        "shapes": configs.trt_profiles(ENTRY),
        "built_at": None,
    }
    assert not (model / "config.pbtxt").exists(), "the build records its plan; the config is rendered at start"
    config = network_config(production)  # parsed by Triton's own ModelConfig message
    assert config == plan_config("model_sm89.plan", "fp16", {"8.9": "model_sm89.plan"})
    assert config.parameters[configs.PRECISION_PARAMETER].string_value == "fp16"  # the helm test's tolerance
    assert (config.platform, config.backend, config.max_batch_size) == ("tensorrt_plan", "tensorrt", 128)
    assert [list(group.profile) for group in config.instance_group] == [["0", "1"]]
    assert list(config.dynamic_batching.preferred_batch_size) == [opt for _, opt, _ in configs.TRT_PROFILES] == [8, 64]
    assert config.optimization.cuda.graphs
    graph_batches = [spec.batch_size for spec in config.optimization.cuda.graph_spec]
    low, _, high = configs.TRT_PROFILES[0]
    assert graph_batches == list(configs.CUDA_GRAPH_BATCH_SIZES) and all(low <= b <= high for b in graph_batches)
    assert [warmup.batch_size for warmup in config.model_warmup] == [1, 8, 64, 128]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_a_second_gpu_adds_its_plan_beside_the_first(production: Path, tmp_path: Path, toolbox: Path) -> None:
    cache = tmp_path / "cache"
    assert trt(production, cache, "--server-tensorrt-version", "10.5.0", "--precision", "fp32") == 0
    set_gpu(tmp_path / "bin", "NVIDIA A100-SXM4-80GB", "8.0")
    assert trt(production, cache, "--server-tensorrt-version", "10.5.0", "--precision", "fp32") == 0
    calls = toolbox.read_text().splitlines()
    assert len(calls) == 2 and all("/1/model.onnx " in call and "--stronglyTyped" in call for call in calls)
    config = network_config(production)
    assert dict(config.cc_model_filenames) == {"8.0": "model_sm80.plan", "8.9": "model_sm89.plan"}
    # the plan built last is the default
    assert config == plan_config("model_sm80.plan", "fp32", {"8.0": "model_sm80.plan", "8.9": "model_sm89.plan"})
    record = json.loads((production / configs.network_name(ENTRY) / "1" / trt_plans.PLANS_RECORD).read_text())
    assert {cc: p["gpu"] for cc, p in record["plans"].items()} == {"8.0": "NVIDIA A100-SXM4-80GB", "8.9": "NVIDIA L4"}
    assert trt(production, cache, "--server-tensorrt-version", "10.5.0", "--precision", "fp32") == 0
    assert len(toolbox.read_text().splitlines()) == 2, "the same GPU, TensorRT and ONNX must reuse the cached plan"


def test_plans_replace_an_earlier_provider_choice_and_refuse_a_later_one(
    production: Path, tmp_path: Path, toolbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ort = [ENTRY.name, "--variant", "production", "--ort-trt", "--repository", str(production)]
    assert main(ort) == 0 and network_config(production).optimization.execution_accelerators.gpu_execution_accelerator
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.5.0") == 0
    assert network_config(production).platform == "tensorrt_plan"
    assert not (production / configs.network_name(ENTRY) / install.ORT_TENSORRT_RECORD).exists()
    before = snapshot(production)
    assert main(ort) == 1 and "served from TensorRT plans" in capsys.readouterr().err
    assert snapshot(production) == before


def test_a_builder_tensorrt_other_than_the_servers_is_refused(
    production: Path, tmp_path: Path, toolbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(production)
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.6.0") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "trtexec here is TensorRT 10.5.0, the server has 10.6.0" in errors[0]
    assert toolbox.read_text() == "" and snapshot(production) == before


def test_recorded_plans_of_another_tensorrt_are_refused(production: Path, tmp_path: Path, toolbox: Path) -> None:
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.5.0") == 0
    version_dir = production / configs.network_name(ENTRY) / "1"
    trt_plans.check_plans(version_dir, "10.5.0")
    with pytest.raises(trt_plans.PlanError, match=r"built by TensorRT 10\.5\.0, the server has 10\.6\.0"):
        trt_plans.check_plans(version_dir, "10.6.0")
    rendered = tmp_path / "rendered"  # the chart's order: a serving copy rendered first, then its stage step
    layout.render(production, rendered / trt_plans.MODELS_DIR, None, configs.Layout(), 1, tensorrt_plans="fp16")
    with pytest.raises(trt_plans.PlanError, match=r"built by TensorRT 10\.5\.0, the server has 10\.6\.0"):
        trt_plans.stage(rendered, "10.6.0")
    trt_plans.stage(rendered, "10.5.0")
    assert (rendered / trt_plans.VERSION_FILE).read_text() == "10.5.0\n"
    (version_dir / "stray.plan").write_bytes(b"who built this?")
    with pytest.raises(trt_plans.PlanError, match=r"no plans\.json entry"):
        trt_plans.check_plans(version_dir, "10.5.0")


def test_the_server_version_must_be_known(
    production: Path, tmp_path: Path, toolbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trt(production, tmp_path / "cache") == 1
    assert "give --server-tensorrt-version" in capsys.readouterr().err


def test_ort_tensorrt_provider_config(production: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [ENTRY.name, "--variant", "production", "--ort-trt", "--repository", str(production)]
    assert main([*args, "--engine-cache", "/cache/ort"]) == 0
    config = network_config(production)
    # FP16 is the FP16 network, not a provider flag: trt_fp16_enable is TensorRT's FP16 builder flag.
    assert config.backend == "onnxruntime" and config.default_model_filename == fp16.FP16_FILE
    assert config.parameters[configs.PRECISION_PARAMETER].string_value == "fp16"  # the smoke check's tolerance
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    # One profile over every batch of the TensorRT profiles: ONNX Runtime's provider runs profile 0 only.
    size = f"{ENTRY.input_size}x{ENTRY.input_size}x3"
    widest = max(configs.TRT_PROFILES, key=lambda profile: profile[2] - profile[0])
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "max_workspace_size_bytes": str(4096 << 20),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/cache/ort",
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": "/cache/ort",
        "trt_profile_min_shapes": f"{configs.NETWORK_INPUT}:1x{size}",
        "trt_profile_opt_shapes": f"{configs.NETWORK_INPUT}:{widest[1]}x{size}",
        "trt_profile_max_shapes": f"{configs.NETWORK_INPUT}:{configs.GPU_MAX_BATCH_SIZE}x{size}",
    }
    # Queue and timeout priced at the provider's FP16 rate: longer than the CUDA provider's FP32 queue,
    # and its last request still starts within the timeout.
    policy, cuda = config.dynamic_batching.default_queue_policy, configs.network_config(ENTRY, "production")
    ms = configs.gpu_ms_per_image(ENTRY, ("onnxruntime_tensorrt", "fp16"))
    assert policy.max_queue_size > cuda["dynamic_batching"]["default_queue_policy"]["max_queue_size"]
    images = configs.GPU_MAX_BATCH_SIZE + policy.max_queue_size * configs.MAX_BATCH_SIZE
    assert images * ms * 1000 < policy.default_timeout_microseconds
    assert main([*args, "--engine-cache", "/cache/ort", "--precision", "fp32"]) == 0  # rewriting replaces
    again = network_config(production)
    assert again.default_model_filename == "model.onnx"
    assert again.parameters[configs.PRECISION_PARAMETER].string_value == "fp32"
    (rewritten,) = again.optimization.execution_accelerators.gpu_execution_accelerator
    assert dict(rewritten.parameters) == dict(accelerator.parameters)


def test_fp16_without_the_fp16_network_says_to_re_export(
    production: Path, tmp_path: Path, toolbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export made before the FP16 network existed: FP16 is refused by both paths, FP32 still builds."""
    (production / configs.network_name(ENTRY) / "1" / fp16.FP16_FILE).unlink()
    before = snapshot(production)
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.5.0") == 1
    assert main([ENTRY.name, "--variant", "production", "--ort-trt", "--repository", str(production)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 2 and all(f"{fp16.FP16_FILE} does not exist" in e and "re-export" in e for e in errors)
    assert toolbox.read_text() == "" and snapshot(production) == before
    assert trt(production, tmp_path / "cache", "--server-tensorrt-version", "10.5.0", "--precision", "fp32") == 0


def test_trt_needs_the_production_variant(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([ENTRY.name, "--trt"])
    assert "add --variant production" in capsys.readouterr().err
