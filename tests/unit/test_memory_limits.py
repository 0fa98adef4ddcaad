"""The per-request limits, the large-decode slots, the idle release and the launcher's allocator, without a server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model_repository import configs, memory
from model_repository.server import TritonServer
from preprocess import ImageDecodeError, Preprocessor, allocator, preprocess_requests
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS, check_request
from preprocess.slots import LARGE_PIXELS, DecodeSlots
from tests.support import images

SMALL = images.jpeg(images.sized(640, 480))
BIG_HEADER = images.jpeg_declaring(images.sized(64, 48), 8000, 6000)  # declares 48 MP in a few kB


def test_the_interactive_step_counts_once_per_preprocessing_and_never_takes_a_large_slot() -> None:
    models = ["NextViT_small_224", "NextViT_base_224", "ViT_base_patch16_224"]  # two preprocessing keys
    deployment = memory.Deployment.of(configs.Layout.for_cores(16), models, gpu=False, shm_bytes=0)
    assert deployment.interactive_preprocess_instances == 2 * configs.Layout().interactive_preprocess_instances == 2
    # Below the large-image size, so its decodes are counted whole per instance, never against the slots.
    assert configs.INTERACTIVE_MAX_REQUEST_PIXELS < LARGE_PIXELS


def test_a_request_over_the_pixel_limit_is_refused_on_its_headers() -> None:
    eight = [BIG_HEADER] * 8  # 384 MP declared; their data would not even decode
    with pytest.raises(
        ImageDecodeError, match=f"384,000,000 pixels in all, over the limit of {DEFAULT_MAX_REQUEST_PIXELS:,}"
    ):
        check_request(eight, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS)
    check_request([BIG_HEADER] * 4, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS)  # 192 MP: at the limit


def test_a_request_over_the_byte_limit_is_refused_and_images_over_their_own_limits_are_left_to_them() -> None:
    with pytest.raises(ImageDecodeError, match="bytes in all, over the limit of 100 bytes per request"):
        check_request([SMALL], 100, DEFAULT_MAX_REQUEST_PIXELS)
    check_request([b"not an image"], DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS)
    bomb = images.jpeg_declaring(images.sized(64, 48), 65_500, 65_500)  # over the per-image limit: its own error
    check_request([bomb, SMALL], DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS)
    check_request([SMALL * 2], len(SMALL), DEFAULT_MAX_REQUEST_PIXELS, max_image_bytes=len(SMALL))


def test_the_limits_fail_only_their_request() -> None:
    crop = Preprocessor(256, 224, "pillow-bicubic", max_request_pixels=1_000_000)
    outcomes = preprocess_requests([[SMALL], [SMALL] * 4], crop.crop_encoded, admit=crop.check_request)
    assert outcomes[0].shape == (1, 224, 224, 3)
    assert isinstance(outcomes[1], ImageDecodeError) and "pixels per request" in str(outcomes[1])


def test_a_request_of_frames_over_the_byte_limit_is_refused_before_any_resize() -> None:
    crop = Preprocessor(256, 224, "pillow-bicubic", max_request_bytes=2 * 480 * 640 * 3)
    two, three = np.zeros((2, 480, 640, 3), np.uint8), np.zeros((3, 480, 640, 3), np.uint8)
    outcomes = preprocess_requests([two, three], crop.pixels, admit=crop.check_frames)
    assert outcomes[0].shape == (2, 224, 224, 3)
    assert isinstance(outcomes[1], ImageDecodeError)
    assert "request of 3 frames, 2,764,800 bytes in all, over the limit of 1,843,200 bytes" in str(outcomes[1])


def test_large_images_share_the_slots_and_the_last_is_refused_saying_so(tmp_path: Path) -> None:
    slots = DecodeSlots(tmp_path, slots=2, large_pixels=1000, wait_s=0.3)
    held, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with slots.hold(2000):
            held.wait()
            release.wait()

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    held.wait()
    with slots.hold(1000):  # at the size: no slot needed
        pass
    start = time.monotonic()
    with pytest.raises(ImageDecodeError, match="at most 2 images above 1,000 pixels at once"), slots.hold(2000):
        pass
    assert 0.3 <= time.monotonic() - start < 2
    release.set()
    for thread in holders:
        thread.join()
    with slots.hold(2000):  # freed when their holders finished
        pass


def test_idle_release_runs_once_after_the_step_went_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(allocator, "release_free_memory", lambda: calls.append(time.monotonic()))
    idle = allocator.IdleRelease(idle_s=0.2)
    idle.busy()
    time.sleep(0.4)
    assert calls == [], "released during an execution"
    idle.idle()
    finished = time.monotonic()
    time.sleep(0.6)
    assert len(calls) == 1 and calls[0] - finished >= 0.2


def test_this_process_runs_glibc_and_releases() -> None:
    assert allocator.allocator() == "glibc"  # the test runner preloads nothing
    assert allocator.keep_large_buffers() == "glibc"
    allocator.release_free_memory()


def test_the_launcher_preloads_the_production_allocator_and_drops_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/somewhere/else.so")
    monkeypatch.setenv("MALLOC_CONF", "junk")
    library = memory.malloc_library("tcmalloc")
    env = TritonServer(Path("."), admin_key="k" * 16).environment()
    assert env["LD_PRELOAD"] == library and Path(library).is_file()
    assert env["TCMALLOC_AGGRESSIVE_DECOMMIT"] == "true" and "MALLOC_CONF" not in env
    system = TritonServer(Path("."), admin_key="k" * 16, malloc="system").environment()
    assert "LD_PRELOAD" not in system


def test_the_formula_grows_with_each_of_its_inputs() -> None:
    network = memory.MIB
    base = memory.Deployment(2, 1, 1, network, 1, shm_bytes=0)
    assert memory.pod_memory_bytes(base) < memory.pod_memory_bytes(memory.Deployment(4, 1, 1, network, 1, shm_bytes=0))
    assert memory.pod_memory_bytes(memory.Deployment(2, 1, 1, 2 * network, 1, shm_bytes=0)) == (
        memory.pod_memory_bytes(base) + network
    )
    # One more interactive instance: its idle process and one decode at its own request limit, nothing more.
    interactive = memory.Deployment(2, 1, 1, network, 2, shm_bytes=0)
    decode = memory.DECODE_BYTES_PER_PIXEL * configs.INTERACTIVE_MAX_REQUEST_PIXELS
    idle = memory.STEP_IDLE_MIB["interactive_preprocess"] * memory.MIB
    assert memory.pod_memory_bytes(interactive) - memory.pod_memory_bytes(base) == idle + decode
    more_requests = memory.Deployment(2, 1, 1, network, 1, shm_bytes=0, requests_in_flight=65)
    # One more request in flight: its body (the request limit + its envelope) at the frontend and in the step.
    body = DEFAULT_MAX_REQUEST_BYTES + memory.ENVELOPE_BYTES
    assert memory.pod_memory_bytes(more_requests) - memory.pod_memory_bytes(base) == 2 * body
    assert memory.gateway_body_bytes() == body  # what the chart's gateway admits (model_repository/gateway.py)


def test_a_cpu_pod_counts_both_network_processes_of_every_model_by_its_size() -> None:
    small, large = ["NextViT_small_224"], ["ViT_large_patch16_384"]
    layout = configs.Layout.for_cores(2)
    cpu = {
        "small": memory.Deployment.of(layout, small, False, 0),
        "large": memory.Deployment.of(layout, large, False, 0),
    }
    assert cpu["small"].network_cpu_bytes == 2 * memory.portable_network_bytes(
        "NextViT_small_224"
    )  # shared + interactive
    assert cpu["large"].network_cpu_bytes > 3 * cpu["small"].network_cpu_bytes  # 304 M parameters, not 32 M
    assert memory.Deployment.of(layout, small, True, 0).network_cpu_bytes == 0  # gpu mode: networks on the GPU
