"""Request tracing against the real tritonserver 2.51.0: one ensemble request, its spans over OTLP.

The test runs its own OTLP/HTTP receiver on loopback. It decodes what Triton sends against the
OpenTelemetry schema (`ExportTraceServiceRequest` from opentelemetry-proto), in either body
encoding OTLP/HTTP allows (2.51 sends JSON, with hexadecimal trace and span ids), and it refuses
any other body with a 4xx, as a collector would. Then it checks the span tree: the request's root
span, the ensemble's span, one span per step (preprocess, network, postprocess) inside it, one in
order after the other, each with a compute span inside its queue-to-end interval.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

import catalog
from model_repository import configs
from model_repository.flags import SERVICE_NAME, Tracing, parse_resource, trace_flags
from model_repository.server import TritonServer
from tests.support.deployment import serve

MODEL = catalog.get("NextViT_small_224")
EXPORT_WAIT_S = 20.0  # Triton's batch span processor exports every 5 s by default


class OtlpReceiver:
    """A minimal OTLP/HTTP traces endpoint on 127.0.0.1: decodes each export and keeps its spans."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                if self.path != "/v1/traces":
                    return self._answer(404, b"not an OTLP traces endpoint")
                try:
                    message = decode_export(body, content_type)
                except ValueError as err:
                    return self._answer(415 if "content type" in str(err) else 400, str(err).encode())
                with receiver._lock:
                    receiver.requests.append(message)
                    receiver.content_types.append(content_type)
                response = trace_service_pb2.ExportTraceServiceResponse()
                if content_type == "application/json":
                    return self._answer(200, json_format.MessageToJson(response).encode(), content_type)
                return self._answer(200, response.SerializeToString(), content_type)

            def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[tuple[dict[str, str], trace_pb2.Span]]:
        """(resource attributes, span) for every span received so far."""
        with self._lock:
            found = []
            for request in self.requests:
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    found += [(resource, span) for scope in resource_spans.scope_spans for span in scope.spans]
            return found

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def decode_export(body: bytes, content_type: str) -> trace_service_pb2.ExportTraceServiceRequest:
    """An OTLP/HTTP export body as the schema's message; ValueError for anything else."""
    message = trace_service_pb2.ExportTraceServiceRequest()
    if content_type == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except Exception as err:  # protobuf's DecodeError
            raise ValueError(f"not an ExportTraceServiceRequest: {err}") from None
        return message
    if content_type != "application/json":
        raise ValueError(f"unsupported content type {content_type!r}")
    try:
        document = json.loads(body)
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, message)  # unknown fields are refused
    except (json.JSONDecodeError, json_format.ParseError, ValueError, TypeError) as err:
        raise ValueError(f"not an ExportTraceServiceRequest: {err}") from None
    return message


def _hex_ids_to_base64(node: object) -> None:
    """OTLP/JSON writes traceId, spanId and parentSpanId in hex; protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str) and value:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_server(
    exported_repository: Path, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """One model, one core, no warmup (a cheap start), every request traced to `receiver`."""
    tracing = Tracing(rate=1, url=receiver.url, resource=parse_resource(["helm.release=test-release"]))
    with serve(
        exported_repository,
        tmp_path_factory.mktemp("traced"),
        models=[MODEL.name],
        cores=1,
        warmup=False,
        tracing=tracing,
    ) as server:
        yield server


def classify_once(server: TritonServer, photo: Path) -> None:
    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[photo.read_bytes()]], dtype=object))
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer(MODEL.triton_name, [tensor], client_timeout=60)
    assert result.as_numpy("LABELS").shape == (1, configs.TOP_K)


def wait_for_trace(receiver: OtlpReceiver) -> list[tuple[dict[str, str], trace_pb2.Span]]:
    """The spans of the one trace holding the ensemble's span and its postprocess step (ended last)."""
    deadline = time.monotonic() + EXPORT_WAIT_S
    while time.monotonic() < deadline:
        spans = receiver.spans()
        ensembles = [s for _, s in spans if s.name == MODEL.triton_name]
        if ensembles:
            trace = [(r, s) for r, s in spans if s.trace_id == ensembles[0].trace_id]
            if any(s.name == configs.postprocess_name() for _, s in trace) and len(trace) >= 8:
                return trace
        time.sleep(0.25)
    pytest.fail(f"no complete trace of {MODEL.triton_name} within {EXPORT_WAIT_S:.0f} s: got {receiver.spans()}")


def events(span: trace_pb2.Span) -> dict[str, int]:
    return {event.name: event.time_unix_nano for event in span.events}


def inside(inner: trace_pb2.Span, outer: trace_pb2.Span) -> bool:
    return (
        outer.start_time_unix_nano <= inner.start_time_unix_nano <= inner.end_time_unix_nano <= outer.end_time_unix_nano
    )


@pytest.mark.server
def test_one_ensemble_request_yields_a_span_per_step_with_queue_and_compute_times(
    traced_server: TritonServer, receiver: OtlpReceiver, sample_photos: list[Path]
) -> None:
    classify_once(traced_server, sample_photos[0])
    trace = wait_for_trace(receiver)
    spans = [span for _, span in trace]
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans), "span ids repeat"
    assert all(span.start_time_unix_nano < span.end_time_unix_nano for span in spans)

    ensemble = next(span for span in spans if span.name == MODEL.triton_name)
    root = by_id[ensemble.parent_span_id]  # the request as the gRPC frontend saw it
    assert not root.parent_span_id and inside(ensemble, root)

    steps = [configs.preprocess_name(MODEL), configs.network_name(MODEL), configs.postprocess_name()]
    step_spans = {span.name: span for span in spans if span.parent_span_id == ensemble.span_id}
    assert sorted(step_spans) == sorted(steps), f"the ensemble's children are {sorted(step_spans)}"
    compute_of = {span.parent_span_id: span for span in spans if span.name == "compute"}
    # A pipeline: a step starts once the step before has computed its output (2.51 dispatches it while the
    # earlier request is still being released, so the spans may overlap by that much) and ends after it.
    for earlier, later in itertools.pairwise(steps):
        before, after = step_spans[earlier], step_spans[later]
        assert events(compute_of[before.span_id])["COMPUTE_OUTPUT_START"] <= after.start_time_unix_nano, later
        assert before.end_time_unix_nano <= after.end_time_unix_nano, later

    for name in steps:
        step = step_spans[name]
        assert inside(step, ensemble), name
        attributes = {a.key: a.value for a in step.attributes}
        assert attributes["triton.model_name"].string_value == name
        marks = events(step)
        computes = [span for span in spans if span.parent_span_id == step.span_id]
        assert [span.name for span in computes] == ["compute"], name
        compute, work = computes[0], events(computes[0])
        # queue: QUEUE_START to COMPUTE_START; compute: COMPUTE_START to COMPUTE_END, inside the step
        assert marks["REQUEST_START"] <= marks["QUEUE_START"] <= work["COMPUTE_START"], name
        assert work["COMPUTE_START"] <= work["COMPUTE_INPUT_END"] <= work["COMPUTE_OUTPUT_START"] <= work["COMPUTE_END"]
        assert work["COMPUTE_END"] <= marks["REQUEST_END"] and inside(compute, step), name
    # The network (NextViT on CPU) computes for milliseconds: the compute span measures the real work.
    network = next(s for s in spans if s.parent_span_id == step_spans[configs.network_name(MODEL)].span_id)
    assert network.end_time_unix_nano - network.start_time_unix_nano > 1_000_000


@pytest.mark.server
def test_spans_carry_the_resource_attributes_and_the_trace_api_stays_restricted(
    traced_server: TritonServer, receiver: OtlpReceiver, sample_photos: list[Path]
) -> None:
    classify_once(traced_server, sample_photos[-1])
    resource = wait_for_trace(receiver)[0][0]
    assert resource["service.name"] == SERVICE_NAME
    assert resource["paddleclas.models"] == MODEL.triton_name
    assert resource["helm.release"] == "test-release"
    assert set(receiver.content_types) <= {"application/json", "application/x-protobuf"}
    # Tracing came from start flags: the trace API still answers only the admin key.
    url = f"http://{traced_server.http_url}/v2/trace/setting"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code in (401, 403)
    request = urllib.request.Request(url, headers=traced_server.admin_headers("http"))
    with urllib.request.urlopen(request, timeout=5) as answer:
        settings = json.load(answer)
    assert settings["trace_mode"] == "opentelemetry" and settings["trace_rate"] == "1"


def test_a_receiver_refuses_what_is_not_an_otlp_export() -> None:
    """The receiver above is a real decoder: a body that is not an export, or another encoding, is refused."""
    with pytest.raises(ValueError, match="not an ExportTraceServiceRequest"):
        decode_export(b'{"resourceSpans": [{"notAField": 1}]}', "application/json")
    with pytest.raises(ValueError, match="content type"):
        decode_export(b"{}", "text/plain")
    span_id = "0d3d709701bbb6fa"
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x", "spanId": span_id}]}]}]})
    decoded = decode_export(body.encode(), "application/json")
    assert decoded.resource_spans[0].scope_spans[0].spans[0].span_id == bytes.fromhex(span_id)


def test_trace_flags_for_both_modes() -> None:
    otel = trace_flags(Tracing(rate=10, url="http://collector:4318/v1/traces"), (("service.name", "s"), ("m", "a,b")))
    assert otel == [
        "--trace-config=mode=opentelemetry",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=10",
        "--trace-config=count=-1",
        "--trace-config=opentelemetry,url=http://collector:4318/v1/traces",
        "--trace-config=opentelemetry,resource=service.name=s",
        "--trace-config=opentelemetry,resource=m=a,b",
    ]
    given = trace_flags(Tracing(resource=(("service.name", "mine"),)), (("service.name", "default"),))
    assert [f for f in given if "service.name" in f] == ["--trace-config=opentelemetry,resource=service.name=mine"]
    triton = trace_flags(Tracing(mode="triton", rate=1, file=Path("/tmp/t.json"), log_frequency=50))
    assert triton[-2:] == ["--trace-config=triton,file=/tmp/t.json", "--trace-config=triton,log-frequency=50"]
    for bad in ({"mode": "zipkin"}, {"rate": -1}, {"url": "collector:4318"}, {"resource": (("a b", "c"),)}):
        with pytest.raises(ValueError):
            Tracing(**bad)
