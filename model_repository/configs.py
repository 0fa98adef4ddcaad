"""Triton model configurations, generated from the catalog.

Every catalog model has four models of its own and shares its Python steps with the others:

    NAME                          ensemble, the public entry point for encoded images (wire contract in the README)
    NAME_pixels                   ensemble, the entry point for decoded RGB frames (PIXELS, uint8 N x H x W x 3)
    NAME_crop                     ensemble, the entry point for client-side crops (CROPS, uint8 N x S x S x 3)
    NAME_network                  the exported ONNX network: CROPS (uint8) -> PROBABILITIES; it normalizes itself
    preprocess_KEY                Python backend, shared: encoded bytes -> CROPS (preprocess/ package)
    pixels_preprocess_KEY         Python backend, shared: RGB frames -> CROPS (same code, decoding skipped)
    postprocess                   Python backend, shared by all: PROBABILITIES -> top-k LABELS, SCORES, CLASS_IDS

KEY names a distinct preprocessing (resize filter, resize_short, crop): the catalog has four, so all 19
models are served by 8 preprocess models and one postprocess. Normalization (mean/std differ between
families) is part of each network's graph (export/normalization.py), so the crops a preprocess step
produces are the same uint8 pixels PaddleClas crops, and one step serves every model with its key.

The network config has two variants from one function: "production" (onnxruntime backend on GPU,
batches formed across requests up to GPU_MAX_BATCH_SIZE) and "portable" (the same ONNX file run by
ONNX Runtime inside the Python backend, on CPU, for the local server and CI, whose Triton build has
only the Python backend). `tensorrt_network_config` gives the production network served from
TensorRT plans (export/trt_plans.py fills in only the plan files of each GPU).

How many copies of each step run is a `Layout`, resolved where the server runs
(model_repository/layout.py), never at export: installed configs carry `Layout()`, one of each.

Configs are written as dicts, then parsed into Triton's own ModelConfig protobuf before they are
rendered, so a misspelt field or a wrong type fails here rather than at server start.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from catalog import ModelEntry, resolve
from catalog.reference import NUM_CLASSES

Variant = Literal["portable", "production"]
VARIANTS: tuple[Variant, ...] = ("portable", "production")
StepKind = Literal["ensemble", "preprocess", "pixels_preprocess", "network", "postprocess"]

# The wire contract: see README "Wire contract". Changing these breaks clients.
IMAGE_INPUT = "IMAGE"
PIXELS_INPUT = "PIXELS"  # the second entry point: decoded RGB uint8 frames
TOP_K_OUTPUTS = {"LABELS": "TYPE_STRING", "SCORES": "TYPE_FP32", "CLASS_IDS": "TYPE_INT64"}
TOP_K = 5
MAX_BATCH_SIZE = 8  # images one request may carry

# Internal tensors between the steps. The network's input is the uint8 crop, channels last, exactly
# as the preprocess step produces it (a quarter of the bytes of float32 through shared memory and
# host-to-GPU copies); NORMALIZED_IMAGE is the float32 N x 3 x S x S tensor inside the graph, after
# the normalization export prepends, and the input of the network as PaddleClas exported it.
NETWORK_INPUT = "CROPS"
NORMALIZED_IMAGE = "NORMALIZED_IMAGE"
NETWORK_OUTPUT = "PROBABILITIES"
POSTPROCESS = "postprocess"

# GPU batching, decoupled from the wire contract: the dynamic batcher joins requests of 1-8 images
# into batches of up to 128 for the production network. Published TensorRT FP16 throughput of
# ViT-B/16 and NextViT saturates between batch 64 and 128 (../shared/reference/gpu-capacity.md),
# and 128 crops of 384 px are 56 MB of uint8: larger batches add latency and memory, not images/s.
GPU_MAX_BATCH_SIZE = 128
GPU_MAX_QUEUE_DELAY_US = 1000  # at 8,000 img/s one millisecond gathers a batch of 8 at low load
# TensorRT plans: a small profile (interactive traffic, captured as CUDA graphs) and a large one
# (saturating traffic), as (min, opt, max) batch; preferred batch sizes are the optima.
TRT_PROFILES: tuple[tuple[int, int, int], ...] = ((1, 8, 16), (17, 64, GPU_MAX_BATCH_SIZE))
CUDA_GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16)  # the small profile's range; larger batches gain little from graphs
# Triton's pinned host memory holds a batch on its way to the GPU: one being copied per GPU instance
# while the next is formed. Default pool of Triton: 256 MB.
TRITON_DEFAULT_PINNED_POOL_BYTES = 256 << 20

ConfigDict = dict[str, Any]


# --- names --------------------------------------------------------------------------------------


def preprocess_key(entry: ModelEntry) -> str:
    """What makes two models' crops identical: filter, short side and crop (e.g. pillow_bicubic_256_224)."""
    prep = entry.preprocessing
    return f"{prep.resize.replace('-', '_')}_{prep.resize_short}_{prep.crop}"


def preprocess_name(entry: ModelEntry) -> str:
    return f"preprocess_{preprocess_key(entry)}"


def pixels_preprocess_name(entry: ModelEntry) -> str:
    return f"pixels_preprocess_{preprocess_key(entry)}"


def network_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_network"


def postprocess_name() -> str:
    return POSTPROCESS


def pixels_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}_pixels"


CROP_SUFFIX = "_crop"


def crop_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{CROP_SUFFIX}"


def own_models(entry: ModelEntry) -> list[str]:
    """The models only `entry` uses: its three ensembles and its network."""
    return [entry.triton_name, pixels_ensemble_name(entry), crop_ensemble_name(entry), network_name(entry)]


def shared_steps(entry: ModelEntry) -> list[str]:
    """The steps `entry` shares with every model of the same preprocessing (and, for postprocess, all)."""
    return [preprocess_name(entry), pixels_preprocess_name(entry), postprocess_name()]


def step_kind(name: str) -> StepKind:
    """Which kind of model a repository directory holds, from the names this module gives."""
    if name == POSTPROCESS:
        return "postprocess"
    if name.startswith("pixels_preprocess_"):
        return "pixels_preprocess"
    if name.startswith("preprocess_"):
        return "preprocess"
    if name.endswith("_network"):
        return "network"
    return "ensemble"


# --- capacity -----------------------------------------------------------------------------------


ZERO_MEANS_DEFAULT = ("network_cpu_threads", "preprocess_queue")  # Layout fields where 0 asks for the default


@dataclass(frozen=True)
class Layout:
    """How many copies of each step run; resolved from the serving node's cores (model_repository/layout.py).

    Every Python step instance is one process with one math thread, so a step serves at most one
    core's worth of images per instance: `for_cores` gives the encoded-image step one instance per
    core (a single busy model can use the whole node; several busy models share it through the OS
    scheduler). The PIXELS step skips decoding, the costlier half of its work, so half as many
    instances serve the same images/s. The top-k step costs microseconds per image.
    """

    preprocess_instances: int = 1
    pixels_preprocess_instances: int = 1
    postprocess_instances: int = 1
    network_cpu_instances: int = 1  # portable network; see PORTABLE_NETWORK_* below
    network_cpu_threads: int = 0  # 0: the usable cores divided by the instances, resolved by the model
    network_gpu_instances: int = 1  # production network: 2 overlaps one batch's copies with another's compute
    # Requests that may wait per instance of each preprocess step (encoded and PIXELS). 0: QUEUE_PER_INSTANCE.
    # More admits bursts of batch traffic whose deadlines are loose, and lets a benchmark keep an
    # instance busy; under overload each queued request waits a decode longer (see max_queue_size).
    preprocess_queue: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            least = 0 if name in ZERO_MEANS_DEFAULT else 1
            if value < least:
                raise ValueError(f"layout {name} must be at least {least}: {value}")

    @classmethod
    def for_cores(cls, cores: int, network_gpu_instances: int = 1) -> Layout:
        if cores < 1:
            raise ValueError(f"cores must be at least 1: {cores}")
        return cls(
            preprocess_instances=cores,
            pixels_preprocess_instances=max(1, cores // 2),
            postprocess_instances=max(1, cores // 16),
            network_cpu_instances=PORTABLE_NETWORK_INSTANCES,
            network_cpu_threads=cores,
            network_gpu_instances=network_gpu_instances,
        )

    def instances(self, kind: StepKind, gpu: bool = False) -> int:
        return {
            "preprocess": self.preprocess_instances,
            "pixels_preprocess": self.pixels_preprocess_instances,
            "postprocess": self.postprocess_instances,
            "network": self.network_gpu_instances if gpu else self.network_cpu_instances,
        }[kind]


# Portable network layout on CPU, chosen by the tuning sweep (now retired for `make analyze`; its
# figures: `git show 14987cc:docs/performance.md`, "Tuning") on 2 cores: one ONNX Runtime instance
# whose intra-op pool has a thread per usable core. Model Analyzer's network sweep on a shared
# machine (docs/operations.md) preferred 1-thread instances within its noise; unchanged until
# measured on a quiet node. At
# concurrency 1 it is as fast as the in-process pipeline (p50 +2 ms NextViT-S, -12 ms ViT-B).
# One single-threaded instance per core serves 6 % (NextViT-S) and 3 % (ViT-B) more images/s at
# saturation but doubles the p50 of a lone request (142 vs 80 ms, 414 vs 220 ms); two-threaded
# instances whose idle threads block gain nothing over one.
PORTABLE_NETWORK_INSTANCES = 1
PORTABLE_NETWORK_SPINNING = True


# --- GPU memory ---------------------------------------------------------------------------------
# Each production network instance is one ONNX Runtime session whose CUDA arena holds its weights, the
# activations of a run and cuDNN's workspaces (onnxruntime_backend src/onnxruntime.cc creates a session
# per instance; onnxruntime core/framework/bfc_arena.cc never extends an arena past its limit). The
# backend's `gpu_mem_limit` parameter (bytes, a string; onnxruntime_backend README, "CUDA Execution
# Provider") caps that arena at the export's graph estimate (export/memory.py) plus a margin: the arena
# keeps the regions of the warmup's smaller batches (1, 8, 64) beside those of 128, and convolution
# workspaces are not in the graph. Without it a session may take the whole card and starve the other
# networks. The margin is a choice, unverified on a GPU; what ONNX Runtime on CPU held in one run was
# 0.71x (NextViT) to 1.08x (ViT) of the graph activations it multiplies (docs/models.md, "GPU memory").
# arena_extend_strategy stays at its default (kNextPowerOfTwo): under a cap its last extension is
# what is left (bfc_arena.cc, Extend), and fewer, larger regions fragment less across batch sizes.
ORT_ARENA_ACTIVATION_HEADROOM = 1.5
ORT_ARENA_WORKSPACE_BYTES = 256 << 20
ORT_ARENA_ROUND_BYTES = 64 << 20  # caps in whole 64 MiB


def ort_gpu_mem_limit(weights_bytes: int, activations_bytes: int) -> int:
    """gpu_mem_limit of one production network instance from its weights and peak activations at GPU_MAX_BATCH_SIZE."""
    needed = weights_bytes + ORT_ARENA_ACTIVATION_HEADROOM * activations_bytes + ORT_ARENA_WORKSPACE_BYTES
    return math.ceil(needed / ORT_ARENA_ROUND_BYTES) * ORT_ARENA_ROUND_BYTES


def pinned_pool_bytes(entries: list[ModelEntry], network_gpu_instances: int) -> int:
    """Triton's pinned-memory pool for the largest batch of the largest served network, never below the default.

    Per GPU instance two batches in flight (one copied while the next forms), each the uint8 crops
    in and the float32 probabilities out; rounded up to a whole MiB.
    """
    largest = max(entry.input_size for entry in entries)
    batch = GPU_MAX_BATCH_SIZE * (largest * largest * 3 + NUM_CLASSES * 4)
    needed = 2 * network_gpu_instances * batch
    return max(TRITON_DEFAULT_PINNED_POOL_BYTES, math.ceil(needed / (1 << 20)) << 20)


# --- load shedding ------------------------------------------------------------------------------
# Every step that can fall behind (preprocess, network) has a bounded queue whose excess is refused
# at once: under overload a client gets UNAVAILABLE "Exceeds maximum queue size" (queue full) or
# "Request timeout expired" (waited too long) within about a second, instead of an answer after a
# minute that its deadline gave up on long before. Both are retryable; client/classify.py
# recognises them.
#
# Any queue policy costs something on 2.51: the batcher prefetches (forms the next batch while an
# execution runs) only when a step has no policy at all (no size, no timeout, no override), and
# without prefetching a queued request waits until the batcher's 500 ms fallback wake-up whenever
# it arrived while every instance was busy: the release of an instance wakes nothing. Measured on
# single-instance steps with perf_analyzer (docs/capacity.md, "Half-second stalls"): p99 0.5 s and,
# where the queue is short, refusals of requests the queue had room for (the next request of a
# client arrives before the stranded one left the queue).
#
# Triton 2.51 has no ensemble back-pressure: its ModelEnsembling message holds only `step`
# (`max_inflight_requests` arrived in later releases), so the steps' own queues are the only bound,
# and a request refused by the network has already cost its preprocessing.
#
# Measured on 2.51 (tests/server/test_overload.py; make drills): a queued request whose timeout
# expires while every instance is busy is refused at the batcher's next wake-up, 0.4-0.8 s after the
# expiry (it wakes about every 500 ms), not only when the running execution ends as public reports
# for 24.05 say. So the worst wait before a refusal is the timeout + 0.8 s, and timeouts below
# QUEUE_TIMEOUT_FLOOR_US buy nothing.
QUEUE_TIMEOUT_FLOOR_US = 200_000
# Requests (1-8 images each) that may wait per instance of a step. Measured step costs
# (docs/capacity.md, docs/performance.md, 2 cores):
# - preprocess: 1.4 ms (ViT 500x375, served) to 4 ms (NextViT 500x375) per small photo, 7-23 ms per
#   1920x1080, 36-100 ms per 4000x3000 camera photo, and several times that on cores the network
#   holds (the preprocess processes yield them: PREPROCESS_NICENESS). One request waits per
#   instance: an admitted request starts after at most one execution (up to 8 images: 0.8 s of
#   camera photos), and the rest is refused at the door, before any decode. With 8 per instance
#   the queue itself outlived the deadline: in the overload drill at 10x, requests that waited
#   there 1-2 s reached the network too late, and goodput fell to 2 % of its value at capacity (1
#   per instance: 94 %, same run conditions). A full queue at capacity costs some refusals of
#   bursts (13-15 % at 1x in that drill); batch traffic with loose deadlines may want more.
#   PREPROCESS_TIMEOUT_US lets a request wait behind one execution of camera photos (a 200 ms
#   timeout shed requests below capacity). 8 camera JPEGs (1.3 MB) are 10 MB of encoded bytes.
# - networks: the queue holds what the network runs within NETWORK_QUEUE_BUDGET_MS at its cost per
#   image, after the running batch: a request the queue admitted starts within half the 2 s an
#   interactive client waits, leaving the rest for its preprocessing and transfer. The timeout only
#   catches a stalled step: twice the time to drain a full queue of 8-image requests plus the running
#   batch (network_timeout_us), so an admitted request is never timed out for waiting its turn.
#   - portable network: one full batch of 8 is 0.64 s (NextViT-S, 80 ms per image) to 1.8 s (ViT-B,
#     220 ms) on 2 cores (PORTABLE_MS_PER_GFLOP): 4 single-image requests may wait for NextViT-S,
#     and at least MIN_NETWORK_QUEUE for any network (portable_network_queue). A queue of 8 let
#     admitted requests wait past 2 s in the overload drill; a queue of 1 refused the second of two
#     clients (ViT-B: perf_analyzer at concurrency 2 stopped at its first request), as the stranded
#     request still held the only place when the first client's next request arrived.
#   - production network (GPU): 256 requests are at most 2,048 images, 0.26 s for ViT-B at the
#     paper H100 rate (GPU_MS_PER_GFLOP: ViT-B at 8,000 img/s, an estimate until measured on a
#     GPU) and 0.9 GB of 384-px uint8 crops in the worst case.
# - postprocess: no queue policy. Its requests come only from networks whose queues are bounded,
#   and it costs about a millisecond, so a bound would never refuse; but its policy turned off
#   prefetching, and the step alone (1 instance, 4 requests in flight) answered 41 requests/s with a
#   p99 of 0.51 s where without one it answers 2,836/s with a p99 of 2.7 ms. On a GPU node this step
#   sees every image of the node.
PREPROCESS_TIMEOUT_US = 1_000_000  # one full batch of 8 camera photos (8 x 100 ms) plus margin
QUEUE_PER_INSTANCE: dict[str, int] = {"preprocess": 1, "pixels_preprocess": 1}
MIN_NETWORK_QUEUE = 2  # per instance: a stranded request and the next one (load shedding, above)
GPU_NETWORK_QUEUE_PER_INSTANCE = 256
NETWORK_QUEUE_BUDGET_MS = 1000
# Portable network cost per image on the 2-core reference machine: 80 ms for NextViT_small_224
# (5.79 GFLOPs, 13.8 ms/GFLOP) and 220 ms for ViT_base_patch16_224 (17.6 GFLOPs, 12.5 ms/GFLOP).
PORTABLE_MS_PER_GFLOP = 14.0
GPU_MS_PER_GFLOP = 1000.0 / 8_000 / 16.85  # ViT_base_patch16_224 (16.85 GFLOPs) at 8,000 img/s: estimate
# Under overload the preprocess processes would take the cores from the work nearest completion: on
# a CPU node the network (whose batches then crawl past every deadline, the collapse the overload
# drill measured), on any node tritonserver's own threads (which accept, refuse and answer health
# probes). Their processes therefore run at a lower CPU priority: idle cores are theirs at full
# speed, contended ones go to the network and the server first, so excess work waits, and is
# refused, at the front of the pipeline, before it costs a decode. Raising one's own niceness needs
# no privilege (also in a pod). 10 gives a CFS weight of 110 against the network's 1024.
NICENESS_PARAMETER = "niceness"
PREPROCESS_NICENESS = 10
QUEUE_REJECTIONS = ("Exceeds maximum queue size", "Request timeout expired")  # Triton 2.51's words


def portable_network_queue(entry: ModelEntry) -> int:
    """Requests that may wait per portable network instance: what it runs in the budget after a full batch."""
    images = NETWORK_QUEUE_BUDGET_MS / (entry.published.flops_g * PORTABLE_MS_PER_GFLOP)
    return max(MIN_NETWORK_QUEUE, math.floor(images) - MAX_BATCH_SIZE)


def max_queue_size(kind: StepKind, instances: int, gpu: bool = False, entry: ModelEntry | None = None) -> int:
    """How many requests may wait for a step: per instance, so a node with more instances queues more."""
    if kind == "ensemble":
        raise ValueError("ensembles have no queue of their own in Triton 2.51")
    if kind == "network":
        if gpu:
            per_instance = GPU_NETWORK_QUEUE_PER_INSTANCE
        elif entry is None:
            raise ValueError("the portable network's queue follows its cost: give the entry")
        else:
            per_instance = portable_network_queue(entry)
    else:
        per_instance = QUEUE_PER_INSTANCE[kind]
    return per_instance * max(1, instances)


def network_timeout_us(entry: ModelEntry, gpu: bool) -> int:
    """Twice the time to drain a full queue of 8-image requests and the running batch, never below the floor."""
    queued = max_queue_size("network", 1, gpu, entry) * MAX_BATCH_SIZE
    running = GPU_MAX_BATCH_SIZE if gpu else MAX_BATCH_SIZE
    ms_per_gflop = GPU_MS_PER_GFLOP if gpu else PORTABLE_MS_PER_GFLOP
    drain_us = (queued + running) * entry.published.flops_g * ms_per_gflop * 1000
    return max(QUEUE_TIMEOUT_FLOOR_US, math.ceil(2 * drain_us / 1000.0) * 1000)


def queue_policy(
    kind: StepKind,
    timeout_us: int = QUEUE_TIMEOUT_FLOOR_US,
    instances: int = 1,
    gpu: bool = False,
    entry: ModelEntry | None = None,
) -> ConfigDict:
    """dynamic_batching.default_queue_policy: bounded, excess refused (REJECT), clients may ask for less wait."""
    return {
        "max_queue_size": max_queue_size(kind, instances, gpu, entry),
        "timeout_action": "REJECT",
        "default_timeout_microseconds": timeout_us,
        "allow_timeout_override": True,
    }


# --- tensors ------------------------------------------------------------------------------------


def _params(**values: object) -> dict[str, dict[str, str]]:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def _crops_tensor(entry: ModelEntry) -> ConfigDict:
    size = entry.input_size
    return {"name": NETWORK_INPUT, "data_type": "TYPE_UINT8", "dims": [size, size, 3]}


def _probabilities_tensor() -> ConfigDict:
    return {"name": NETWORK_OUTPUT, "data_type": "TYPE_FP32", "dims": [NUM_CLASSES]}


def _top_k_tensors() -> list[ConfigDict]:
    return [{"name": name, "data_type": dtype, "dims": [TOP_K]} for name, dtype in TOP_K_OUTPUTS.items()]


def _pixels_input() -> ConfigDict:
    return {"name": PIXELS_INPUT, "data_type": "TYPE_UINT8", "dims": [-1, -1, 3]}


def _cpu_instances(count: int) -> list[ConfigDict]:
    return [{"kind": "KIND_CPU", "count": count}]


# --- warmup -------------------------------------------------------------------------------------
# Files under <model>/warmup/, written by model_repository/install.py from a real photograph, so a
# server that reports ready has already run every step the way a request will.
WARMUP_IMAGE_FILE = "photo.jpg.bytes"  # one BYTES element: 4-byte little-endian length, then the JPEG
WARMUP_PIXELS_FILE = "photo.rgb"  # raw RGB uint8 of WARMUP_PIXELS_SHAPE
WARMUP_PIXELS_SHAPE = (300, 451, 3)  # scikit-image's chelsea photograph, height x width x 3
WARMUP_CROP_FILE = "crop.rgb"  # raw uint8 crop of the network's input size


def _warmup(name: str, batch_sizes: list[int], inputs: dict[str, ConfigDict]) -> list[ConfigDict]:
    return [{"name": f"{name}_batch{size}", "batch_size": size, "inputs": inputs} for size in batch_sizes]


def network_warmup_batches(variant: Variant, tensorrt: bool = False) -> list[int]:
    """Batch 1 and the batcher's optima: every shape a cold engine would otherwise meet first in a request."""
    if variant == "portable":
        return [1, MAX_BATCH_SIZE]
    if tensorrt:
        return sorted({1, *(opt for _, opt, _ in TRT_PROFILES), GPU_MAX_BATCH_SIZE})
    return [1, MAX_BATCH_SIZE, 64, GPU_MAX_BATCH_SIZE]


def _network_warmup(entry: ModelEntry, batches: list[int]) -> list[ConfigDict]:
    crop = _crops_tensor(entry)
    inputs = {
        NETWORK_INPUT: {"data_type": crop["data_type"], "dims": crop["dims"], "input_data_file": WARMUP_CROP_FILE}
    }
    return _warmup("real_photo_crop", batches, inputs)


# --- configs ------------------------------------------------------------------------------------


def ensemble_config(entry: ModelEntry, weights_note: str) -> ConfigDict:
    steps = [
        (preprocess_name(entry), {IMAGE_INPUT: IMAGE_INPUT}, {NETWORK_INPUT: "crops"}),
        (network_name(entry), {NETWORK_INPUT: "crops"}, {NETWORK_OUTPUT: "probabilities"}),
        (postprocess_name(), {NETWORK_OUTPUT: "probabilities"}, {k: k for k in TOP_K_OUTPUTS}),
    ]
    return {
        "name": entry.triton_name,
        "platform": "ensemble",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [{"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": _top_k_tensors(),
        "ensemble_scheduling": {
            "step": [
                {"model_name": model, "model_version": -1, "input_map": inputs, "output_map": outputs}
                for model, inputs, outputs in steps
            ]
        },
        "parameters": _params(paddleclas_name=entry.name, weights=weights_note),
    }


def pixels_ensemble_config(entry: ModelEntry, weights_note: str) -> ConfigDict:
    """ensemble_config with its first step swapped for the pixels preprocess; every later step is shared."""
    config = copy.deepcopy(ensemble_config(entry, weights_note))
    config |= {"name": pixels_ensemble_name(entry), "input": [_pixels_input()]}
    first = config["ensemble_scheduling"]["step"][0]
    if first["model_name"] != preprocess_name(entry):
        raise ValueError(f"the ensemble's first step is {first['model_name']}, expected {preprocess_name(entry)}")
    first["model_name"] = pixels_preprocess_name(entry)
    first["input_map"] = {PIXELS_INPUT: PIXELS_INPUT}
    return config


def crop_ensemble_config(entry: ModelEntry, weights_note: str) -> ConfigDict:
    """ensemble_config without its preprocess step: client-side CROPS go straight to the network.

    The crops are what the `preprocess` package makes (the client library runs it, exactly as the
    server's step does), so the answers equal the IMAGE path's. The preprocess step's parameters
    travel in this config, so a client crops with the served values (model config API, open) and
    needs no catalog. No warmup of its own: ensembles take none, and the network already warms with
    a real crop (WARMUP_CROP_FILE).
    """
    config = copy.deepcopy(ensemble_config(entry, weights_note))
    steps = config["ensemble_scheduling"]["step"]
    first = steps.pop(0)
    if first["model_name"] != preprocess_name(entry):
        raise ValueError(f"the ensemble's first step is {first['model_name']}, expected {preprocess_name(entry)}")
    steps[0]["input_map"] = {NETWORK_INPUT: NETWORK_INPUT}
    config |= {"name": crop_ensemble_name(entry), "input": [_crops_tensor(entry)]}
    config["parameters"] |= _params(**resolve.preprocess_parameters(entry))
    return config


def preprocess_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """Encoded images -> uint8 crops, shared by every model with the same preprocess_key."""
    image_warmup = {IMAGE_INPUT: {"data_type": "TYPE_STRING", "dims": [1], "input_data_file": WARMUP_IMAGE_FILE}}
    return {
        "name": preprocess_name(entry),
        "backend": "python",
        "max_batch_size": MAX_BATCH_SIZE,
        "input": [{"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [_crops_tensor(entry)],
        "dynamic_batching": {
            "default_queue_policy": queue_policy(
                "preprocess", PREPROCESS_TIMEOUT_US, instances=layout.preprocess_instances
            )
        },
        "instance_group": _cpu_instances(layout.preprocess_instances),
        "parameters": _params(**resolve.preprocess_parameters(entry), **{NICENESS_PARAMETER: PREPROCESS_NICENESS}),
        "model_warmup": _warmup("real_photo", [1], image_warmup),
    }


def pixels_preprocess_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """preprocess_config with PIXELS in: derived, so its parameters never drift from it."""
    config = copy.deepcopy(preprocess_config(entry, layout))
    # Ragged: frames of different sizes may share a batch (the model handles each request's own shape).
    frame = {"data_type": "TYPE_UINT8", "dims": list(WARMUP_PIXELS_SHAPE), "input_data_file": WARMUP_PIXELS_FILE}
    config |= {
        "name": pixels_preprocess_name(entry),
        "input": [_pixels_input() | {"allow_ragged_batch": True}],
        "dynamic_batching": {
            "default_queue_policy": queue_policy(
                "pixels_preprocess", PREPROCESS_TIMEOUT_US, instances=layout.pixels_preprocess_instances
            )
        },
        "instance_group": _cpu_instances(layout.pixels_preprocess_instances),
        "model_warmup": _warmup("real_photo_frame", [1], {PIXELS_INPUT: frame}),
    }
    return config


def network_config(
    entry: ModelEntry, variant: Variant, layout: Layout = Layout(), gpu_mem_limit: int | None = None
) -> ConfigDict:
    """One template, two runtimes: the tensors are identical in both variants, batching follows the hardware.

    gpu_mem_limit (production only): the cap of each instance's CUDA arena in bytes (ort_gpu_mem_limit of
    the export's memory record); install always gives it, a config without it lets a session take the card.
    """
    config: ConfigDict = {
        "name": network_name(entry),
        "input": [_crops_tensor(entry)],
        "output": [_probabilities_tensor()],
        "model_warmup": _network_warmup(entry, network_warmup_batches(variant)),
    }
    if variant == "production":
        config |= {
            "backend": "onnxruntime",
            "default_model_filename": "model.onnx",
            "max_batch_size": GPU_MAX_BATCH_SIZE,
            # One engine, every batch size: let the batcher fill up to the maximum.
            "dynamic_batching": {
                "max_queue_delay_microseconds": GPU_MAX_QUEUE_DELAY_US,
                "default_queue_policy": queue_policy(
                    "network", network_timeout_us(entry, True), layout.network_gpu_instances, gpu=True, entry=entry
                ),
            },
            "instance_group": [{"kind": "KIND_GPU", "count": layout.network_gpu_instances}],
            # cuDNN's exhaustive convolution search runs for every new input shape (hundreds of ms
            # each); the heuristic choice keeps a batch size the warmup missed from stalling a request.
            "parameters": _params(cudnn_conv_algo_search=1),
        }
        if gpu_mem_limit is not None:
            config["parameters"] |= _params(gpu_mem_limit=gpu_mem_limit)
    elif variant == "portable":
        config |= {
            "backend": "python",
            "max_batch_size": MAX_BATCH_SIZE,
            "dynamic_batching": {
                "max_queue_delay_microseconds": 500,
                "default_queue_policy": queue_policy(
                    "network", network_timeout_us(entry, False), layout.network_cpu_instances, entry=entry
                ),
            },
            "instance_group": _cpu_instances(layout.network_cpu_instances),
            "parameters": _params(
                onnx_file="model.onnx",
                intra_op_threads=layout.network_cpu_threads,
                intra_op_spinning=int(PORTABLE_NETWORK_SPINNING),
            ),
        }
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if gpu_mem_limit is not None and (variant != "production" or gpu_mem_limit < ORT_ARENA_ROUND_BYTES):
        raise ValueError(f"gpu_mem_limit {gpu_mem_limit} is for production networks, at least {ORT_ARENA_ROUND_BYTES}")
    return config


def tensorrt_network_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """The production network served from TensorRT plans; the builder adds each GPU's plan files.

    Two optimization profiles (TRT_PROFILES), every instance may use both and Triton picks the one
    that fits a batch; the batcher aims for the profiles' optima; the small profile's batch sizes
    run as captured CUDA graphs (kernel launches dominate small batches).
    """
    config = network_config(entry, "production", layout)
    # The plan files depend on the GPU: the builder appends default_model_filename and
    # cc_model_filenames (export/trt_plans.py, tensorrt_config), so this config names neither.
    del config["backend"], config["parameters"], config["default_model_filename"]
    profiles = [str(index) for index in range(len(TRT_PROFILES))]
    config |= {
        "platform": "tensorrt_plan",
        "backend": "tensorrt",
        "dynamic_batching": {
            "preferred_batch_size": [opt for _, opt, _ in TRT_PROFILES],
            "max_queue_delay_microseconds": GPU_MAX_QUEUE_DELAY_US,
            "default_queue_policy": config["dynamic_batching"]["default_queue_policy"],
        },
        "instance_group": [{"kind": "KIND_GPU", "count": layout.network_gpu_instances, "profile": profiles}],
        "optimization": {"cuda": {"graphs": True, "graph_spec": [{"batch_size": b} for b in CUDA_GRAPH_BATCH_SIZES]}},
        "model_warmup": _network_warmup(entry, network_warmup_batches("production", tensorrt=True)),
    }
    return config


def trtexec_profile_shapes(entry: ModelEntry) -> list[str]:
    """trtexec flags for TRT_PROFILES on the uint8 crops input, one min/opt/max triple per profile."""
    size = entry.input_size
    flags = []
    for low, opt, high in TRT_PROFILES:
        flags += [
            f"--minShapes={NETWORK_INPUT}:{low}x{size}x{size}x3",
            f"--optShapes={NETWORK_INPUT}:{opt}x{size}x{size}x3",
            f"--maxShapes={NETWORK_INPUT}:{high}x{size}x{size}x3",
        ]
    return flags


def postprocess_config(layout: Layout = Layout()) -> ConfigDict:
    """Top-k over the 1000 ImageNet classes: the same for every catalog model, so one model serves all."""
    probabilities = _probabilities_tensor()
    warmup_input = {
        NETWORK_OUTPUT: {"data_type": probabilities["data_type"], "dims": probabilities["dims"], "random_data": True}
    }
    return {
        "name": postprocess_name(),
        "backend": "python",
        "max_batch_size": GPU_MAX_BATCH_SIZE,
        "input": [probabilities],
        "output": _top_k_tensors(),
        "dynamic_batching": {},  # no queue policy, so 2.51 prefetches (load shedding, "postprocess")
        "instance_group": _cpu_instances(layout.postprocess_instances),
        "parameters": _params(top_k=TOP_K, labels_file="labels.txt"),
        "model_warmup": _warmup("random_probabilities", [1], warmup_input),
    }


def step_config(
    name: str, entry: ModelEntry | None, variant: Variant, layout: Layout, gpu_mem_limit: int | None = None
) -> ConfigDict:
    """The config of a shared step or a network by its repository name (install and tests use it)."""
    kind = step_kind(name)
    if kind == "postprocess":
        return postprocess_config(layout)
    assert entry is not None, f"{name} needs a catalog entry"
    if kind == "preprocess":
        return preprocess_config(entry, layout)
    if kind == "pixels_preprocess":
        return pixels_preprocess_config(entry, layout)
    if kind == "network":
        return network_config(entry, variant, layout, gpu_mem_limit)
    raise ValueError(f"{name} is an ensemble; use ensemble_config or pixels_ensemble_config")


def to_pbtxt(config: ConfigDict) -> str:
    """Render through Triton's ModelConfig message: unknown fields or bad values raise here."""
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)


def parse_pbtxt(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())
