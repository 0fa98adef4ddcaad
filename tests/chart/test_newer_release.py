"""Every generated config also parses with the production release's ModelConfig protobuf.

Local runs and CI serve with tritonserver 2.51.0 (the newest binary installable here), while the
production image is NGC 26.09 (Triton 2.73.0). The configs are rendered through the 2.51 protobuf of
the venv; a field the newer server renamed, dropped or retyped would only show in the cluster. So
the text configs.py generates is parsed again, strictly, by model_config_pb2 of tritonclient 2.73.0,
generated for protobuf 6 and installed apart from the venv by ``make setup`` (.venv/newer-release,
requirements/newer-release.txt). It runs in a subprocess whose PYTHONPATH starts with that directory,
and gets nothing from the project but the generated text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chart_helpers import CHART_DIR, REPO

from catalog import CATALOG
from model_repository import configs

NEWER = REPO / ".venv" / "newer-release"
NEWER_REQUIREMENTS = REPO / "requirements" / "newer-release.txt"
PROTO = NEWER / "tritonclient" / "grpc" / "model_config_pb2.py"
MEMORY = json.loads((CHART_DIR / "files" / "network-memory.json").read_text(encoding="utf-8"))["models"]

# Loads model_config_pb2.py by path (tritonclient.grpc's __init__ would pull grpc in), then parses each
# config with text_format.Parse: unknown fields and bad enum values raise. Prints what it ran on.
PARSER = r"""
import importlib.util, json, sys
import google.protobuf
from google.protobuf import text_format
spec = importlib.util.spec_from_file_location("newer_model_config_pb2", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
failures, inflight = {}, {}
configs = json.load(sys.stdin)
for name, text in configs.items():
    try:
        message = text_format.Parse(text, module.ModelConfig())
    except Exception as error:
        failures[name] = str(error)
        continue
    if message.ensemble_scheduling.max_inflight_requests:
        inflight[name] = message.ensemble_scheduling.max_inflight_requests
print(json.dumps({"protobuf": google.protobuf.__version__, "file": module.__file__,
                  "parsed": len(configs), "failures": failures, "inflight": inflight}))
"""


ENSEMBLES = {
    lambda entry: entry.triton_name: configs.ensemble_config,
    configs.interactive_ensemble_name: configs.interactive_ensemble_config,
    configs.pixels_ensemble_name: configs.pixels_ensemble_config,
    configs.crop_ensemble_name: configs.crop_ensemble_config,
}
# A reference answer as the export records it (export/parity.py), so the parameters it adds are parsed too.
REFERENCE = {"photo_sha256": "0" * 64, "class_ids": list(range(10)), "scores": [0.1] * 10}


def pinned(name: str) -> str:
    for line in NEWER_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in {NEWER_REQUIREMENTS}")


def generated_configs() -> dict[str, str]:
    """Every config text configs.py writes: each catalog model's ensembles, steps and network, both
    variants, and the TensorRT networks (plans, and ONNX Runtime's provider)."""
    texts: dict[str, str] = {}
    for entry in CATALOG.values():
        note = "random"
        for variant in ("portable", "production"):
            # Installed production networks carry ONNX Runtime's gpu_mem_limit (from the export record;
            # the chart's copy of the records gives the same figure here).
            limit = MEMORY[entry.triton_name]["gpuMemLimitMiB"] << 20 if variant == "production" else None
            for name, ensemble in ENSEMBLES.items():
                texts[f"{variant}/{name(entry)}"] = configs.to_pbtxt(ensemble(entry, note, REFERENCE, variant))
            steps = {
                configs.network_name(entry): configs.network_config(entry, variant, gpu_mem_limit=limit),
                configs.preprocess_name(entry): configs.preprocess_config(entry),
                configs.interactive_preprocess_name(entry): configs.interactive_preprocess_config(entry),
                configs.pixels_preprocess_name(entry): configs.pixels_preprocess_config(entry),
                configs.postprocess_name(): configs.postprocess_config(),
            }
            for name, config in steps.items():
                texts[f"{variant}/{name}"] = configs.to_pbtxt(config)
        texts[f"tensorrt/{configs.network_name(entry)}"] = configs.to_pbtxt(
            configs.tensorrt_network_config(entry, configs.PlanFiles("model.plan", "fp16", (("8.9", "sm89.plan"),)))
        )
        ort = configs.OrtTensorrt("fp16", "/cache")
        texts[f"ort-tensorrt/{configs.network_name(entry)}"] = configs.to_pbtxt(
            configs.ort_tensorrt_network_config(entry, "model.fp16.onnx", ort, gpu_mem_limit=limit)
        )
    return texts


def parse_with_newer_release(texts: dict[str, str]) -> dict:
    if not PROTO.is_file():
        pytest.fail(f"{PROTO} is missing: run make setup (it installs requirements/newer-release.txt there)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(NEWER)
    env["PYTHONNOUSERSITE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", PARSER, str(PROTO)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_every_generated_config_parses_with_the_newer_release_protobuf() -> None:
    texts = generated_configs()
    # 19 models x (ensembles + 2 variants x (network + its shared steps) + TensorRT): all present.
    assert len([n for n in texts if n.startswith("tensorrt/")]) == len(CATALOG)
    report = parse_with_newer_release(texts)
    # It really ran the newer release's files, not the venv's 2.51 / protobuf 4 ones.
    assert report["protobuf"] == pinned("protobuf"), report
    assert Path(report["file"]).resolve() == PROTO.resolve()
    assert f"tritonclient-{pinned('tritonclient')}.dist-info" in os.listdir(NEWER)
    assert report["parsed"] == len(texts)
    assert report["failures"] == {}
    assert all(
        "gpu_mem_limit" in text for name, text in texts.items() if name.startswith("production/") and "_network" in name
    )
    # Production ensembles bound their in-flight requests, read by 2.73's own ModelConfig; portable ones
    # (served by the local 2.51, whose ModelConfig lacks the field) never carry it.
    production_ensembles = {f"production/{name(entry)}" for entry in CATALOG.values() for name in ENSEMBLES}
    assert len(production_ensembles) == 4 * len(CATALOG)
    limit = configs.ensemble_inflight_limit(configs.Layout())
    assert report["inflight"] == dict.fromkeys(sorted(production_ensembles), limit)


def test_the_production_ensembles_stay_readable_by_the_local_release() -> None:
    """2.51's ModelConfig (this venv, the server image's render step) parses them; the bound follows the node."""
    entry = CATALOG["ViT_base_patch16_224"]
    text = configs.to_pbtxt(configs.ensemble_config(entry, "random", REFERENCE, "production"))
    assert "max_inflight_requests" not in configs.model_config_pb2.ModelEnsembling.DESCRIPTOR.fields_by_name
    assert [step.model_name for step in configs.parse_pbtxt(text).ensemble_scheduling.step][
        1
    ] == "vit_base_patch16_224_network"
    node = configs.Layout.for_cores(96)
    ensemble = configs.ensemble_config(entry, "random", REFERENCE, "production", node)
    rendered = configs.to_pbtxt(ensemble | {"response_cache": {"enable": True}})
    assert configs.inflight_limit(rendered) == configs.ensemble_inflight_limit(node) > configs.inflight_limit(text)
    report = parse_with_newer_release({"rendered": rendered})
    assert report["failures"] == {} and report["inflight"] == {"rendered": configs.ensemble_inflight_limit(node)}


def test_the_guard_refuses_a_field_the_newer_release_does_not_know() -> None:
    """A config with a field ModelConfig lacks fails the parse: the check can fail."""
    good = configs.to_pbtxt(configs.postprocess_config())
    report = parse_with_newer_release({"good": good, "bad": good + "\nno_such_field: 1\n"})
    assert list(report["failures"]) == ["bad"]
    assert "no_such_field" in report["failures"]["bad"]
