"""End to end through the real tritonserver: encoded photos in over gRPC, the same top-5 as Paddle Inference out.

The reference is independent of the served path: Paddle Inference runs the network rebuilt from
PaddleClas's code with the same seed, on the tensor the catalog's preprocessing makes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import catalog
from catalog.reference import imagenet_labels
from catalog.resolve import photo_batch
from client import Classifier
from export import network
from tests.support import bursts
from tests.support.deployment import SEED, SERVED_MODELS


@pytest.fixture(scope="module")
def paddle_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Paddle Inference probabilities for the sample photos, per served model."""
    probabilities = {}
    for name in SERVED_MODELS:
        entry = catalog.get(name)
        directory = tmp_path_factory.mktemp(name)
        program = network.save_inference_model(network.build(entry, seed=SEED), entry, directory)
        probabilities[name] = network.PaddlePredictor(program, threads=2)(photo_batch(entry))
    return probabilities


@pytest.mark.parametrize("name", SERVED_MODELS)
def test_grpc_top5_matches_paddle_inference(
    triton_server, sample_photos: list[Path], paddle_reference: dict[str, np.ndarray], name: str
) -> None:
    entry = catalog.get(name)
    expected = paddle_reference[name]
    labels = imagenet_labels()
    with Classifier(triton_server.grpc_url, entry.triton_name, "grpc") as classifier:
        predictions = classifier.classify([p.read_bytes() for p in sample_photos])
    for prediction, reference in zip(predictions, expected, strict=True):
        top5 = np.argsort(-reference, kind="stable")[:5]
        assert prediction.class_ids == top5.tolist()
        np.testing.assert_allclose(prediction.scores, reference[top5], atol=1e-4, rtol=0)
        assert prediction.labels == [labels[i] for i in top5]
    assert len({p.class_ids[0] for p in predictions}) > 1 or len(predictions) == 1  # not a constant answer


def test_http_gives_the_same_answer_as_grpc(triton_server, sample_photos: list[Path]) -> None:
    image = [sample_photos[0].read_bytes()]
    with Classifier(triton_server.grpc_url, "vit_base_patch16_224", "grpc") as g:
        via_grpc = g.classify(image)
    with Classifier(triton_server.http_url, "vit_base_patch16_224", "http") as h:
        via_http = h.classify(image)
    assert via_grpc == via_http


def _request(image: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[image]], dtype=object))
    return [tensor]


def test_bad_images_fail_only_their_own_requests(triton_server, sample_photos: list[Path]) -> None:
    """Good and bad requests in flight together: each bad one gets its own message, the good ones answer."""
    good = sample_photos[3].read_bytes()  # rocket.jpg
    bad = {
        b"": "empty image",
        good[: len(good) // 2]: "truncated JPEG",
        b"this is a text file, not an image": "not a decodable image",
    }
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    images = [good, *bad, good]
    results = bursts.in_flight_together(client, "nextvit_small_224", [_request(image) for image in images])
    for index, image in enumerate(images):
        outcome = results[index]
        if image is good:
            assert not isinstance(outcome, InferenceServerException), outcome
            assert outcome.as_numpy("CLASS_IDS").shape == (1, 5)
        else:
            assert isinstance(outcome, InferenceServerException)
            assert bad[image] in outcome.message()
    assert client.is_server_live() and client.is_server_ready()


def test_batch_limit_is_enforced_by_the_server(triton_server, sample_photos: list[Path]) -> None:
    client = httpclient.InferenceServerClient(triton_server.http_url)
    tensor = httpclient.InferInput("IMAGE", [9, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[sample_photos[0].read_bytes()]] * 9, dtype=object))
    with pytest.raises(InferenceServerException, match="batch"):
        client.infer("nextvit_small_224", [tensor])


def test_client_pixels_entry_point_gives_the_encoded_answer(triton_server, sample_photos: list[Path]) -> None:
    """The library's PIXELS path (decoded frames) answers exactly as the encoded-image path."""
    from preprocess import decode

    encoded = sample_photos[1].read_bytes()
    with Classifier(triton_server.grpc_url, "nextvit_small_224") as classifier:
        assert classifier.classify_pixels([decode(encoded)]) == classifier.classify([encoded])
