"""The CROPS entry point and client-side preprocessing: the client crops, the server answers as for the file.

`<model>_crop` is the IMAGE ensemble without its preprocess step: uint8 crops in, the same network
and postprocess models. The client's `--preprocess local` cuts the crops with the project's own
`preprocess` package and the parameters the server publishes in `<model>_crop`'s config. The
config tests run everywhere; the server tests use the session's real tritonserver and compare the
two paths on every sample photograph, for both families, score for score.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import catalog
from catalog.resolve import preprocessor as preprocessor_for
from client import Classifier, InferenceError
from client.__main__ import main
from model_repository import configs, install, layout
from tests.support.deployment import SERVED_MODELS
from tests.support.ensembles import TYPE_UINT8, assert_wired
from tests.support.ensembles import parsed as _parsed

ENTRIES = list(catalog.CATALOG.values())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_crop_ensemble_maps_name_real_tensors(entry: catalog.ModelEntry) -> None:
    models = {
        m.name: m
        for m in map(
            _parsed,
            [
                configs.crop_ensemble_config(entry, "test"),
                configs.network_config(entry, "production"),
                configs.postprocess_config(),
            ],
        )
    }
    ensemble = models[configs.crop_ensemble_name(entry)]
    size = entry.input_size
    assert [(i.name, i.data_type, list(i.dims)) for i in ensemble.input] == [("CROPS", TYPE_UINT8, [size, size, 3])]
    assert_wired(ensemble, models)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_crop_entry_is_the_image_entry_without_its_preprocess_step(entry: catalog.ModelEntry) -> None:
    image, crop = _parsed(configs.ensemble_config(entry, "n")), _parsed(configs.crop_ensemble_config(entry, "n"))
    image_steps = [s.model_name for s in image.ensemble_scheduling.step]
    assert [s.model_name for s in crop.ensemble_scheduling.step] == image_steps[1:]
    assert list(crop.output) == list(image.output) and crop.max_batch_size == image.max_batch_size
    # The network's input is exactly what the preprocess step produces, so client crops fit it.
    (produced,) = _parsed(configs.preprocess_config(entry)).output
    assert (produced.data_type, list(produced.dims)) == (crop.input[0].data_type, list(crop.input[0].dims))
    # The served preprocessing travels with the entry point, so a client crops with the served values.
    step = _parsed(configs.preprocess_config(entry)).parameters
    served = {
        key: value for key, value in step.items() if key != configs.NICENESS_PARAMETER
    }  # the process's, not the crop's
    assert served and all(crop.parameters[key] == value for key, value in served.items())
    assert crop.parameters["paddleclas_name"].string_value == entry.name
    assert configs.crop_ensemble_name(entry) in install.model_dirs(entry)  # served with the rest


def _placeholder_repository(tmp_path: Path, entry: catalog.ModelEntry) -> Path:
    network = tmp_path / "model.onnx"
    network.write_bytes(b"placeholder")  # never run: only configs are rendered here
    repository = tmp_path / "installed"
    install.install(entry, network, {"weights_note": "placeholder"}, repository, "portable")
    return repository


def test_serving_copy_holds_the_crop_entry_even_for_older_installs(tmp_path: Path) -> None:
    """Ensembles are rendered, never installed: an install from before the crop entry point serves it too."""
    entry = catalog.get("ViT_base_patch16_224")
    repository = _placeholder_repository(tmp_path, entry)
    target = tmp_path / "serving"
    layout.render(repository, target, None, configs.Layout.for_cores(2), 2)
    served = configs.parse_pbtxt((target / configs.crop_ensemble_name(entry) / "config.pbtxt").read_text())
    assert served == _parsed(configs.crop_ensemble_config(entry, "placeholder"))
    assert not (repository / configs.crop_ensemble_name(entry)).exists()
    # A shared step's data missing from the install is an error that says what to do.
    shutil.rmtree(repository / configs.pixels_preprocess_name(entry))
    with pytest.raises(layout.LayoutError, match="re-export"):
        layout.render(repository, target, None, configs.Layout.for_cores(2), 2)


# --- against the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc(triton_server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        yield c


def _answers(predictions) -> list[tuple[list[int], list[float], list[str]]]:
    return [(p.class_ids, p.scores, p.labels) for p in predictions]


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_client_side_crops_give_the_image_paths_answers(triton_server, sample_photos: list[Path], name: str) -> None:
    """Every sample photo, one at a time and all in one request: identical top-5 ids, labels and scores."""
    model = catalog.get(name).triton_name
    files = [path.read_bytes() for path in sample_photos]
    with (
        Classifier(triton_server.grpc_url, model) as server_side,
        Classifier(triton_server.grpc_url, model, preprocess="local") as client_side,
    ):
        client_side.check_ready()
        for data in files:
            assert _answers(client_side.classify([data])) == _answers(server_side.classify([data]))
        assert _answers(client_side.classify(files)) == _answers(server_side.classify(files))


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_crop_entry_answers_crops_made_without_the_client_library(grpc, sample_photos: list[Path], name: str) -> None:
    """The wire level: crops from the catalog's own preprocessing, sent as CROPS with plain tritonclient."""
    entry = catalog.get(name)
    crops = np.stack([preprocessor_for(entry).crop_encoded(path.read_bytes()) for path in sample_photos])
    tensor = grpcclient.InferInput("CROPS", list(crops.shape), "UINT8")
    tensor.set_data_from_numpy(crops)
    by_crops = grpc.infer(configs.crop_ensemble_name(entry), [tensor])
    images = grpcclient.InferInput("IMAGE", [len(sample_photos), 1], "BYTES")
    images.set_data_from_numpy(np.array([[p.read_bytes()] for p in sample_photos], dtype=object))
    by_image = grpc.infer(entry.triton_name, [images])
    for output in ("CLASS_IDS", "SCORES", "LABELS"):
        np.testing.assert_array_equal(by_crops.as_numpy(output), by_image.as_numpy(output))


@pytest.mark.server
def test_a_bad_image_fails_locally_with_the_servers_words(triton_server, sample_photos: list[Path]) -> None:
    good = sample_photos[3].read_bytes()
    messages = []
    for preprocess in ("server", "local"):
        with Classifier(triton_server.grpc_url, "vit_base_patch16_224", preprocess=preprocess) as classifier:
            with pytest.raises(InferenceError) as refused:
                classifier.classify([good, b"", good])
            messages.append(str(refused.value))
    assert messages[0] == messages[1] == "image 2 of 3: empty image (0 bytes)"


@pytest.mark.server
def test_crops_of_the_wrong_size_are_refused_by_the_server(triton_server) -> None:
    with (
        Classifier(triton_server.grpc_url, "nextvit_small_224") as classifier,
        pytest.raises(InferenceError, match=r"(?i)shape|dims"),
    ):
        classifier.classify_crops([np.zeros((256, 256, 3), np.uint8)])


@pytest.mark.server
def test_cli_local_preprocessing_prints_the_server_sides_answers(
    triton_server, sample_photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for photo in sample_photos:
        shutil.copy(photo, tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    rows = {}
    for preprocess in ("server", "local"):
        argv = ["classify", str(tmp_path), "--model", "nextvit_small_224", "--url", triton_server.grpc_url]
        code = main([*argv, "--json", "--preprocess", preprocess])
        assert code == 1  # the broken file fails, on its own, on both paths
        rows[preprocess] = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["local"] == rows["server"]
    assert "unreadable PNG header" in rows["local"]["broken.png"]["error"]
    assert all(len(rows["local"][p.name]["class_ids"]) == 5 for p in sample_photos)


def test_unknown_preprocessing_is_refused() -> None:
    with pytest.raises(ValueError, match="preprocess must be one of"):
        Classifier("127.0.0.1:1", "nextvit_small_224", preprocess="gpu")  # type: ignore[arg-type]
