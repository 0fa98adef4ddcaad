"""Memory under huge valid images and request floods, against the session's real tritonserver (tcmalloc).

The bounds come from model_repository/memory.py (docs/reliability.md, "Memory"): a request over the
per-request byte or pixel limit is refused before any decode; images above the large-image size
share the server's few large-decode slots, so eight of them on every instance at once stay within
the documented pod bound; the server's proportional set size comes back near idle once a flood
ends. `make drills DRILLS=flood` measures the same at full size.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from model_repository import configs, memory, procfs
from preprocess import DEFAULT_MAX_PIXELS
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_PIXELS
from preprocess.slots import LARGE_PIXELS
from tests.support import images

MODEL = "nextvit_small_224"
GOOD = images.jpeg(images.photo("rocket.jpg"))
SIDE = int(DEFAULT_MAX_PIXELS**0.5)  # 10954: the largest square the per-image limit lets through


def image_request(*datas: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [len(datas), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[d] for d in datas], dtype=object))
    return [tensor]


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    """A valid one-colour JPEG just under the per-image pixel limit: a few hundred kB that decode to 360 MB."""
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (200, 40, 40)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(triton_server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as c:
        yield c


def outcome(url: str, inputs: list) -> str:
    """ "ok", or the server's message."""
    with grpcclient.InferenceServerClient(url) as c:
        try:
            c.infer(MODEL, inputs, client_timeout=120)
            return "ok"
        except InferenceServerException as err:
            return err.message()


class PeakPss(threading.Thread):
    """The highest proportional set size of the server's process tree while the block runs (MiB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, procfs.tree_pss_mib(self.pid))
            self.done.wait(0.05)

    def __enter__(self) -> PeakPss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def test_a_request_over_the_byte_limit_is_refused_naming_it(client) -> None:
    half = DEFAULT_MAX_REQUEST_BYTES // 2 + 1  # two images, each under the per-image limit, together over
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, image_request(GOOD + bytes(half - len(GOOD)), GOOD + bytes(half - len(GOOD))))
    assert f"over the limit of {DEFAULT_MAX_REQUEST_BYTES:,} bytes per request" in refused.value.message()


def test_eight_huge_images_in_one_request_are_refused_before_decoding(client, huge_jpeg: bytes) -> None:
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, image_request(*[huge_jpeg] * 8))
    message = refused.value.message()
    assert f"declaring {8 * SIDE * SIDE:,} pixels in all" in message, message
    assert f"over the limit of {DEFAULT_MAX_REQUEST_PIXELS:,} pixels per request" in message
    # Refused on the headers: no decode of 8 x 120 megapixels (seconds of a core each) ran first.
    assert time.monotonic() - start < 5


def test_huge_images_on_every_instance_at_once_stay_within_the_bound(triton_server, client, huge_jpeg) -> None:
    pid = triton_server.process.pid
    pids = {p.pid for p in procfs.descendants(pid)}
    layout = configs.Layout(**triton_server.serving["layout"])
    first = client.get_model_config(MODEL).config.ensemble_scheduling.step[0].model_name
    step = client.get_model_config(first).config
    admitted = sum(g.count for g in step.instance_group) + step.dynamic_batching.default_queue_policy.max_queue_size
    # Every instance and queue place of the step gets a huge image, and as many requests of eight more.
    requests = [image_request(huge_jpeg)] * admitted + [image_request(*[huge_jpeg] * 8)] * admitted
    bound = memory.pod_memory_bytes(
        memory.Deployment.of(layout, list(triton_server.serving["models"]), False, 0, requests_in_flight=len(requests))
    )
    time.sleep(2)  # let the steps hand back what earlier tests left (allocator.IDLE_RELEASE_S)
    idle = procfs.tree_pss_mib(pid)
    with PeakPss(pid) as peak, ThreadPoolExecutor(len(requests)) as pool:
        outcomes = list(pool.map(lambda inputs: outcome(triton_server.grpc_url, inputs), requests))
    print(f"\nPSS idle {idle:.0f} MiB, peak {peak.peak:.0f} MiB, bound {bound / 2**20:.0f} MiB; {outcomes}")

    expected = ("ok", "pixels per request", "large", "Exceeds maximum queue size", "Request timeout expired")
    assert all(any(words in o for words in expected) for o in outcomes), outcomes
    assert "ok" in outcomes, "no huge image was answered"
    # A request of eight is refused on its headers, unless the full queue refused it first.
    assert not any(o == "ok" for o in outcomes[admitted:]), outcomes
    assert peak.peak * 2**20 < bound
    # One image above the large size per slot: far below every instance decoding one at once.
    assert (peak.peak - idle) * 2**20 < (2 + 1) * memory.DECODE_BYTES_PER_PIXEL * DEFAULT_MAX_PIXELS
    assert {p.pid for p in procfs.descendants(pid)} == pids, "a process of the server died or was replaced"
    assert client.infer(MODEL, image_request(GOOD)).as_numpy("CLASS_IDS").shape == (1, 5)


def test_every_network_process_is_within_its_models_bound(triton_server, client) -> None:
    """A warm portable network (its warmup ran a batch of 8) against memory.portable_network_bytes."""
    for name in triton_server.serving["models"]:
        client.infer(name, image_request(*[GOOD] * configs.MAX_BATCH_SIZE))  # the network's largest batch
    seen = []
    for process in procfs.descendants(triton_server.process.pid)[1:]:
        served = re.search(r"/([a-z0-9_]+)/1/model\.py", process.command)
        if served and served.group(1).endswith(configs.NETWORK_SUFFIX):
            model = configs.installed_name(served.group(1)).removesuffix(configs.NETWORK_SUFFIX)
            pss, bound = procfs.pss_kib(process.pid) * 1024, memory.portable_network_bytes(model)
            seen.append((served.group(1), round(pss / 2**20), round(bound / 2**20)))
            assert pss < bound, seen
    print(f"\nnetwork processes (name, PSS MiB, bound MiB): {seen}")
    layout = triton_server.serving["layout"]
    networks = layout["network_cpu_instances"] + layout["interactive_network_cpu_instances"]
    assert len(seen) == networks * len(triton_server.serving["models"]), seen


def test_a_large_image_waits_for_a_slot_or_is_refused_saying_so(triton_server, huge_jpeg) -> None:
    # More large images at once than slots and instances: each is answered or refused with the slot's words.
    assert SIDE * SIDE > LARGE_PIXELS
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: outcome(triton_server.grpc_url, image_request(huge_jpeg)), range(6)))
    words = r"^ok$|at most \d+ images above [\d,]+ pixels at once|Exceeds maximum queue size|Request timeout expired"
    assert all(re.search(words, o) for o in outcomes), outcomes


def test_memory_comes_back_after_a_flood(triton_server, client) -> None:
    """40 connections of full-size requests for a few seconds: growth bounded, back near idle soon after."""
    pid = triton_server.process.pid
    jpeg = images.jpeg(images.sized(4000, 3000, "coffee.png"), quality=95)
    data = [jpeg] * min(8, DEFAULT_MAX_REQUEST_BYTES // len(jpeg))  # as many camera photos as a request takes
    time.sleep(2)
    idle = procfs.tree_pss_mib(pid)
    stop = time.monotonic() + 6
    own_connection = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per client

    def connection(_: int) -> int:
        sent = 0
        with grpcclient.InferenceServerClient(triton_server.grpc_url, channel_args=own_connection) as c:
            while time.monotonic() < stop:
                try:  # no client deadline: 2.51's gRPC frontend can crash on cancellations under load
                    c.infer(MODEL, image_request(*data))
                except InferenceServerException:
                    time.sleep(0.05)
                sent += 1
        return sent

    with PeakPss(pid) as peak, ThreadPoolExecutor(40) as pool:
        sent = sum(pool.map(connection, range(40)))
    time.sleep(5)
    after = procfs.tree_pss_mib(pid)
    size = sum(map(len, data))
    print(f"\n{sent} requests of {size:,} bytes: PSS idle {idle:.0f}, peak {peak.peak:.0f}, after {after:.0f} MiB")
    assert peak.peak - idle < 1024
    assert after - idle < 150
    assert client.infer(MODEL, image_request(GOOD)).as_numpy("CLASS_IDS").shape == (1, 5)
