"""Triton's response cache on the public ensembles, against the real tritonserver 2.51.0.

Off by default: the serving copy enables `response_cache` on the ensembles only when the launcher
gets --response-cache-bytes. A hit must return exactly the answer of the miss before it, different
images must never share an answer, and a request that failed must never be cached (the server's
own hit and miss counts, from the statistics API with the admin key, say what happened).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import catalog
from model_repository import configs, layout
from model_repository.flags import cache_flags
from model_repository.server import TritonServer
from tests.support import images
from tests.support.deployment import serve

MODEL = catalog.get("NextViT_small_224")
CACHE_BYTES = 4 << 20
OUTPUTS = tuple(configs.TOP_K_OUTPUTS)


@pytest.fixture(scope="module")
def cached_server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One model, one core, no warmup (a cheap start), a 4 MiB local response cache."""
    with serve(
        exported_repository,
        tmp_path_factory.mktemp("cached"),
        models=[MODEL.name],
        cores=1,
        warmup=False,
        response_cache_bytes=CACHE_BYTES,
    ) as server:
        yield server


def infer(server: TritonServer, model: str, tensor: grpcclient.InferInput) -> dict[str, np.ndarray]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer(model, [tensor], client_timeout=60)
    return {name: result.as_numpy(name) for name in OUTPUTS}


def image_tensor(*encoded: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [len(encoded), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data] for data in encoded], dtype=object))
    return tensor


def cache_counts(server: TritonServer, model: str) -> tuple[int, int]:
    """(hits, misses) of `model` as the server counts them (statistics API: needs the admin key)."""
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(model, headers=server.admin_headers("grpc"), as_json=True)
    inference = stats["model_stats"][0]["inference_stats"]
    return int(inference["cache_hit"].get("count", 0)), int(inference["cache_miss"].get("count", 0))


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]) for name in OUTPUTS)


@pytest.mark.server
def test_the_public_ensembles_and_only_they_have_the_cache_on(cached_server: TritonServer) -> None:
    with grpcclient.InferenceServerClient(cached_server.grpc_url) as client:
        for name in [*cached_server.served_models, configs.pixels_ensemble_name(MODEL)]:
            config = client.get_model_config(name, as_json=True)["config"]
            assert config.get("response_cache", {}).get("enable") is True, name
        for name in (configs.preprocess_name(MODEL), configs.network_name(MODEL), configs.postprocess_name()):
            assert not client.get_model_config(name, as_json=True)["config"].get("response_cache"), name


@pytest.mark.server
def test_a_hit_returns_exactly_the_answer_of_the_miss(cached_server: TritonServer, sample_photos: list[Path]) -> None:
    photo = sample_photos[0].read_bytes()
    hits, misses = cache_counts(cached_server, MODEL.triton_name)
    first = infer(cached_server, MODEL.triton_name, image_tensor(photo))
    assert cache_counts(cached_server, MODEL.triton_name) == (hits, misses + 1)
    second = infer(cached_server, MODEL.triton_name, image_tensor(photo))
    assert cache_counts(cached_server, MODEL.triton_name) == (hits + 1, misses + 1)
    assert same(first, second), (first, second)


@pytest.mark.server
def test_different_images_never_share_an_answer(cached_server: TritonServer) -> None:
    """Every photo, the same photo 2 pixels smaller, and one batch of two: each hit is its own miss's answer.

    (The same pixels in another file format are the same crop, so the same answer: not a collision.)
    """
    retina = images.photo("retina.jpg")
    shifted = images.centre(retina, retina.shape[1] - 2, retina.shape[0] - 2)
    encoded = [path.read_bytes() for path in images.photo_paths()] + [images.encode(shifted, "PNG")]
    requests = [image_tensor(data) for data in encoded] + [image_tensor(encoded[0], encoded[1])]
    misses = [infer(cached_server, MODEL.triton_name, tensor) for tensor in requests]
    hits_before, _ = cache_counts(cached_server, MODEL.triton_name)
    hits = [infer(cached_server, MODEL.triton_name, tensor) for tensor in requests]
    assert cache_counts(cached_server, MODEL.triton_name)[0] == hits_before + len(requests)
    for index, (miss, hit) in enumerate(zip(misses, hits, strict=True)):
        assert same(miss, hit), f"request {index}: the hit differs from its miss"
    scores = {misses[i]["SCORES"].tobytes() for i in range(len(encoded))}
    assert len(scores) == len(encoded), "two different images got the same answer"
    # The batch of two is keyed on both images: its rows are the single answers, not a cached one.
    for row in (0, 1):
        assert np.array_equal(misses[-1]["SCORES"][row], misses[row]["SCORES"][0])


@pytest.mark.server
def test_decoded_frames_are_cached_on_the_pixels_ensemble(cached_server: TritonServer) -> None:
    name = configs.pixels_ensemble_name(MODEL)
    frame = images.photo("coffee.png")[None, ...]
    tensor = grpcclient.InferInput(configs.PIXELS_INPUT, list(frame.shape), "UINT8")
    tensor.set_data_from_numpy(frame)
    hits, misses = cache_counts(cached_server, name)
    first, second = infer(cached_server, name, tensor), infer(cached_server, name, tensor)
    assert cache_counts(cached_server, name) == (hits + 1, misses + 1)
    assert same(first, second)


@pytest.mark.server
def test_a_bad_image_is_never_cached(cached_server: TritonServer) -> None:
    truncated = images.encode(images.photo("chelsea.png"), "JPEG")[:-400]
    before = cache_counts(cached_server, MODEL.triton_name)
    messages = []
    for _ in range(2):
        with pytest.raises(InferenceServerException) as failed:
            infer(cached_server, MODEL.triton_name, image_tensor(truncated))
        messages.append(failed.value.message())
    assert messages[0] == messages[1] and "truncated" in messages[0], messages
    # Neither a hit (nothing was stored) nor a stored miss: failures never enter the cache.
    assert cache_counts(cached_server, MODEL.triton_name) == before


def test_the_serving_copy_enables_the_cache_only_when_asked(exported_repository: Path, tmp_path: Path) -> None:
    cores, resolved = layout.resolve(1)
    for enabled in (False, True):
        target = tmp_path / f"cache-{enabled}"
        summary = layout.render(exported_repository, target, [MODEL.name], resolved, cores, response_cache=enabled)
        assert summary["response_cache"] is enabled
        for config_file in sorted(target.glob("*/config.pbtxt")):
            config = configs.parse_pbtxt(config_file.read_text())
            public = configs.step_kind(config.name) == "ensemble"
            assert config.response_cache.enable is (enabled and public), config.name
            if enabled and public:  # nothing else differs from the default deployment's config
                config.ClearField("response_cache")
                default = target.with_name("cache-False") / config.name / "config.pbtxt"
                assert config == configs.parse_pbtxt(default.read_text()), config.name


def test_cache_flags() -> None:
    assert cache_flags(0) == []
    assert cache_flags(1 << 20, Path("/caches")) == ["--cache-directory=/caches", "--cache-config=local,size=1048576"]
    with pytest.raises(ValueError):
        cache_flags(-1)
