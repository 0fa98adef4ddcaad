"""The PIXELS entry point: decoded RGB frames in, the same answer as the encoded image gives.

`<model>_pixels` is the IMAGE ensemble with its first step swapped for a preprocess model that skips
decoding; network and postprocess are the same Triton models. The config tests run everywhere; the
server tests use the session's real tritonserver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import catalog
from model_repository import configs, install
from preprocess import decode
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES
from tests.support import bursts, images
from tests.support.deployment import SERVED_MODELS
from tests.support.ensembles import TYPE_UINT8, assert_wired
from tests.support.ensembles import parsed as _parsed

ENTRIES = list(catalog.CATALOG.values())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_pixels_ensemble_maps_name_real_tensors(entry: catalog.ModelEntry) -> None:
    models = {
        m.name: m
        for m in map(
            _parsed,
            [
                configs.pixels_ensemble_config(entry, "test"),
                configs.pixels_preprocess_config(entry),
                configs.network_config(entry, "production"),
                configs.postprocess_config(),
            ],
        )
    }
    ensemble = models[configs.pixels_ensemble_name(entry)]
    assert [(i.name, i.data_type, list(i.dims)) for i in ensemble.input] == [("PIXELS", TYPE_UINT8, [-1, -1, 3])]
    assert_wired(ensemble, models)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_pixels_entry_shares_everything_after_decoding(entry: catalog.ModelEntry) -> None:
    image, pixels = _parsed(configs.ensemble_config(entry, "n")), _parsed(configs.pixels_ensemble_config(entry, "n"))
    image_steps = [s.model_name for s in image.ensemble_scheduling.step]
    pixels_steps = [s.model_name for s in pixels.ensemble_scheduling.step]
    assert pixels_steps == [configs.pixels_preprocess_name(entry), *image_steps[1:]]
    assert list(pixels.output) == list(image.output) and pixels.max_batch_size == image.max_batch_size
    decoder, frames = _parsed(configs.preprocess_config(entry)), _parsed(configs.pixels_preprocess_config(entry))
    assert frames.parameters == decoder.parameters
    assert list(frames.output) == list(decoder.output)
    assert frames.input[0].allow_ragged_batch  # frames of different sizes may share a batch
    new_models = {configs.pixels_ensemble_name(entry), configs.pixels_preprocess_name(entry)}
    assert new_models <= set(install.model_dirs(entry))  # served with the rest


# --- against the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(triton_server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        yield c


def _frames_request(frames: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("PIXELS", list(frames.shape), "UINT8")
    tensor.set_data_from_numpy(frames)
    return [tensor]


def _image_request(*datas: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [len(datas), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[d] for d in datas], dtype=object))
    return [tensor]


def _answer(result) -> tuple[list, list, list]:
    return (
        result.as_numpy("CLASS_IDS").tolist(),
        result.as_numpy("SCORES").tolist(),
        result.as_numpy("LABELS").tolist(),
    )


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED_MODELS)
def test_frames_get_the_answer_of_their_encoded_image(client, sample_photos: list[Path], name: str) -> None:
    triton_name = catalog.get(name).triton_name
    for path in sample_photos:
        data = path.read_bytes()
        frame = decode(data)
        by_image = _answer(client.infer(triton_name, _image_request(data, data)))
        by_pixels = _answer(client.infer(f"{triton_name}_pixels", _frames_request(np.stack([frame, frame]))))
        assert by_pixels == by_image  # identical tensors reach the network, so identical scores come back


@pytest.mark.server
def test_frames_of_different_sizes_in_flight_together(client) -> None:
    frames = [images.sized(w, h, "coffee.png") for w, h in [(600, 400), (300, 500), (1, 1), (1025, 512), (257, 256)]]
    expected = [_answer(client.infer("vit_base_patch16_224", _image_request(images.png(f)))) for f in frames]
    requests = [_frames_request(frame[None]) for frame in frames]
    outcomes = bursts.in_flight_together(client, "vit_base_patch16_224_pixels", requests)
    for index, want in enumerate(expected):
        assert not isinstance(outcomes[index], InferenceServerException), outcomes[index]
        assert _answer(outcomes[index]) == want


@pytest.mark.server
@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (np.zeros((1, 1, 20_000, 3), np.uint8), "aspect ratio too extreme: a 20000x1 image"),
        (np.zeros((1, 0, 5, 3), np.uint8), "empty 5x0 frame"),
    ],
    ids=["20000x1", "empty"],
)
def test_bad_frames_are_refused_with_their_reason(client, frames: np.ndarray, reason: str) -> None:
    with pytest.raises(InferenceServerException, match=reason):
        client.infer("nextvit_small_224_pixels", _frames_request(frames))


@pytest.mark.server
def test_wrong_pixel_type_is_refused_by_the_server(client) -> None:
    tensor = grpcclient.InferInput("PIXELS", [1, 8, 8, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"(?i)data.?type|UINT8"):
        client.infer("nextvit_small_224_pixels", [tensor])


@pytest.mark.server
def test_a_request_of_frames_over_the_byte_limit_is_refused_and_the_next_answered(client) -> None:
    # Three 1920x1080 frames: 18.7 MB, over the 16 MiB every request may carry (preprocess/decoding.py).
    frames = np.zeros((3, 1080, 1920, 3), np.uint8)
    assert frames.nbytes > DEFAULT_MAX_REQUEST_BYTES >= frames[:2].nbytes
    with pytest.raises(InferenceServerException, match=f"over the limit of {DEFAULT_MAX_REQUEST_BYTES:,} bytes per"):
        client.infer("nextvit_small_224_pixels", _frames_request(frames))
    answer = client.infer("nextvit_small_224_pixels", _frames_request(frames[:2]))
    assert answer.as_numpy("CLASS_IDS").shape == (2, 5)
