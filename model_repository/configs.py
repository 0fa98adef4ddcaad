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
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from catalog import ModelEntry, get, resolve
from catalog.reference import NUM_CLASSES
from client.contract import (  # the wire contract: defined there so the client needs no server-side package
    CROP_SUFFIX,
    CROPS_INPUT,
    IMAGE_INPUT,
    MAX_BATCH_SIZE,
    NETWORK_SUFFIX,
    PIXELS_INPUT,
    PIXELS_SUFFIX,
    PRECISION_PARAMETER,  # noqa: F401 (read as configs.PRECISION_PARAMETER by export/tensorrt.py)
    REFERENCE_IDS_PARAMETER,
    REFERENCE_PHOTO_PARAMETER,
    REFERENCE_SCORES_PARAMETER,
    TOP_K,
    TOP_K_OUTPUTS,
)

Variant = Literal["portable", "production"]
VARIANTS: tuple[Variant, ...] = ("portable", "production")
StepKind = Literal["ensemble", "preprocess", "pixels_preprocess", "network", "postprocess"]


# Internal tensors between the steps. The network's input is the uint8 crop, channels last, exactly
# as the preprocess step produces it (a quarter of the bytes of float32 through shared memory and
# host-to-GPU copies); NORMALIZED_IMAGE is the float32 N x 3 x S x S tensor inside the graph, after
# the normalization export prepends, and the input of the network as PaddleClas exported it.
NETWORK_INPUT = CROPS_INPUT  # the crop ensemble hands its input to the network unchanged
NORMALIZED_IMAGE = "NORMALIZED_IMAGE"
NETWORK_OUTPUT = "PROBABILITIES"
POSTPROCESS = "postprocess"

# GPU batching, decoupled from the wire contract: the dynamic batcher joins requests of 1-8 images
# into batches of up to 128 for the production network. Published TensorRT FP16 throughput of
# ViT-B/16 and NextViT saturates between batch 64 and 128 (published anchors: docs/capacity.md),
# and 128 crops of 384 px are 56 MB of uint8: larger batches add latency and memory, not images/s.
GPU_MAX_BATCH_SIZE = 128
GPU_MAX_QUEUE_DELAY_US = 1000  # at 8,000 img/s one millisecond gathers a batch of 8 at low load
# TensorRT plans (unverified on a GPU; every rule below follows triton-inference-server/tensorrt_backend,
# src/instance_state.cc and src/model_state.cc): a small profile (interactive traffic, served by CUDA
# graphs) and a large one (saturating traffic), as (min, opt, max) batch; preferred batch sizes are the
# optima. An instance holds one execution context per profile of its group and captures every
# graph_spec on every context (InitializeCudaGraph); a graph batch outside a context's profile fails to
# set its shape and logs "Failed to set cuda graph shape" at load (BuildCudaGraph). So both profiles
# start at batch 1 and hold every graph. A batch runs on the context whose optimum is nearest among the
# profiles that admit it (GetMostOptimizedProfile, Manhattan distance to opt): 1-16 still go to the
# small profile, 17-128 to the large one, as when the large profile started at 17.
TRT_PROFILES: tuple[tuple[int, int, int], ...] = ((1, 8, 16), (1, 64, GPU_MAX_BATCH_SIZE))
# Every batch of the small profile runs as a CUDA graph (kernel launches dominate small batches). The
# graphs are the sizes the backend captures by default (InitializeGraphSpecs: 1, 2, 3, 4, 6, 8, 12, 16),
# each with graph_lower_bound at the size after the previous graph (model_config.proto GraphSpec): a
# batch of 5 launches the graph of 6 (FindClosestCudaGraph), whose sixth row is uninitialized and
# dropped; every operation of these networks works per image, so the other rows are unaffected.
CUDA_GRAPH_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
CUDA_GRAPH_BATCHES = range(1, TRT_PROFILES[0][2] + 1)  # the batches the config serves from graphs: 1-16
# Execution context memory (backend parameter execution_context_allocation_strategy; model_state.cc
# accepts "STATIC", the default, and "ON_PROFILE_CHANGE", nothing else). STATIC gives every context the
# activation memory of the largest profile, so an instance holds the batch-128 activations twice.
# ON_PROFILE_CHANGE sizes a context for its own profile; the backend selects each context's profile
# once, when it creates the context (setOptimizationProfileAsync), before any graph is captured, so
# the memory a graph captured never moves.
TRT_CONTEXT_MEMORY_PARAMETER = "execution_context_allocation_strategy"
TRT_CONTEXT_MEMORY = "ON_PROFILE_CHANGE"
# How long trtexec takes to build one network's plan: an estimate, unverified on a GPU (none of these
# networks has a published build time). trtexec times candidate kernels of every layer for every
# optimization profile, so a build grows with the profiles and with the work per image. Reports of
# single-profile FP16 builds of ViT-B-sized ONNX networks on datacenter GPUs range over a few minutes,
# and far longer on small GPUs or at higher builder optimization levels (NVIDIA/TensorRT issue 3075:
# hours on a T4). Per profile: a minute of parsing and fixed work, plus 4 s per GFLOP of one image;
# ViT_base_patch16_224 gets 255 s, ViT_large_patch16_384 1,518 s, all 19 models 1.9 h. The chart
# sums it over the served models (helm/paddleclas-triton/files/trt-build-seconds.json) for the
# Deployment's progress deadline.
TRT_BUILD_SECONDS_PER_PROFILE = 60
TRT_BUILD_SECONDS_PER_GFLOP = 4.0
# Triton's pinned host memory holds a batch on its way to the GPU: one being copied per GPU instance
# while the next is formed. Default pool of Triton: 256 MB.
TRITON_DEFAULT_PINNED_POOL_BYTES = 256 << 20

ConfigDict = dict[str, Any]


# --- names --------------------------------------------------------------------------------------


def preprocess_key(entry: ModelEntry) -> str:
    """What makes two models' crops identical: filter, short side and crop (e.g. pillow_bicubic_256_224)."""
    prep = entry.preprocessing
    return f"{prep.resize.replace('-', '_')}_{prep.resize_short}_{prep.crop}"


PREPROCESS_PREFIX = "preprocess_"
PIXELS_PREPROCESS_PREFIX = "pixels_preprocess_"


def preprocess_name(entry: ModelEntry) -> str:
    return f"{PREPROCESS_PREFIX}{preprocess_key(entry)}"


def pixels_preprocess_name(entry: ModelEntry) -> str:
    return f"{PIXELS_PREPROCESS_PREFIX}{preprocess_key(entry)}"


def network_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{NETWORK_SUFFIX}"


def postprocess_name() -> str:
    return POSTPROCESS


def pixels_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{PIXELS_SUFFIX}"


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
    if name.startswith(PIXELS_PREPROCESS_PREFIX):
        return "pixels_preprocess"
    if name.startswith(PREPROCESS_PREFIX):
        return "preprocess"
    if name.endswith(NETWORK_SUFFIX):
        return "network"
    return "ensemble"


def step_name_pattern() -> str:
    """A regular expression matching every step's name and no ensemble's, the rule `step_kind` reads.

    For the monitoring queries (model_repository/monitoring.py): PromQL anchors `=~` at both ends,
    so the pattern is written for a full match (Python: re.fullmatch).
    """
    return "|".join(
        (
            re.escape(POSTPROCESS),
            re.escape(PIXELS_PREPROCESS_PREFIX) + ".+",
            re.escape(PREPROCESS_PREFIX) + ".+",
            ".+" + re.escape(NETWORK_SUFFIX),
        )
    )


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
# and a request refused by the network has already cost its preprocessing. The production ensembles
# (Triton 2.73) carry the bound: ensemble_inflight_limit, below.
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
#   - production network (GPU): the same rule at the rate of the runtime the config is served by
#     (gpu_ms_per_image: estimates, unverified on a GPU), at most GPU_NETWORK_QUEUE_PER_INSTANCE
#     (256 requests, 2,048 images, 0.9 GB of 384-px uint8 crops in the worst case). The default
#     onnxruntime network runs FP32: ViT_base_patch16_224 queues 35 requests, ViT_large_patch16_384
#     MIN_NETWORK_QUEUE (at TensorRT FP16 rates: 256 and 33). The rates are one H100's: a slower GPU
#     drains the same queue later, and its timeout (twice the drain) leaves it twice the time.
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

# --- GPU rates (estimates, unverified on a GPU) ------------------------------------------------------
# One H100 at batch 64-128, images/s, low-high, TensorRT FP16: published anchors (timm's TensorRT FP16
# results, 7,800-8,400 ViT-B/16 img/s on an RTX PRO 6000 Blackwell; H100 dense FP16, 989 TFLOPS, at
# 30-45 % use; NextViT about 2x ViT-B in PaddleClas's V100 table). The queues and timeouts use the low
# end, the cores-per-GPU table in helm/README.md both ends.
H100_TENSORRT_FP16_IMAGES_PER_S: dict[str, tuple[int, int]] = {
    "NextViT_small_224": (12_000, 20_000),
    "ViT_base_patch16_224": (8_000, 12_000),
}
GpuBackend = Literal["onnxruntime", "onnxruntime_tensorrt", "tensorrt"]
Precision = Literal["fp16", "fp32"]
GpuRuntime = tuple[GpuBackend, Precision]
# Each way of running a network on the GPU as a fraction of TensorRT FP16, low-high (estimates):
GPU_SPEED_VS_TENSORRT_FP16: dict[GpuRuntime, tuple[float, float]] = {
    ("tensorrt", "fp16"): (1.0, 1.0),
    # TensorRT builds FP32 with TF32 tensor cores unless told not to (BuilderFlag kTF32 is on by
    # default, trtexec --noTF32 turns it off); H100 dense TF32 is half its dense FP16.
    ("tensorrt", "fp32"): (0.4, 0.5),
    # The same engines inside ONNX Runtime's TensorRT provider, one profile spanning batches 1-128
    # (export/tensorrt.py, ort_profile) instead of one tuned for small batches.
    ("onnxruntime_tensorrt", "fp16"): (0.8, 1.0),
    ("onnxruntime_tensorrt", "fp32"): (0.35, 0.5),
    # ONNX Runtime's CUDA provider: one cuDNN/cuBLAS kernel per ONNX operator, attention unfused (the
    # exported graph has none of its fused transformer operators); low end plain FP32 on CUDA cores
    # (H100: 67 of 989 dense TFLOPS), high end TF32 tensor cores.
    ("onnxruntime", "fp32"): (0.1, 0.35),
    ("onnxruntime", "fp16"): (0.3, 0.6),
}
# The production onnxruntime config runs the exported FP32 graph on the CUDA provider.
ONNXRUNTIME_RUNTIME: GpuRuntime = ("onnxruntime", "fp32")
# tensorrt.pbtxt is written at export, before anyone picks the plan's precision (trtPlans.precision):
# its queue follows the slower FP32 plan, so an FP16 plan's queue drains in about half the time.
TENSORRT_RUNTIME: GpuRuntime = ("tensorrt", "fp32")


def gpu_images_per_s(model: str, runtime: GpuRuntime) -> tuple[int, int]:
    """Images/s of one H100 for an anchor model on `runtime`, low-high (estimate, unverified on a GPU)."""
    (low, high), (slow, fast) = H100_TENSORRT_FP16_IMAGES_PER_S[model], GPU_SPEED_VS_TENSORRT_FP16[runtime]
    return round(low * slow), round(high * fast)


def gpu_ms_per_image(entry: ModelEntry, runtime: GpuRuntime) -> float:
    """One image of `entry` on one H100 at the slow end of `runtime`: the costliest GFLOP of the anchors.

    NextViT_small_224 spends twice ViT_base_patch16_224's time per GFLOP at their low rates, so
    every model is priced at NextViT's: the estimate errs towards longer queue waits.
    """
    ms_per_gflop = max(
        1000.0 / gpu_images_per_s(model, runtime)[0] / get(model).published.flops_g
        for model in H100_TENSORRT_FP16_IMAGES_PER_S
    )
    return entry.published.flops_g * ms_per_gflop


# Under overload the preprocess processes would take the cores from the work nearest completion: on
# a CPU node the network (whose batches then crawl past every deadline, the collapse the overload
# drill measured), on any node tritonserver's own threads (which accept, refuse and answer health
# probes). Their processes therefore run at a lower CPU priority: idle cores are theirs at full
# speed, contended ones go to the network and the server first, so excess work waits, and is
# refused, at the front of the pipeline, before it costs a decode. Raising one's own niceness needs
# no privilege (also in a pod). 10 gives a CFS weight of 110 against the network's 1024.
NICENESS_PARAMETER = "niceness"
PREPROCESS_NICENESS = 10


def portable_network_queue(entry: ModelEntry) -> int:
    """Requests that may wait per portable network instance: what it runs in the budget after a full batch."""
    images = NETWORK_QUEUE_BUDGET_MS / (entry.published.flops_g * PORTABLE_MS_PER_GFLOP)
    return max(MIN_NETWORK_QUEUE, math.floor(images) - MAX_BATCH_SIZE)


def gpu_network_queue(entry: ModelEntry, runtime: GpuRuntime) -> int:
    """Requests that may wait per GPU network instance: what `runtime` runs in the budget after a full batch."""
    images = NETWORK_QUEUE_BUDGET_MS / gpu_ms_per_image(entry, runtime) - GPU_MAX_BATCH_SIZE
    return min(GPU_NETWORK_QUEUE_PER_INSTANCE, max(MIN_NETWORK_QUEUE, math.floor(images / MAX_BATCH_SIZE)))


def max_queue_size(
    kind: StepKind,
    instances: int,
    gpu: bool = False,
    entry: ModelEntry | None = None,
    runtime: GpuRuntime = ONNXRUNTIME_RUNTIME,
) -> int:
    """How many requests may wait for a step: per instance, so a node with more instances queues more."""
    if kind == "ensemble":
        raise ValueError("ensembles have no queue of their own in Triton 2.51")
    if kind == "network":
        if entry is None:
            raise ValueError("a network's queue follows its cost: give the entry")
        per_instance = gpu_network_queue(entry, runtime) if gpu else portable_network_queue(entry)
    else:
        per_instance = QUEUE_PER_INSTANCE[kind]
    return per_instance * max(1, instances)


def ensemble_inflight_limit(layout: Layout) -> int:
    """ensemble_scheduling.max_inflight_requests of the production ensembles: the most requests any step admits.

    Triton 2.73 counts, per step of an ensemble, the requests of that ensemble dispatched to the step
    and not yet answered, shared by all its requests (common: protobuf/model_config.proto; core:
    src/ensemble_scheduler/ensemble_scheduler.cc StepInflightRequestLimiter, 25.11, shared since
    26.04), and at the limit the request *waits* (up to kMutexTimeoutSeconds, 300 s) instead of being
    refused. So the limit is what the busiest step admits on its own, one execution per instance (a
    batch of single-image requests) plus its bounded queue: the steps' queue policies go on refusing
    excess at once, as on 2.51, and the limit bounds what nothing else bounds, the postprocess step
    (no queue policy, load shedding above). Recomputed for the node's layout when the serving copy
    is rendered (layout.sized_config). Unverified on a GPU: 2.51 cannot load it.
    """
    preprocess = layout.preprocess_instances * MAX_BATCH_SIZE + max_queue_size(
        "preprocess", layout.preprocess_instances
    )
    pixels = layout.pixels_preprocess_instances * MAX_BATCH_SIZE + max_queue_size(
        "pixels_preprocess", layout.pixels_preprocess_instances
    )
    gpu = layout.network_gpu_instances
    network = gpu * (GPU_MAX_BATCH_SIZE + GPU_NETWORK_QUEUE_PER_INSTANCE)  # the cap of any network's queue
    return max(preprocess, pixels, network)


def network_ms_per_image(entry: ModelEntry, runtime: GpuRuntime | None) -> float:
    """Milliseconds per image of the network: the portable measurement (runtime None) or a GPU estimate."""
    return entry.published.flops_g * PORTABLE_MS_PER_GFLOP if runtime is None else gpu_ms_per_image(entry, runtime)


def network_timeout_us(entry: ModelEntry, runtime: GpuRuntime | None) -> int:
    """Twice the time to drain a full queue of 8-image requests and the running batch, never below the floor.

    `runtime` is what the config is served by (None: the portable network on CPU), so the request
    at the back of a full queue is never timed out for waiting its turn on that runtime.
    """
    gpu = runtime is not None
    queued = max_queue_size("network", 1, gpu, entry, runtime or ONNXRUNTIME_RUNTIME) * MAX_BATCH_SIZE
    running = GPU_MAX_BATCH_SIZE if gpu else MAX_BATCH_SIZE
    drain_us = (queued + running) * network_ms_per_image(entry, runtime) * 1000
    return max(QUEUE_TIMEOUT_FLOOR_US, math.ceil(2 * drain_us / 1000.0) * 1000)


def network_queue_policy(entry: ModelEntry, instances: int, runtime: GpuRuntime | None) -> ConfigDict:
    """The network's queue policy for the runtime that serves it (None: portable, on CPU)."""
    gpu_runtime = runtime or ONNXRUNTIME_RUNTIME  # unused on CPU
    return queue_policy(
        "network", network_timeout_us(entry, runtime), instances, runtime is not None, entry, gpu_runtime
    )


def queue_policy(
    kind: StepKind,
    timeout_us: int = QUEUE_TIMEOUT_FLOOR_US,
    instances: int = 1,
    gpu: bool = False,
    entry: ModelEntry | None = None,
    runtime: GpuRuntime = ONNXRUNTIME_RUNTIME,
) -> ConfigDict:
    """dynamic_batching.default_queue_policy: bounded, excess refused (REJECT), clients may ask for less wait."""
    return {
        "max_queue_size": max_queue_size(kind, instances, gpu, entry, runtime),
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


# --- the smoke photograph's reference answer -------------------------------------------------------
# Recorded by the export (export/parity.py: Paddle Inference on the server's warmup JPEG) and written
# into every ensemble's parameters, which the open model-config API serves: `python -m client smoke`
# (the helm test, which mounts no repository) compares the served top-5 with them.
# (REFERENCE_*_PARAMETER). PRECISION_PARAMETER, read from the network's config by the smoke check to
# pick its tolerance (catalog.models.SERVED_ATOL; absent: fp32), is written by plans (export/trt_plans.py,
# which keeps its own copy: it runs without this project in the TensorRT image) and --ort-trt.


def reference_parameters(reference: dict | None) -> dict[str, str]:
    """The export record's `reference` as ensemble parameters (none for a record written before it existed)."""
    if not reference:
        return {}
    return {
        REFERENCE_PHOTO_PARAMETER: str(reference["photo_sha256"]),
        REFERENCE_IDS_PARAMETER: " ".join(str(int(c)) for c in reference["class_ids"]),
        REFERENCE_SCORES_PARAMETER: " ".join(repr(float(s)) for s in reference["scores"]),
    }


# --- configs ------------------------------------------------------------------------------------


def ensemble_config(
    entry: ModelEntry, weights_note: str, reference: dict | None = None, variant: Variant = "portable"
) -> ConfigDict:
    """The public ensemble: preprocess, network, postprocess; production ones bound their in-flight requests."""
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
            ],
            **({INFLIGHT_FIELD: ensemble_inflight_limit(Layout())} if variant == "production" else {}),
        },
        "parameters": _params(paddleclas_name=entry.name, weights=weights_note, **reference_parameters(reference)),
    }


def pixels_ensemble_config(
    entry: ModelEntry, weights_note: str, reference: dict | None = None, variant: Variant = "portable"
) -> ConfigDict:
    """ensemble_config with its first step swapped for the pixels preprocess; every later step is shared."""
    config = copy.deepcopy(ensemble_config(entry, weights_note, reference, variant))
    config |= {"name": pixels_ensemble_name(entry), "input": [_pixels_input()]}
    first = config["ensemble_scheduling"]["step"][0]
    if first["model_name"] != preprocess_name(entry):
        raise ValueError(f"the ensemble's first step is {first['model_name']}, expected {preprocess_name(entry)}")
    first["model_name"] = pixels_preprocess_name(entry)
    first["input_map"] = {PIXELS_INPUT: PIXELS_INPUT}
    return config


def crop_ensemble_config(
    entry: ModelEntry, weights_note: str, reference: dict | None = None, variant: Variant = "portable"
) -> ConfigDict:
    """ensemble_config without its preprocess step: client-side CROPS go straight to the network.

    The crops are what the `preprocess` package makes (the client library runs it, exactly as the
    server's step does), so the answers equal the IMAGE path's. The preprocess step's parameters
    travel in this config, so a client crops with the served values (model config API, open) and
    needs no catalog. No warmup of its own: ensembles take none, and the network already warms with
    a real crop (WARMUP_CROP_FILE).
    """
    config = copy.deepcopy(ensemble_config(entry, weights_note, reference, variant))
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
                "default_queue_policy": network_queue_policy(entry, layout.network_gpu_instances, ONNXRUNTIME_RUNTIME),
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
                "default_queue_policy": network_queue_policy(entry, layout.network_cpu_instances, None),
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
    run as captured CUDA graphs (kernel launches dominate small batches); each context holds its own
    profile's activation memory (TRT_CONTEXT_MEMORY). tensorrt_config_problems checks it on the way out.
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
            "default_queue_policy": network_queue_policy(entry, layout.network_gpu_instances, TENSORRT_RUNTIME),
        },
        "instance_group": [{"kind": "KIND_GPU", "count": layout.network_gpu_instances, "profile": profiles}],
        "optimization": {"cuda": {"graphs": True, "graph_spec": cuda_graph_specs(entry)}},
        "parameters": _params(**{TRT_CONTEXT_MEMORY_PARAMETER: TRT_CONTEXT_MEMORY}),
        "model_warmup": _network_warmup(entry, network_warmup_batches("production", tensorrt=True)),
    }
    problems = tensorrt_config_problems(json_format.ParseDict(config, model_config_pb2.ModelConfig()))
    if problems:
        raise ValueError(f"{network_name(entry)}: " + "; ".join(problems))
    return config


def cuda_graph_specs(entry: ModelEntry) -> list[ConfigDict]:
    """One graph per CUDA_GRAPH_BATCH_SIZES, each also serving the batches down to the size after the previous one.

    The input shapes are spelt out because the backend's graph key holds them: with no shapes it keys
    a graph by the profile's optimum at the graph's batch, and a smaller batch then never matches the
    lower bound (tensorrt_backend src/instance_state.cc, SetCudaGraphShape and FindClosestCudaGraph).
    """
    crop = {NETWORK_INPUT: {"dim": _crops_tensor(entry)["dims"]}}
    lows = (1, *(size + 1 for size in CUDA_GRAPH_BATCH_SIZES[:-1]))
    return [
        {"batch_size": size, "input": crop, "graph_lower_bound": {"batch_size": low, "input": crop}}
        for low, size in zip(lows, CUDA_GRAPH_BATCH_SIZES, strict=True)
    ]


def tensorrt_config_problems(
    config: model_config_pb2.ModelConfig,
    profiles: tuple[tuple[int, int, int], ...] = TRT_PROFILES,
    claimed: range = CUDA_GRAPH_BATCHES,
) -> list[str]:
    """What would make the tensorrt backend log errors at load or miss a graph (empty: none). Unverified on a GPU.

    Follows triton-inference-server/tensorrt_backend: every graph is captured on every context of an
    instance, one context per profile of its group, the first profile when the group names none
    (InitializeCudaGraph, InitializeExecuteContexts); a graph serves the batches from its lower bound
    to its own size (FindClosestCudaGraph); the context memory strategy is a model parameter
    (ModelState::ParseParameters). `profiles` are the plan's (min, opt, max) batches by index.
    """
    problems = []
    strategy = config.parameters[TRT_CONTEXT_MEMORY_PARAMETER].string_value
    if strategy != TRT_CONTEXT_MEMORY:
        problems.append(f"{TRT_CONTEXT_MEMORY_PARAMETER} is {strategy!r}, expected {TRT_CONTEXT_MEMORY!r}")
    specs = list(config.optimization.cuda.graph_spec) if config.optimization.cuda.graphs else []
    inputs = {tensor.name: list(tensor.dims) for tensor in config.input}
    for spec in specs:
        low = spec.graph_lower_bound.batch_size if spec.HasField("graph_lower_bound") else spec.batch_size
        if not 1 <= low <= spec.batch_size:
            problems.append(f"graph {spec.batch_size}: lower bound {low} is not between 1 and the graph's batch")
        shapes = [{name: list(shape.dim) for name, shape in spec.input.items()}]
        if spec.HasField("graph_lower_bound"):
            shapes.append({name: list(shape.dim) for name, shape in spec.graph_lower_bound.input.items()})
        if any(shape != inputs for shape in shapes):
            problems.append(f"graph {spec.batch_size}: input shapes {shapes} are not the inputs' {inputs}")
        for group in config.instance_group:
            for name in list(group.profile) or ["0"]:
                first, _, last = profiles[int(name)]
                if not first <= low <= spec.batch_size <= last:
                    problems.append(f"graph {low}-{spec.batch_size} outside profile {name} ({first}-{last})")
    served = {batch for spec in specs for batch in _graph_batches(spec)}
    missing = [batch for batch in claimed if batch not in served]
    if missing:
        problems.append(f"batches {missing} have no CUDA graph")
    return problems


def _graph_batches(spec: model_config_pb2.ModelOptimizationPolicy.Cuda.GraphSpec) -> range:
    low = spec.graph_lower_bound.batch_size if spec.HasField("graph_lower_bound") else spec.batch_size
    return range(low, spec.batch_size + 1)


def trt_build_seconds(entry: ModelEntry) -> int:
    """Estimated seconds trtexec takes for `entry`'s plan with every profile (unverified on a GPU)."""
    per_profile = TRT_BUILD_SECONDS_PER_PROFILE + TRT_BUILD_SECONDS_PER_GFLOP * entry.published.flops_g
    return math.ceil(len(TRT_PROFILES) * per_profile)


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


# --- a field of the production release that the local ModelConfig lacks -------------------------
# ModelEnsembling.max_inflight_requests (ensemble_inflight_limit) exists from Triton 2.65 (25.11) on;
# tritonclient 2.51's model_config_pb2, which this venv and the server image's render step use, has no
# such field. So to_pbtxt writes it into the text after rendering the rest through ModelConfig, and
# parse_pbtxt leaves it out before parsing (inflight_limit reads it from the text); the text is checked
# by the 2.73 ModelConfig in tests/chart/test_newer_release.py. Portable ensembles never carry it.
INFLIGHT_FIELD = "max_inflight_requests"
_INFLIGHT_LINE = re.compile(rf"^[ \t]*{INFLIGHT_FIELD}:[ \t]*(\d+)[ \t]*\n", re.MULTILINE)
ENSEMBLE_BLOCK = "ensemble_scheduling {\n"


def _local_model_config_has_inflight() -> bool:
    return INFLIGHT_FIELD in model_config_pb2.ModelEnsembling.DESCRIPTOR.fields_by_name


def with_inflight_limit(text: str, limit: int | None) -> str:
    """`text` (a rendered config) with ensemble_scheduling's max_inflight_requests set to `limit` (None: none)."""
    text = _INFLIGHT_LINE.sub("", text)
    if limit is None:
        return text
    start = text.index(ENSEMBLE_BLOCK)
    end = text.index("\n}\n", start)  # the block's closing brace: text_format indents everything inside
    return f"{text[:end]}\n  {INFLIGHT_FIELD}: {int(limit)}{text[end:]}"


def inflight_limit(text: str) -> int | None:
    """The max_inflight_requests a config text sets, or None."""
    match = _INFLIGHT_LINE.search(text)
    return int(match.group(1)) if match else None


def to_pbtxt(config: ConfigDict) -> str:
    """Render through Triton's ModelConfig message: unknown fields or bad values raise here."""
    limit = None
    if not _local_model_config_has_inflight():
        config = copy.deepcopy(config)
        limit = config.get("ensemble_scheduling", {}).pop(INFLIGHT_FIELD, None)
    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return with_inflight_limit(text_format.MessageToString(message), limit)


def message_to_pbtxt(message: model_config_pb2.ModelConfig, inflight: int | None = None) -> str:
    """A parsed config rendered back, with the max_inflight_requests parse_pbtxt left out (inflight_limit)."""
    text = text_format.MessageToString(message)
    return text if _local_model_config_has_inflight() else with_inflight_limit(text, inflight)


def parse_pbtxt(text: str) -> model_config_pb2.ModelConfig:
    """Parse strictly; a max_inflight_requests the local ModelConfig cannot hold is left out (inflight_limit)."""
    if not _local_model_config_has_inflight():
        text = _INFLIGHT_LINE.sub("", text)
    return text_format.Parse(text, model_config_pb2.ModelConfig())
