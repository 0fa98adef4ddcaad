"""Hostile and odd images against the real tritonserver: each fails only its own request, with a reason.

Runs on the session's `triton_server` (tests/conftest.py). The last test floods the server with
1,000 bad requests and checks that it still gives the same answers, that no Python stub died and
was replaced, and that neither the private memory of the server and its stubs nor the Python
backend's shared-memory pool has grown beyond allocator noise.

Every test runs twice: against the session's exact server and against a server whose preprocess
steps are in fast decode (`fast_decode_server`, --fast-decode), which must refuse the same inputs
with the same reasons and survive the same flood. A camera-sized truncated JPEG is among the cases,
so the fast path's own decoder (reduced DCT scale) is reached with a hostile file too.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from preprocess import DEFAULT_MAX_PIXELS
from tests.support import bursts, images

# The server comes from a fixture chosen at run time (exact or fast decode): marked here, not by its name.
pytestmark = pytest.mark.server

MODEL = "nextvit_small_224"
GOOD = images.jpeg(images.photo("rocket.jpg"))  # 640x427, a real photo
CAMERA = images.jpeg(images.sized(2400, 1800, "coffee.png"))  # camera-sized: fast decode reads it at 1/2 scale


def image_request(*datas: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IMAGE", [len(datas), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[d] for d in datas], dtype=object))
    return [tensor]


def pixels_request(frames: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("PIXELS", list(frames.shape), "UINT8")
    tensor.set_data_from_numpy(frames)
    return [tensor]


@pytest.fixture(scope="module", params=["exact", "fast-decode"])
def server(request: pytest.FixtureRequest):
    """The session's server (exact), then the fast-decode one: each test runs against both."""
    return request.getfixturevalue("triton_server" if request.param == "exact" else "fast_decode_server")


@pytest.fixture(scope="module")
def client(server) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


def answer(client: grpcclient.InferenceServerClient, inputs: list, model: str = MODEL) -> tuple[list, list]:
    result = client.infer(model, inputs)
    return result.as_numpy("CLASS_IDS").tolist(), result.as_numpy("SCORES").tolist()


def refusal(client: grpcclient.InferenceServerClient, inputs: list, model: str = MODEL) -> str:
    with pytest.raises(InferenceServerException) as refused:
        client.infer(model, inputs)
    return refused.value.message()


# name -> (request bytes, what the error message must say)
BAD = {
    "zero-bytes": (b"", r"empty image \(0 bytes\)"),
    "random-bytes": (np.random.default_rng(0).bytes(50_000), "not a decodable image: unknown format"),
    "text": (b"Ceci n'est pas une image.\n", "not a decodable image: .* bytes of text"),
    "truncated-jpeg": (GOOD[: len(GOOD) // 2], r"truncated JPEG"),
    "truncated-camera-jpeg": (CAMERA[: len(CAMERA) // 2], r"truncated JPEG"),
    "jpeg-header-65500x65500": (
        images.jpeg_declaring(images.photo("rocket.jpg"), 65_500, 65_500),
        f"JPEG header declares 65500x65500 = 4,290,250,000 pixels, over the limit of {DEFAULT_MAX_PIXELS:,}",
    ),
    "20000x1": (images.png(images.sized(20_000, 1)), "aspect ratio too extreme: a 20000x1 image"),
    "1x20000": (images.png(images.sized(1, 20_000)), "aspect ratio too extreme: a 1x20000 image"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_image_is_refused_with_its_reason(client, case: str) -> None:
    data, reason = BAD[case]
    message = refusal(client, image_request(data))
    assert re.search(reason, message), message


def test_png_decompression_bomb_is_refused(client) -> None:
    bomb = images.png_bomb(12_000, 11_000)  # 132 megapixels (396 MB of RGB) in about 130 kB
    message = refusal(client, image_request(bomb))
    assert "PNG header declares 12000x11000 = 132,000,000 pixels, over the limit" in message


def test_1x1_image_is_answered(client) -> None:
    # A 1x1 image is valid: PaddleClas scales it up to the crop and classifies it; so do we.
    class_ids, scores = answer(client, image_request(images.png(images.sized(1, 1))))
    assert len(class_ids[0]) == 5 and scores[0] == sorted(scores[0], reverse=True)


def test_a_request_with_one_bad_image_fails_naming_it(client) -> None:
    message = refusal(client, image_request(GOOD, b"", GOOD))
    assert "image 2 of 3: empty image" in message


def test_good_and_bad_requests_in_flight_together(client) -> None:
    """Requests the dynamic batcher may put in one batch: good ones get their own answer, bad ones their error."""
    alone = answer(client, image_request(GOOD))
    bad = [data for data, _ in BAD.values()]
    payloads = [GOOD if i % 2 == 0 else bad[i // 2 % len(bad)] for i in range(16)]
    outcomes = bursts.in_flight_together(client, MODEL, [image_request(data) for data in payloads])
    for index, data in enumerate(payloads):
        outcome = outcomes[index]
        if data is GOOD:
            assert not isinstance(outcome, InferenceServerException), outcome
            assert (outcome.as_numpy("CLASS_IDS").tolist(), outcome.as_numpy("SCORES").tolist()) == alone
        else:
            assert isinstance(outcome, InferenceServerException)


# --- the flood ----------------------------------------------------------------------------------


def _process_tree(root: int) -> list[int]:
    """`root` and all its descendants (the Python backend stubs are children of tritonserver)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return sorted(tree)


def _memory(root: int) -> dict[str, int]:
    """Bytes of memory held by the server and every stub, in three views.

    private: the sum of RssAnon, the heap of every process, where a leak shows.
    shared: the size of the Python backend's shared-memory pool files (/dev/shm) the server maps;
    the pool grows in 1 MiB steps to fit the largest requests in flight and is then reused.
    rss: the sum of VmRSS, for the record only: it counts a shared page once per process and mapping.
    """
    pids = _process_tree(root)
    totals = {"private": 0, "rss": 0}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS"):
                totals["private" if key == "RssAnon" else "rss"] += int(value.split()[0]) * 1024
    pool = {line.split()[-1] for line in Path(f"/proc/{root}/maps").read_text().splitlines() if "/dev/shm/" in line}
    totals["shared"] = sum(os.stat(path).st_size for path in pool if os.path.exists(path))
    return totals


def _flood_payloads(count: int) -> list[tuple[str, list]]:
    """Bad requests of every kind, about a third of them hundreds of kilobytes (a leaked input shows)."""
    big = images.jpeg(images.sized(1600, 1200, "hubble_deep_field.jpg"), quality=95)
    corrupt_png = bytearray(images.png(images.sized(400, 300)))
    corrupt_png[100:-40] = np.random.default_rng(1).bytes(len(corrupt_png) - 140)  # header and IEND intact
    kinds = [
        (MODEL, image_request(big[: len(big) * 2 // 3])),  # truncated JPEG
        (MODEL, image_request(np.random.default_rng(2).bytes(300_000))),
        (MODEL, image_request(bytes(corrupt_png))),
        (MODEL, image_request(BAD["jpeg-header-65500x65500"][0])),
        (MODEL, image_request(BAD["20000x1"][0])),  # decodes, then refused at resize
        (MODEL, image_request(b"")),
        ("vit_base_patch16_224", image_request(GOOD, BAD["text"][0])),
        (f"{MODEL}_pixels", pixels_request(np.zeros((1, 1, 20_000, 3), np.uint8))),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


def _send_all(url: str, payloads: list[tuple[str, list]], workers: int = 8) -> int:
    """Send every payload with a few concurrent clients; returns how many were refused."""
    local = threading.local()

    def send(payload: tuple[str, list]) -> bool:
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        try:
            local.client.infer(*payload)
        except InferenceServerException:
            return True
        return False

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(send, payloads))


def test_server_survives_1000_bad_requests_without_growing(server, client) -> None:
    reference = {m: answer(client, image_request(GOOD), m) for m in (MODEL, "vit_base_patch16_224")}
    pids = _process_tree(server.process.pid)
    payloads = _flood_payloads(1000)
    # Warm-up with the same mix: lazy imports, allocator arenas and the shared-memory pool reach
    # their working size (a fresh server's heap grows by about 70 MiB over its first 1,000 here).
    assert _send_all(server.grpc_url, payloads) == 1000
    time.sleep(1)
    before = _memory(server.process.pid)

    assert _send_all(server.grpc_url, payloads) == 1000

    time.sleep(1)
    after = _memory(server.process.pid)
    assert client.is_server_live() and client.is_server_ready()
    assert {m: answer(client, image_request(GOOD), m) for m in reference} == reference
    assert _process_tree(server.process.pid) == pids, "a process of the server died or was replaced"
    print(
        f"\ntritonserver + {len(pids) - 1} stubs, before -> after 1,000 bad requests (MiB): "
        + ", ".join(
            f"{k} {before[k] / 2**20:.1f} -> {after[k] / 2**20:.1f} ({(after[k] - before[k]) / 2**20:+.1f})"
            for k in before
        )
    )
    # The flood carries about 125 MB of payload: keeping a fifth of it, or 25 kB per request, crosses
    # the first line; after warm-up the heap moved by -5 to +7 MiB per 1,000 in repeated runs.
    assert after["private"] - before["private"] < 24 * 2**20
    # The pool grew by 0 to 2 MiB per 1,000 after warm-up; a request whose memory is never given
    # back would make it grow by its size each time.
    assert after["shared"] - before["shared"] <= 16 * 2**20
