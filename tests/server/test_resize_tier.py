"""The near-exact resize tier (opt-in): Pillow-resized steps on pillow-simd, everything else as before.

What must hold: exact stays the default (stock Pillow, no tier parameter in any served config); a
process refuses the tier its PIL cannot give; `--resize-tier near-exact` reaches exactly the
Pillow-resized preprocess steps (IMAGE and PIXELS), and the served step then answers as the network
does for pillow-simd's crop, which stays within the priced tolerance of the exact crop while ViT's
OpenCV steps stay bit-identical. pillow-simd's crops come from a process of its own
(perf/resize_tier.py's worker), as both builds are the module PIL. Needs `make setup`'s .venv/pillow-simd.
"""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import catalog
from catalog.resolve import preprocessor as preprocessor_for
from model_repository import configs, install, layout
from model_repository.serve import main as serve_main
from perf import resize_tier
from preprocess import PILLOW_SIMD_DIR_PARAMETER, RESIZE_TIER_PARAMETER
from preprocess.tiers import NEAR_EXACT_MAX_LEVELS
from tests.support import images
from tests.support.answers import encoded, top_k
from tests.support.deployment import SERVED_MODELS, serve

FAMILIES = [catalog.get(name) for name in SERVED_MODELS]  # Pillow bicubic and OpenCV bilinear, both 256 -> 224
NEXTVIT, VIT = FAMILIES
PILLOW_SIMD = layout.default_pillow_simd_dir()
CAMERA = images.jpeg(images.sized(2400, 1800, "coffee.png"))


def near_exact_crops(datas: list[bytes], tmp_path: Path) -> np.ndarray:
    """pillow-simd's crops of `datas` for NextViT's family (256 -> 224), cut in a process of its own."""
    images_path = tmp_path / "images.pickle"
    images_path.write_bytes(pickle.dumps({"test": datas}))
    result = resize_tier.run_worker("near-exact", images_path, PILLOW_SIMD, repeats=0)
    return result["crops"][("tier", resize_tier.family_key(NEXTVIT))]["test"]


# --- one process, one Pillow -------------------------------------------------------------------------


def test_exact_is_the_default_and_stock_pillow() -> None:
    assert preprocessor_for(NEXTVIT).resize_tier == "exact"
    with pytest.raises(ValueError, match="tier 'near-exact' needs pillow-simd, but this process imported pillow"):
        dataclasses.replace(preprocessor_for(NEXTVIT), resize_tier="near-exact")


def test_near_exact_is_for_pillow_resized_models_only() -> None:
    with pytest.raises(ValueError, match="replaces pillow-bicubic only, not opencv-linear"):
        dataclasses.replace(preprocessor_for(VIT), resize_tier="near-exact")


def test_a_pillow_simd_process_refuses_the_exact_tier() -> None:
    code = "from catalog.resolve import preprocessor; preprocessor('NextViT_small_224')"
    env = {"PYTHONPATH": f"{PILLOW_SIMD}:{Path(__file__).resolve().parents[2]}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "resize tier 'exact' needs pillow, but this process imported pillow-simd" in done.stderr


def test_the_near_exact_crop_is_pillow_simds_resize_of_the_crops_box(tmp_path: Path) -> None:
    """image.near_exact_crop (copy-free layout, only the crop resized) against pillow-simd's own path.

    The reference is Image.fromarray(...).resize with the box worked out here from PaddleClas's
    geometry: the short side to 256 (2400x1800 -> 341x256), the centre 224 square (left 58, top 16),
    at the full resize's scale. A wrong box, scale or layout changes the pixels.
    """
    code = (
        "import sys, numpy as np; from PIL import Image; from preprocess import decode;"
        "from preprocess.image import near_exact_crop; from preprocess.tiers import loaded_pillow;"
        "assert loaded_pillow() == 'pillow-simd';"
        "rgb = decode(open(sys.argv[1], 'rb').read()); h, w = rgb.shape[:2]; assert (w, h) == (2400, 1800);"
        "sx, sy = w / 341, h / 256; box = (58 * sx, 16 * sy, (58 + 224) * sx, (16 + 224) * sy);"
        "own = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BICUBIC, box=box));"
        "print(np.array_equal(near_exact_crop(rgb, 256, 224), own))"
    )
    path = tmp_path / "camera.jpg"
    path.write_bytes(CAMERA)
    env = {"PYTHONPATH": f"{PILLOW_SIMD}:{Path(__file__).resolve().parents[2]}"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_near_exact_crops_stay_within_the_priced_tolerance(sample_photos: list[Path], tmp_path: Path) -> None:
    datas = [path.read_bytes() for path in sample_photos] + [CAMERA]
    near = near_exact_crops(datas, tmp_path)
    exact = np.stack([preprocessor_for(NEXTVIT).crop_encoded(data) for data in datas])
    diff = np.abs(near.astype(np.int16) - exact.astype(np.int16))
    assert 0 < diff.max() <= NEAR_EXACT_MAX_LEVELS  # pillow-simd really ran, and stayed near
    assert np.mean(diff > 0) < 0.02


# --- the serving copy --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def placeholder_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = tmp_path_factory.mktemp("network") / "model.onnx"
    network.write_bytes(b"placeholder")  # never run: only configs are rendered here
    repository = tmp_path_factory.mktemp("installed") / "repository"
    for entry in FAMILIES:
        install.install(entry, network, {"weights_note": "placeholder"}, repository, "portable")
    return repository


def _tiers(target: Path) -> dict[str, tuple[str | None, str | None]]:
    found = {}
    for path in sorted(target.glob("*/config.pbtxt")):
        params = configs.parse_pbtxt(path.read_text()).parameters
        found[path.parent.name] = tuple(
            params[key].string_value if key in params else None
            for key in (RESIZE_TIER_PARAMETER, PILLOW_SIMD_DIR_PARAMETER)
        )
    return found


def test_serving_copy_switches_only_the_pillow_steps(placeholder_repository: Path, tmp_path: Path) -> None:
    exact_target, near_target = tmp_path / "exact", tmp_path / "near"
    layout.render(placeholder_repository, exact_target, None, configs.Layout.for_cores(2), 2)
    args = ["--repository", str(placeholder_repository), "--out", str(near_target), "--resize-tier", "near-exact"]
    assert layout.main(args) == 0
    assert set(_tiers(exact_target).values()) == {(None, None)}
    steps = {
        configs.preprocess_name(NEXTVIT),
        configs.interactive_preprocess_name(NEXTVIT),
        configs.pixels_preprocess_name(NEXTVIT),
    }
    assert {name for name, (tier, _) in _tiers(near_target).items() if tier == "near-exact"} == steps
    assert {_tiers(near_target)[name][1] for name in steps} == {str(PILLOW_SIMD.resolve())}
    assert {value for name, value in _tiers(near_target).items() if name not in steps} == {(None, None)}


def test_a_folder_without_pillow_simd_renders_nothing(
    placeholder_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "near"
    args = ["--repository", str(placeholder_repository), "--out", str(target), "--resize-tier", "near-exact"]
    assert layout.main([*args, "--pillow-simd-dir", str(tmp_path)]) == 1
    assert "holds no pillow-simd" in capsys.readouterr().err
    assert not target.exists()


def test_the_launcher_refuses_a_pillow_simd_dir_without_the_tier(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        serve_main(["--pillow-simd-dir", str(PILLOW_SIMD)])
    assert stopped.value.code == 2
    assert "--pillow-simd-dir needs --resize-tier near-exact" in capsys.readouterr().err


# --- served ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def near_exact_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with serve(exported_repository, tmp_path_factory.mktemp("triton-near-exact"), resize_tier="near-exact") as s:
        yield s


@pytest.fixture(scope="module")
def near_grpc(near_exact_server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(near_exact_server.grpc_url) as client:
        yield client


def test_default_server_stays_exact(triton_server, exact_grpc) -> None:
    assert triton_server.serving["resize_tier"] == "exact"
    for name in (configs.preprocess_name(NEXTVIT), configs.pixels_preprocess_name(NEXTVIT)):
        assert RESIZE_TIER_PARAMETER not in exact_grpc.get_model_config(name).config.parameters


def test_near_exact_server_runs_pillow_simd_in_the_pillow_steps(near_exact_server, near_grpc) -> None:
    assert near_exact_server.serving["resize_tier"] == "near-exact"
    for entry, tier in ((NEXTVIT, "near-exact"), (VIT, None)):
        for name in (configs.preprocess_name(entry), configs.pixels_preprocess_name(entry)):
            params = near_grpc.get_model_config(name).config.parameters
            assert (params[RESIZE_TIER_PARAMETER].string_value if RESIZE_TIER_PARAMETER in params else None) == tier


def test_near_exact_step_answers_as_the_network_does_for_pillow_simds_crop(
    near_grpc, exact_grpc, sample_photos: list[Path], tmp_path: Path
) -> None:
    """IMAGE and PIXELS on the near-exact server give what `<model>_crop` gives for pillow-simd's crops."""
    datas = [path.read_bytes() for path in sample_photos] + [CAMERA]
    crops = near_exact_crops(datas, tmp_path)
    exact_crops = np.stack([preprocessor_for(NEXTVIT).crop_encoded(data) for data in datas])
    crop_model = configs.crop_ensemble_name(NEXTVIT)
    by_crop = [top_k(near_grpc, crop_model, "CROPS", crop[None]) for crop in crops]
    by_file = [top_k(near_grpc, NEXTVIT.triton_name, "IMAGE", encoded([data])) for data in datas]
    assert by_file == by_crop
    decoded = preprocessor_for(NEXTVIT).decode(datas[0])
    assert top_k(near_grpc, configs.pixels_ensemble_name(NEXTVIT), "PIXELS", decoded[None]) == by_crop[0]
    # and differently from the exact server, which answers as the network does for the exact crops
    exact = [top_k(exact_grpc, NEXTVIT.triton_name, "IMAGE", encoded([data])) for data in datas]
    assert exact == [top_k(exact_grpc, crop_model, "CROPS", crop[None]) for crop in exact_crops]
    assert exact != by_file


def test_near_exact_server_leaves_opencv_models_exact(near_grpc, exact_grpc, sample_photos: list[Path]) -> None:
    files = encoded([path.read_bytes() for path in sample_photos] + [CAMERA])
    assert top_k(near_grpc, VIT.triton_name, "IMAGE", files) == top_k(exact_grpc, VIT.triton_name, "IMAGE", files)
