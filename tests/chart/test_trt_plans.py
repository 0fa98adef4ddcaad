"""The plan-building init script, run against configs the project really generates.

TensorRT and GPUs are out of reach here, so trtexec and nvidia-smi are small stand-ins on PATH that
record their arguments and write a plan file; everything else (staging, version guard, cache
keys, config rewrite, parsed back through Triton's own ModelConfig message) is the real code.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from chart_helpers import CHART_DIR

from catalog import CATALOG
from model_repository import configs

SCRIPT = CHART_DIR / "files" / "build_trt_plans.py"
FAKE_TRTEXEC = """#!{python}
import os, sys
with open(os.environ["TRTEXEC_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if os.environ.get("TRTEXEC_FAIL"):
    sys.exit(3)
engine = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--saveEngine="))
with open(engine, "wb") as out:
    out.write(b"plan for " + sys.argv[1].encode())
"""


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_trt_plans", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


plans = load_script()


def network_config(name: str) -> str:
    return configs.to_pbtxt(configs.network_config(CATALOG[name], "production"))


@pytest.fixture
def trtexec_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake trtexec first on PATH; returns the file its calls are logged to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC.format(python=sys.executable), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "trtexec.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TRTEXEC_LOG", str(log))
    return log


def source_repository(root: Path, names: list[str]) -> Path:
    """A production-shaped repository: real network configs, stand-in ONNX bytes."""
    for name in names:
        model = root / f"{name.lower()}_network"
        (model / "1").mkdir(parents=True)
        (model / "config.pbtxt").write_text(network_config(name), encoding="utf-8")
        (model / "1" / "model.onnx").write_bytes(f"onnx of {name}".encode())
        ensemble = root / name.lower() / "1"
        ensemble.mkdir(parents=True)
    return root


@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_large_patch16_384"])
def test_shapes_cover_the_configured_batch_range(name: str) -> None:
    text = network_config(name)
    parsed = configs.parse_pbtxt(text)
    (tensor,) = parsed.input
    dims = "x".join(str(d) for d in tensor.dims)
    assert plans.trtexec_shapes(text) == [
        f"--minShapes={tensor.name}:1x{dims}",
        f"--optShapes={tensor.name}:{parsed.max_batch_size}x{dims}",
        f"--maxShapes={tensor.name}:{parsed.max_batch_size}x{dims}",
    ]


def test_preferred_batch_size_sets_the_optimum() -> None:
    text = network_config("NextViT_small_224").replace(
        "dynamic_batching {", "dynamic_batching {\n  preferred_batch_size: 2\n  preferred_batch_size: 4"
    )
    assert plans.trtexec_shapes(text)[1].endswith(":4x3x224x224")


def test_rewritten_config_is_a_tensorrt_config_triton_accepts() -> None:
    rewritten = plans.to_tensorrt(network_config("ViT_base_patch16_224"))
    parsed = configs.parse_pbtxt(rewritten)  # Triton's ModelConfig message: unknown fields raise
    original = configs.parse_pbtxt(network_config("ViT_base_patch16_224"))
    assert (parsed.backend, parsed.default_model_filename) == ("tensorrt", "model.plan")
    assert parsed.input == original.input and parsed.output == original.output
    assert parsed.max_batch_size == original.max_batch_size


def test_portable_networks_are_refused() -> None:
    portable = configs.to_pbtxt(configs.network_config(CATALOG["ViT_base_patch16_224"], "portable"))
    with pytest.raises(plans.PlanError, match="onnxruntime"):
        plans.to_tensorrt(portable)


def test_stage_copies_and_records_the_server_version(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libnvinfer.so.10.5.0").touch()
    (lib / "libnvinfer.so.10").touch()
    version = plans.tensorrt_version((str(tmp_path / "lib" / "*-linux-gnu" / "libnvinfer.so.*.*.*"),))
    assert version == "10.5.0"
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    plans.stage(source, tmp_path / "work", version)
    assert (tmp_path / "work" / "server-tensorrt-version").read_text() == "10.5.0\n"
    assert (tmp_path / "work" / "models" / "nextvit_small_224_network" / "1" / "model.onnx").is_file()
    with pytest.raises(plans.PlanError, match="no libnvinfer"):
        plans.tensorrt_version((str(tmp_path / "nowhere" / "libnvinfer.so.*.*.*"),))


def test_build_switches_every_network_and_reuses_the_cache(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224", "ViT_large_patch16_384"])
    cache = tmp_path / "cache"
    for attempt in ("cold", "warm"):
        work = tmp_path / attempt
        plans.stage(source, work, "10.5.0")
        switched = plans.build(work, cache, "fp16", 2048, builder_version="10.5.0", gpu="NVIDIA-L4-sm8.9")
        assert switched == ["nextvit_small_224_network", "vit_large_patch16_384_network"]
        for name in switched:
            model = work / "models" / name
            assert (model / "1" / "model.plan").read_bytes().startswith(b"plan for --onnx=")
            assert not (model / "1" / "model.onnx").exists()
            assert configs.parse_pbtxt((model / "config.pbtxt").read_text()).backend == "tensorrt"
    calls = trtexec_log.read_text().splitlines()
    assert len(calls) == 2, "the warm start must take both plans from the cache"
    assert all("--fp16" in call and "--memPoolSize=workspace:2048M" in call for call in calls)
    assert any("--maxShapes=NORMALIZED_IMAGE:8x3x384x384" in call for call in calls), calls
    cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.plan"))
    assert [p.split("/")[:2] for p in cached] == [["NVIDIA-L4-sm8.9", "trt-10.5.0-fp16"]] * 2


def test_a_new_onnx_gets_a_new_plan(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    cache = tmp_path / "cache"
    for attempt in ("v1", "v2"):
        if attempt == "v2":
            (source / "nextvit_small_224_network" / "1" / "model.onnx").write_bytes(b"re-exported")
        plans.stage(source, tmp_path / attempt, "10.5.0")
        plans.build(tmp_path / attempt, cache, "fp16", 1024, builder_version="10.5.0", gpu="G-sm9.0")
    assert len(trtexec_log.read_text().splitlines()) == 2
    assert len(list(cache.rglob("*.plan"))) == 2


def test_a_different_tensorrt_is_refused(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    plans.stage(source, tmp_path / "work", "10.5.0")
    with pytest.raises(plans.PlanError, match=r"10\.6\.0 in the builder image but 10\.5\.0"):
        plans.build(tmp_path / "work", tmp_path / "cache", "fp16", 1024, builder_version="10.6.0", gpu="G-sm9.0")
    assert trtexec_log.read_text() == ""


def test_a_failed_build_leaves_no_partial_plan(
    tmp_path: Path, trtexec_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRTEXEC_FAIL", "1")
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    plans.stage(source, tmp_path / "work", "10.5.0")
    with pytest.raises(subprocess.CalledProcessError):
        plans.build(tmp_path / "work", tmp_path / "cache", "fp16", 1024, builder_version="10.5.0", gpu="G-sm9.0")
    assert len(trtexec_log.read_text().splitlines()) == 1, "trtexec must have been called"
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    network = tmp_path / "work" / "models" / "nextvit_small_224_network"
    assert configs.parse_pbtxt((network / "config.pbtxt").read_text()).backend == "onnxruntime"


def test_command_line_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the init container prints and returns when it must stop the pod."""
    missing = tmp_path / "missing"
    assert plans.main(["stage", f"--source={missing}", f"--target={tmp_path}", "--server-tensorrt-version=10.5.0"]) == 1
    assert capsys.readouterr().err == f"error: model repository {missing} does not exist\n"


def test_gpu_identity_from_nvidia_smi(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA A10G, 8.6'\necho 'NVIDIA A10G, 8.6'\n", encoding="utf-8")
    fake.chmod(0o755)
    assert plans.gpu_identity(str(fake)) == "NVIDIA-A10G-sm8.6"


@pytest.mark.parametrize("script", ["build_trt_plans.py", "check_inference.py"])
def test_pod_scripts_parse_as_python_3_10(script: str) -> None:
    """They run in NVIDIA's 24.10 images, whose Python is 3.10."""
    source = (CHART_DIR / "files" / script).read_text(encoding="utf-8")
    ast.parse(source, feature_version=(3, 10))
