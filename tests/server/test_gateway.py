"""The chart's gateway, the real nginx in front of the real tritonserver: both of memory.py's limits hold.

model_repository/gateway.py writes the configuration the chart mounts; tests/support/gateway.py runs
it on free loopback ports in front of the session's server. A request over the body limit is refused
by nginx with the protocol's own error and one under it is answered; with the in-flight limit
narrowed to one, concurrent requests beyond it are refused as retryable while the first is answered.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from model_repository import configs, gateway, memory
from model_repository.server import TritonServer, free_port
from tests.support import gateway as nginx

MODEL = "nextvit_small_224"
pytestmark = pytest.mark.server


def _config(server: TritonServer, **limits: int) -> gateway.Gateway:
    upstream_http = int(server.http_url.rsplit(":", 1)[1])
    return gateway.Gateway(
        grpc_port=free_port(),
        upstream_grpc_port=server.grpc_port,
        http_port=free_port(),
        upstream_http_port=upstream_http,
        **limits,
    )


@pytest.fixture(scope="module")
def front(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway.Gateway]:
    with nginx.running(_config(triton_server), tmp_path_factory.mktemp("gateway")) as running:
        yield running


def _images(*datas: bytes) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [len(datas), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[d] for d in datas], dtype=object))
    return [tensor]


def _infer(port: int, datas: tuple[bytes, ...]) -> object:
    with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as client:
        try:
            return client.infer(MODEL, _images(*datas))
        except InferenceServerException as err:
            return err


def test_grpc_over_the_body_limit_is_refused_by_the_gateway_and_under_it_answered(
    front: gateway.Gateway, sample_photos: list[Path]
) -> None:
    photo = sample_photos[0].read_bytes()
    padding = b"\xff" * (memory.gateway_body_bytes() // 2)  # two of these pass the limit; never decoded
    refused = _infer(front.grpc_port, (padding, padding))
    assert isinstance(refused, InferenceServerException), refused
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED", refused
    assert f"over the gateway limit of {memory.gateway_body_bytes()} bytes" in refused.message()
    answered = _infer(front.grpc_port, (photo,))
    assert not isinstance(answered, InferenceServerException), answered
    assert answered.as_numpy("CLASS_IDS").shape == (1, 5)


def test_http_over_the_body_limit_is_refused_with_a_json_error(front: gateway.Gateway) -> None:
    body = b"{" + b" " * memory.gateway_body_bytes() + b"}"
    request = urllib.request.Request(f"http://127.0.0.1:{front.http_port}/v2/models/{MODEL}/infer", data=body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert "over the gateway limit" in json.loads(refused.value.read())["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{front.http_port}/v2/health/ready", timeout=10) as ready:
        assert ready.status == 200  # health passes through, exempt from the in-flight limit


def test_requests_beyond_the_in_flight_limit_are_refused_as_retryable(
    triton_server: TritonServer, tmp_path: Path, sample_photos: list[Path]
) -> None:
    photos = tuple(path.read_bytes() for path in sample_photos[: configs.MAX_BATCH_SIZE])
    with nginx.running(_config(triton_server, requests_in_flight=1), tmp_path) as one, ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _infer(one.grpc_port, photos), range(8)))
    refused = [o for o in outcomes if isinstance(o, InferenceServerException)]
    assert len(refused) < len(outcomes), refused  # the first in flight is answered
    assert refused, "eight concurrent requests never met the limit of one in flight"
    for err in refused:  # the gateway's refusal, retryable as a full queue is; not a failure of the server
        assert err.status() == "StatusCode.UNAVAILABLE" and "1 requests in flight; retry" in err.message(), err
