"""The plan builder the chart's init containers run, against repositories the project really installs and renders.

TensorRT and GPUs are out of reach here, so trtexec and nvidia-smi are small stand-ins on PATH that
record their arguments and write a plan file, and each network's ONNX file is a few stand-in bytes;
everything else (the installed repository, the rendered serving copy with its profiles and plan
configs, staging, version guard, cache keys, the chart's own commands run against the code the
server image ships) is the real code.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from chart_helpers import case_values, image_code_tree, init_container, render

from catalog import CATALOG
from export import fp16, tensorrt
from export import trt_plans as plans
from model_repository import configs, health, install, layout
from tests.support.records import placeholder_record
from tests.support.snapshots import snapshot

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
    """A production repository as model_repository.install writes it, with stand-in bytes for both ONNX files."""
    for name in names:
        work = root.parent / f"{name}-export"
        work.mkdir(parents=True)
        for precision, file in plans.ONNX_FILES.items():
            (work / file).write_bytes(f"{precision} onnx of {name}".encode())
        onnx = work / plans.ONNX_FILES["fp32"]
        install.install(CATALOG[name], onnx, placeholder_record(CATALOG[name], "stand-in bytes"), root, "production")
    return root


def network(root: Path, name: str) -> Path:
    return root / configs.network_name(CATALOG[name])


def rendered(source: Path, target: Path, precision: str = "fp16") -> Path:
    """The serving copy the chart's render init container writes into TARGET/models (trtPlans on)."""
    layout.render(source, target / plans.MODELS_DIR, None, configs.Layout(), 1, tensorrt_plans=precision)
    return target


def staged(source: Path, target: Path, version: str = "10.5.0") -> Path:
    """The chart's first two steps: render the serving copy, then stage it."""
    plans.stage(rendered(source, target), version)
    return target


def plan_config(name: str, precision: str = "fp16") -> object:
    """The config a pod serves a network's plan with: what the render step writes for its build."""
    files = configs.PlanFiles(plans.DEFAULT_PLAN, precision)  # type: ignore[arg-type]
    return configs.parse_pbtxt(configs.to_pbtxt(configs.tensorrt_network_config(CATALOG[name], files)))


def shape_flags(call: str) -> list[str]:
    return [flag for flag in call.split() if flag.startswith(tuple(plans.SHAPE_FLAGS.values()))]


def expected_flags(name: str) -> list[str]:
    """trtexec's shape flags for the catalog's profiles, written out by hand."""
    size = CATALOG[name].input_size
    return [
        f"--{key}Shapes=CROPS:{batch}x{size}x{size}x3"
        for profile in configs.TRT_PROFILES
        for key, batch in zip(("min", "opt", "max"), profile, strict=True)
    ]


def profiles(name: str) -> plans.TensorrtBuild:
    return plans.check_profiles(configs.trt_profiles(CATALOG[name]), name)


def test_names_the_builder_keeps_its_own_copy_of() -> None:
    """The builder runs in the TensorRT image without this project, so it cannot import these."""
    assert plans.ONNX_FILES["fp16"] == install.FP16_NETWORK == fp16.FP16_FILE
    assert plans.SERVING_MARKER == health.MARKER


@pytest.mark.parametrize("name", ["NextViT_small_224", "ViT_large_patch16_384"])
def test_trtexec_gets_every_profile_the_render_step_wrote(name: str, tmp_path: Path) -> None:
    work = rendered(source_repository(tmp_path / "src", [name]), tmp_path / "work")
    build = plans.read_build(network(work / plans.MODELS_DIR, name))
    assert build == profiles(name) and build.batches == [list(profile) for profile in configs.TRT_PROFILES]
    command = plans.trtexec_command("trtexec", Path("m.onnx"), Path("m.plan"), build, 1024)
    # trtexec's --profile=N takes the three shape flags right behind it (TensorRT 10 sampleOptions.cpp).
    expected = expected_flags(name)
    start = command.index("--profile=0")
    assert command[start : start + 8] == ["--profile=0", *expected[:3], "--profile=1", *expected[3:]]
    assert not [arg for arg in command if arg.startswith(("--inputIOFormats", "--shapes"))]


@pytest.mark.parametrize("precision", plans.PRECISIONS)
def test_the_rendered_plan_config_names_its_plan_and_precision(
    precision: str, tmp_path: Path, trtexec_log: Path
) -> None:
    """The helm test picks its tolerance from the precision parameter (client/smoke.py): an FP16 plan must say so."""
    from catalog.models import served_atol

    source = source_repository(tmp_path / "src", ["ViT_base_patch16_224"])
    work = rendered(source, tmp_path / "work", precision)
    plans.stage(work, "10.5.0")
    model = network(work / plans.MODELS_DIR, "ViT_base_patch16_224")
    before = (model / "config.pbtxt").read_text()
    plans.build(work, tmp_path / "cache", precision, 1024, builder_version="10.5.0", gpu=plans.Gpu("G", "8.9"))
    assert (model / "config.pbtxt").read_text() == before, "the builder writes no config"
    served = configs.parse_pbtxt(before)
    assert (
        served == plan_config("ViT_base_patch16_224", precision)
        and (model / "1" / served.default_model_filename).is_file()
    )
    assert served.parameters[configs.PRECISION_PARAMETER].string_value == precision
    assert served_atol(precision) > 0  # a tolerance exists for every precision a plan can name
    other = "fp32" if precision == "fp16" else "fp16"
    with pytest.raises(plans.PlanError, match=f"name {precision} plans, not {other}"):
        plans.build(work, tmp_path / "cache", other, 1024, builder_version="10.5.0", gpu=plans.Gpu("G", "8.9"))


def test_portable_networks_have_no_tensorrt_profiles(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    install.install(CATALOG["ViT_base_patch16_224"], onnx, {}, tmp_path / "portable", "portable")
    work = tmp_path / "work" / plans.MODELS_DIR
    layout.render(tmp_path / "portable", work, None, configs.Layout(), 1)
    with pytest.raises(plans.PlanError, match="not a production network of a serving copy"):
        plans.read_build(network(work, "ViT_base_patch16_224"))
    with pytest.raises(plans.PlanError, match="not a production network"):
        tensorrt.use_ort_tensorrt(CATALOG["ViT_base_patch16_224"], tmp_path / "portable", "fp16", "/c", 1024)


def test_a_copy_without_profiles_or_rendered_without_plans_stops_stage(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    work = rendered(source, tmp_path / "work")
    (network(work / plans.MODELS_DIR, "NextViT_small_224") / plans.TENSORRT_BUILD).unlink()
    with pytest.raises(plans.PlanError, match=r"tensorrt.json does not exist"):
        plans.stage(work, "10.5.0")
    layout.render(source, tmp_path / "plain" / plans.MODELS_DIR, None, configs.Layout(), 1)
    with pytest.raises(plans.PlanError, match="was not rendered for plans"):
        plans.stage(tmp_path / "plain", "10.5.0")
    assert trtexec_log.read_text() == "", "nothing may be built without the profiles"


def test_malformed_profiles_are_refused(tmp_path: Path) -> None:
    work = rendered(source_repository(tmp_path / "src", ["NextViT_small_224"]), tmp_path / "work")
    model = network(work / plans.MODELS_DIR, "NextViT_small_224")
    record = json.loads((model / plans.TENSORRT_BUILD).read_text())
    del record["profiles"][0]["opt"]
    (model / plans.TENSORRT_BUILD).write_text(json.dumps(record))
    with pytest.raises(plans.PlanError, match="not min/opt/max shapes"):
        plans.read_build(model)
    record = {"profiles": configs.trt_profiles(CATALOG["NextViT_small_224"])}
    record["profiles"][1]["max"]["CROPS"] = [128, 224, 224]  # another rank than min and opt
    (model / plans.TENSORRT_BUILD).write_text(json.dumps(record))
    with pytest.raises(plans.PlanError, match="does not give one batch to the same inputs"):
        plans.read_build(model)


def test_ort_tensorrt_gets_one_profile_spanning_them_all() -> None:
    """ONNX Runtime's provider runs profile 0 only, so it gets one profile over every batch."""
    entry = CATALOG["NextViT_small_224"]
    size = entry.input_size
    widest = max(configs.TRT_PROFILES, key=lambda profile: profile[2] - profile[0])
    lowest = min(low for low, _, _ in configs.TRT_PROFILES)
    highest = max(high for _, _, high in configs.TRT_PROFILES)
    assert configs.ort_profile(entry) == {
        "trt_profile_min_shapes": f"CROPS:{lowest}x{size}x{size}x3",
        "trt_profile_opt_shapes": f"CROPS:{widest[1]}x{size}x{size}x3",
        "trt_profile_max_shapes": f"CROPS:{highest}x{size}x{size}x3",
    }
    assert (lowest, highest) == (1, configs.GPU_MAX_BATCH_SIZE)


def test_stage_records_the_server_version_and_leaves_the_builder(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libnvinfer.so.10.5.0").touch()
    (lib / "libnvinfer.so.10").touch()
    version = plans.tensorrt_version((str(tmp_path / "lib" / "*-linux-gnu" / "libnvinfer.so.*.*.*"),))
    assert version == "10.5.0"
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    staged(source, tmp_path / "work", version)
    assert (tmp_path / "work" / "server-tensorrt-version").read_text() == "10.5.0\n"
    assert (tmp_path / "work" / plans.BUILDER_FILE).read_bytes() == Path(plans.__file__).read_bytes()
    with pytest.raises(plans.PlanError, match="no libnvinfer"):
        plans.tensorrt_version((str(tmp_path / "nowhere" / "libnvinfer.so.*.*.*"),))


def test_stage_checks_the_rendered_copy_and_build_leaves_the_source_alone(tmp_path: Path, trtexec_log: Path) -> None:
    """The chart's order: render into TARGET/models, `stage --target`, `build` on it."""
    names = ["NextViT_small_224", "ViT_large_patch16_384"]
    source = source_repository(tmp_path / "src", names)
    before = snapshot(source)
    work = rendered(source, tmp_path / "work")
    before_stage = snapshot(work / plans.MODELS_DIR)
    assert plans.main(["stage", f"--target={work}", "--server-tensorrt-version=10.5.0"]) == 0
    assert (work / plans.VERSION_FILE).read_text() == "10.5.0\n"
    assert snapshot(work / plans.MODELS_DIR) == before_stage, "stage changes nothing in the copy"
    switched = plans.build(
        work, tmp_path / "cache", "fp16", 1024, builder_version="10.5.0", gpu=plans.Gpu("NVIDIA L4", "8.9")
    )
    assert switched == [configs.network_name(CATALOG[name]) for name in names]
    calls = trtexec_log.read_text().splitlines()
    assert [shape_flags(call) for call in calls] == [expected_flags(name) for name in names]
    for name in names:
        model = network(work / plans.MODELS_DIR, name)
        assert configs.parse_pbtxt((model / "config.pbtxt").read_text()) == plan_config(name)
        assert (model / "1" / plans.DEFAULT_PLAN).is_file()
        assert not [name for name in plans.ONNX_FILES.values() if (model / "1" / name).exists()]
    assert snapshot(source) == before, "a build in the serving copy never writes through its links"


def test_stage_refuses_a_plan_of_another_tensorrt(
    tmp_path: Path, trtexec_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    model = network(source, "NextViT_small_224")
    build = profiles("NextViT_small_224")
    plans.add_plan(model, tmp_path / "cache", "fp16", 1024, "10.5.0", plans.Gpu("G", "9.0"), build)
    work = rendered(source, tmp_path / "work")
    assert plans.main(["stage", f"--target={work}", "--server-tensorrt-version=10.6.0"]) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert "model_sm90.plan (sm9.0) was built by TensorRT 10.5.0, the server has 10.6.0" in error
    assert not (work / plans.VERSION_FILE).exists()
    assert plans.main(["stage", f"--target={work}", "--server-tensorrt-version=10.5.0"]) == 0


def test_stage_needs_a_rendered_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plans.main(["stage", f"--target={tmp_path}", "--server-tensorrt-version=10.5.0"]) == 1
    assert "render the serving copy there first" in capsys.readouterr().err


def test_build_switches_every_network_and_reuses_the_cache(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224", "ViT_large_patch16_384"])
    cache = tmp_path / "cache"
    for attempt in ("cold", "warm"):
        work = staged(source, tmp_path / attempt)
        switched = plans.build(work, cache, "fp16", 2048, builder_version="10.5.0", gpu=plans.Gpu("NVIDIA L4", "8.9"))
        assert switched == ["nextvit_small_224_network", "vit_large_patch16_384_network"]
        for name in switched:
            model = work / "models" / name
            assert (model / "1" / "model.plan").read_bytes().startswith(b"plan for --onnx=")
            assert not [name for name in plans.ONNX_FILES.values() if (model / "1" / name).exists()]
            assert configs.parse_pbtxt((model / "config.pbtxt").read_text()).platform == "tensorrt_plan"
    calls = trtexec_log.read_text().splitlines()
    assert len(calls) == 2, "the warm start must take both plans from the cache"
    assert all("--stronglyTyped" in call and "--memPoolSize=workspace:2048M" in call for call in calls)
    assert all(call.split()[0].endswith(f"/1/{plans.ONNX_FILES['fp16']}") for call in calls)
    assert any(f"--maxShapes=CROPS:{configs.GPU_MAX_BATCH_SIZE}x384x384x3" in call for call in calls), calls
    cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.plan"))
    assert [p.split("/")[:2] for p in cached] == [["NVIDIA-L4-sm8.9", "trt-10.5.0-fp16"]] * 2


def test_a_new_onnx_or_new_profiles_get_a_new_plan(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    model = network(source, "NextViT_small_224")
    cache = tmp_path / "cache"
    for attempt in ("v1", "v2", "v3", "v3-again"):
        if attempt == "v2":
            (model / "1" / plans.ONNX_FILES["fp16"]).unlink()
            (model / "1" / plans.ONNX_FILES["fp16"]).write_bytes(b"re-exported")
        staged(source, tmp_path / attempt)
        if attempt.startswith("v3"):  # other profiles than the catalog's
            record = tmp_path / attempt / plans.MODELS_DIR / model.name / plans.TENSORRT_BUILD
            record.write_text(record.read_text().replace("128,", "96,"))
        plans.build(tmp_path / attempt, cache, "fp16", 1024, builder_version="10.5.0", gpu=plans.Gpu("G", "9.0"))
    calls = trtexec_log.read_text().splitlines()
    assert len(calls) == 3 and "--maxShapes=CROPS:96x224x224x3" in calls[2].split()
    assert len(list(cache.rglob("*.plan"))) == 3


def test_a_different_tensorrt_is_refused(tmp_path: Path, trtexec_log: Path) -> None:
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    staged(source, tmp_path / "work")
    with pytest.raises(plans.PlanError, match=r"10\.6\.0 in the builder image but 10\.5\.0"):
        plans.build(
            tmp_path / "work", tmp_path / "cache", "fp16", 1024, builder_version="10.6.0", gpu=plans.Gpu("G", "9.0")
        )
    assert trtexec_log.read_text() == ""


def test_a_failed_build_leaves_no_partial_plan(
    tmp_path: Path, trtexec_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRTEXEC_FAIL", "1")
    source = source_repository(tmp_path / "src", ["NextViT_small_224"])
    staged(source, tmp_path / "work")
    with pytest.raises(subprocess.CalledProcessError):
        plans.build(
            tmp_path / "work", tmp_path / "cache", "fp16", 1024, builder_version="10.5.0", gpu=plans.Gpu("G", "9.0")
        )
    assert len(trtexec_log.read_text().splitlines()) == 1, "trtexec must have been called"
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    model = tmp_path / "work" / "models" / "nextvit_small_224_network"
    assert not list((model / "1").glob("*.plan")) and (model / "1" / plans.ONNX_FILES["fp16"]).is_file()


def test_command_line_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the init container prints and returns when it must stop the pod."""
    missing = tmp_path / "missing"
    assert plans.main(["stage", f"--target={missing}", "--server-tensorrt-version=10.5.0"]) == 1
    models = missing / plans.MODELS_DIR
    assert capsys.readouterr().err == (
        f"error: {models} does not exist: render the serving copy there first "
        f"(python -m model_repository render --out {models} --tensorrt-plans PRECISION)\n"
    )


def test_gpu_identity_from_nvidia_smi(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA A10G, 8.6'\necho 'NVIDIA A10G, 8.6'\n", encoding="utf-8")
    fake.chmod(0o755)
    assert plans.query_gpu(str(fake)).key == "NVIDIA-A10G-sm8.6"


def test_builder_parses_as_python_3_10() -> None:
    """It runs in NVIDIA's 26.09 images (Python 3.12); parsed as 3.10 so an older release still runs it."""
    ast.parse(Path(plans.__file__).read_text(encoding="utf-8"), feature_version=(3, 10))


# The TensorRT image has TensorRT and Python, nothing of this project: the staged copy runs with no
# site-packages at all (-S -I). Only the two lookups that need NVIDIA's files are replaced: the
# libnvinfer version and nvidia-smi's answer.
RUN_IN_TENSORRT_IMAGE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("trt_plans", sys.argv[1])
builder = sys.modules["trt_plans"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)
builder.tensorrt_version = lambda *patterns: "10.5.0"
builder.query_gpu = lambda *command: builder.Gpu("NVIDIA L4", "8.9")
sys.exit(builder.main(sys.argv[2:]))
"""


def test_the_chart_commands_run_the_builder_the_server_image_ships(tmp_path: Path, trtexec_log: Path) -> None:
    """stage-repository with the image's code on PYTHONPATH, then build-trt-plans from the copy it left."""
    values = case_values("05-trt-plans-values.yaml")
    values["trtPlans"] = values["trtPlans"] | {"serverTensorrtVersion": "10.5.0"}
    objects = render(values)
    stage, build = init_container(objects, "stage-repository"), init_container(objects, "build-trt-plans")
    names = ["NextViT_small_224", "ViT_base_patch16_384"]
    volume = rendered(source_repository(tmp_path / "src", names), tmp_path / "volume")
    code, cwd = image_code_tree(tmp_path / "opt-paddleclas"), tmp_path / "cwd"
    cwd.mkdir()

    def local(words: list[str]) -> list[str]:
        cache = str(tmp_path / "cache")
        mapped = [word.replace("/repository", str(volume)).replace("/trt-cache", cache) for word in words]
        return [sys.executable if word == "python3" else word for word in mapped]

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {e["name"]: e["value"].replace("/opt/paddleclas", str(code)) for e in stage["env"]}
    result = subprocess.run(local(stage["command"] + stage["args"]), cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (volume / plans.VERSION_FILE).read_text() == "10.5.0\n"
    python, script, *arguments = local(build["command"] + build["args"])
    assert script == str(volume / plans.BUILDER_FILE)
    command = [python, "-S", "-I", "-c", RUN_IN_TENSORRT_IMAGE, script, *arguments]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(", ".join(configs.network_name(CATALOG[name]) for name in names))
    assert len(trtexec_log.read_text().splitlines()) == len(names)
    for name in names:
        model = network(volume / plans.MODELS_DIR, name)
        assert configs.parse_pbtxt((model / "config.pbtxt").read_text()) == plan_config(name, "fp16")
        assert (model / "1" / plans.DEFAULT_PLAN).is_file()
