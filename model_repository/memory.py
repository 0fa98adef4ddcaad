"""What bounds the server's memory, in one place: the allocator it runs, its frontend's flags, the pod formula.

The launcher (model_repository/server.py, flags.py) and the Helm chart take their allocator, its settings and
the frontend's flags from here, the chart's memory request and limit follow `pod_memory_bytes`
(tests/chart/test_chart_memory.py ties them), and the chart's gateway enforces REQUESTS_IN_FLIGHT and
gateway_body_bytes (model_repository/gateway.py). Figures and their commands: docs/reliability.md, "Memory".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import catalog
from model_repository import configs
from model_repository.configs import Layout
from model_repository.paths import NETWORK_FIGURES
from preprocess.decoding import DEFAULT_MAX_PIXELS, DEFAULT_MAX_REQUEST_BYTES
from preprocess.slots import LARGE_PIXELS, LARGE_SLOTS

MIB = 1 << 20

# --- the allocator --------------------------------------------------------------------------------

# The NVIDIA image preloads nothing itself but ships tcmalloc (gperftools) and jemalloc, and sets
# TCMALLOC_RELEASE_RATE=200 (server repository, build.py); the chart preloads server.malloc into
# tritonserver, and the Python backend forks every step with tritonserver's environment
# (python_backend, src/stub_launcher.cc), so the steps run it too. Production runs tcmalloc, so the
# local server does as well: Debian's libtcmalloc-minimal4 (`make setup` installs it) is the same
# allocator without the heap profiler.
MALLOCS = ("tcmalloc", "jemalloc", "system")
DEFAULT_MALLOC = "tcmalloc"
# Library file names, local (Debian) and in the NVIDIA image (Ubuntu); both multiarch x86-64.
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")
LOCAL_LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
IMAGE_LIBRARIES = {
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so",  # libjemalloc-dev's link, which the image installs
}
# The allocator's settings for tritonserver. tcmalloc keeps every freed span by default (a flood of
# camera-photo requests left tritonserver 600-700 MB above idle for good, with or without the
# image's release rate); aggressive decommit returns a span when it is freed. The frontend's buffers
# are a request's bytes copied once, so the page faults cost little there; the decoding steps turn
# it off for themselves and hand memory back when idle instead (preprocess/allocator.py).
# jemalloc: purge freed pages within a second from a background thread.
MALLOC_ENV = {
    "tcmalloc": {"TCMALLOC_AGGRESSIVE_DECOMMIT": "true"},
    "jemalloc": {"MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"},
    "system": {},
}


MALLOC_VARIABLES = ("LD_PRELOAD", *{name for settings in MALLOC_ENV.values() for name in settings})


def malloc_library(name: str) -> str | None:
    """The local file to preload for `name` (None for the system malloc); an error says how to install it."""
    if name not in MALLOCS:
        raise ValueError(f"malloc must be one of {', '.join(MALLOCS)}, not {name!r}")
    if name == "system":
        return None
    for directory in LIBRARY_DIRS:
        for library in LOCAL_LIBRARIES[name]:
            if Path(directory, library).is_file():
                return str(Path(directory, library))
    package = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}[name]
    raise FileNotFoundError(
        f"no {name} library on this machine ({', '.join(LOCAL_LIBRARIES[name])}): `make setup` installs it "
        f"(apt-get install {package}), or serve with --malloc system"
    )


def malloc_environment(name: str) -> dict[str, str]:
    """LD_PRELOAD and the allocator's settings for tritonserver (and so for every step it forks)."""
    library = malloc_library(name)
    return ({"LD_PRELOAD": library} if library else {}) | MALLOC_ENV[name]


# --- the frontend -----------------------------------------------------------------------------------

# tritonserver's gRPC frontend keeps up to --grpc-infer-allocation-pool-size (default 8) finished
# request states for reuse, each still holding the whole request it carried, image bytes included:
# State::Release leaves request_ alone, and only State::Reset clears it when the state is reused
# (server repository, src/grpc/infer_handler.h, 2.51.0 and 2.73.0). Up to 8 requests of the largest
# size stay allocated after a burst; 0 frees each request's state once it is answered.
GRPC_STATE_POOL = 0


def frontend_flags() -> list[str]:
    """tritonserver flags that bound what its frontend keeps between requests (2.51 and 2.73 alike)."""
    return [f"--grpc-infer-allocation-pool-size={GRPC_STATE_POOL}"]


# --- the bound: pod memory = f(instances, max request size, requests in flight) ---------------------

# Proportional set sizes measured on the local server (docs/reliability.md, "Memory"), rounded up:
# tritonserver without models' own memory, and each Python step process once warm and idle.
SERVER_IDLE_MIB = 64
STEP_IDLE_MIB = {
    "preprocess": 64,
    "pixels_preprocess": 64,
    "interactive_preprocess": 64,
    "postprocess": 32,
}
# A portable network process (ONNX Runtime on CPU, warm: its warmup runs a batch of 8) grows with its
# model, ViT's to about twice its weights (measured: docs/reliability.md, "Memory"). Bound per process:
# the stub and ONNX Runtime, the weights twice (the initializers and MLAS's prepacked copies of the
# matrix weights, which ViT is made of), and the activations of a batch of 8 (the export's graph estimate).
NETWORK_PROCESS_MIB = 128
NETWORK_WEIGHT_COPIES = 2


def portable_network_bytes(model: str) -> int:
    """One portable network process of catalog `model`, warm, at most (the chart's graph figures, export/memory.py)."""
    figures = json.loads(NETWORK_FIGURES.read_text(encoding="utf-8"))
    model_figures = figures["models"][catalog.get(model).triton_name]
    activations = model_figures["activationsMiB"] * configs.MAX_BATCH_SIZE / figures["batch"]
    weights = NETWORK_WEIGHT_COPIES * model_figures["weightsMiB"]
    return round((NETWORK_PROCESS_MIB + weights + activations) * MIB)


# While an image is decoded and resized a preprocess process holds 7 bytes per pixel (decoding.py,
# DEFAULT_MAX_PIXELS): RGB and either the decoder's BGR or Pillow's RGBX copy.
DECODE_BYTES_PER_PIXEL = 7
# Each request in flight is held whole by the frontend, and once more as the step's own objects while
# a preprocess instance works on it (its copy in the Python backend's pool is inside /dev/shm, counted
# there). Every request a step holds is one of those in flight, so the batches add a copy of the
# requests in flight, not one per instance.
REQUEST_COPIES = 2
# What the frontend may hold at once: requests received whole and not yet answered or refused. Triton
# bounds neither connections nor streams (2.51 and 2.73), so the chart's gateway enforces it
# (model_repository/gateway.py: nginx's limit_conn counts each HTTP/2 stream); the local server's
# flood drill uses 40 connections.
REQUESTS_IN_FLIGHT = 64
# Around a request's image bytes (every entry's, PIXELS included: preprocess/decoding.py), its body
# carries tensor names, shapes, parameters and the 4-byte length of each BYTES element; the gateway
# admits bodies up to the request limit plus this. A JSON request without the binary tensor extension
# is several times its bytes and is refused: send binary tensors.
ENVELOPE_BYTES = 64 * 1024
# The gateway container's own memory: nginx idle is 12 MB RSS (Debian's 1.22.1, master and one worker,
# measured with gateway.nginx_conf), plus a few 64 KiB buffers per request in flight (bodies stream through).
GATEWAY_MIB = 64
# gpu mode, estimates unverified on a GPU: tritonserver with CUDA and the onnxruntime backend, and
# the networks' host memory (at most their ONNX files: 7 GB for all 19 models).
GPU_SERVER_GIB = 3
GPU_NETWORKS_GIB = 7


@dataclass(frozen=True)
class Deployment:
    """What the pod's memory depends on: its step processes and its request limits."""

    preprocess_instances: int  # encoded-image instances, every preprocessing together
    pixels_preprocess_instances: int
    postprocess_instances: int
    network_cpu_bytes: int  # every portable network process (the interactive ones too); 0 in gpu mode
    interactive_preprocess_instances: int  # each decodes at most configs.INTERACTIVE_MAX_REQUEST_PIXELS at once
    shm_bytes: int  # the /dev/shm volume's size limit (the Python backend's pools live there)
    requests_in_flight: int = REQUESTS_IN_FLIGHT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # encoded images or PIXELS frames alike
    max_pixels: int = DEFAULT_MAX_PIXELS
    large_pixels: int = LARGE_PIXELS
    large_slots: int = LARGE_SLOTS
    extra_bytes: int = 0  # gpu mode: server with CUDA, networks, pinned pool, response cache

    @classmethod
    def of(cls, layout: Layout, models: list[str], gpu: bool, shm_bytes: int, **limits: int) -> Deployment:
        """A server running `layout` for these catalog models: steps once per preprocessing, networks per model."""
        keys = len({configs.preprocess_key(catalog.get(name)) for name in models})
        networks = layout.network_cpu_instances + layout.interactive_network_cpu_instances
        return cls(
            preprocess_instances=keys * layout.preprocess_instances,
            pixels_preprocess_instances=keys * layout.pixels_preprocess_instances,
            postprocess_instances=layout.postprocess_instances,
            network_cpu_bytes=0 if gpu else networks * sum(portable_network_bytes(name) for name in models),
            interactive_preprocess_instances=keys * layout.interactive_preprocess_instances,
            shm_bytes=shm_bytes,
            **limits,
        )


def gateway_body_bytes(max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> int:
    """The largest request body the gateway forwards: the per-request limit of every entry plus its envelope."""
    return max_request_bytes + ENVELOPE_BYTES


def step_bytes(deployment: Deployment) -> int:
    """Every Python step process idle, plus one decode on every preprocess instance at the most it decodes at once.

    A shared instance decodes up to the large-image size without a slot; an interactive one at most
    its request limit, which is below that size, so it never takes a slot (configs.py, load shedding).
    """
    d = deployment
    idle = (
        d.preprocess_instances * STEP_IDLE_MIB["preprocess"]
        + d.pixels_preprocess_instances * STEP_IDLE_MIB["pixels_preprocess"]
        + d.interactive_preprocess_instances * STEP_IDLE_MIB["interactive_preprocess"]
        + d.postprocess_instances * STEP_IDLE_MIB["postprocess"]
    ) * MIB + d.network_cpu_bytes
    shared = (d.preprocess_instances + d.pixels_preprocess_instances) * d.large_pixels
    interactive = d.interactive_preprocess_instances * configs.INTERACTIVE_MAX_REQUEST_PIXELS
    return idle + DECODE_BYTES_PER_PIXEL * (shared + interactive)


def pod_memory_bytes(deployment: Deployment) -> int:
    """The pod's bound; each term is one line of docs/reliability.md, "Memory"."""
    d = deployment
    requests = REQUEST_COPIES * d.requests_in_flight * gateway_body_bytes(d.max_request_bytes)
    large = d.large_slots * DECODE_BYTES_PER_PIXEL * (d.max_pixels - d.large_pixels)
    return SERVER_IDLE_MIB * MIB + requests + step_bytes(d) + large + d.shm_bytes + d.extra_bytes
