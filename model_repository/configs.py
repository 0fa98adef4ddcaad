"""Triton model configurations, generated from the catalog and rendered when a server starts.

Every catalog model has five models of its own and shares its Python steps with the others:

    NAME                          ensemble, the public entry point for encoded images (wire contract in the README)
    NAME_interactive              ensemble, NAME for small interactive requests, on a preprocess instance of its own
    NAME_pixels                   ensemble, the entry point for decoded RGB frames (PIXELS, uint8 N x H x W x 3)
    NAME_crop                     ensemble, the entry point for client-side crops (CROPS, uint8 N x S x S x 3)
    NAME_network                  the exported ONNX network: CROPS (uint8) -> PROBABILITIES; it normalizes itself
    preprocess_KEY                Python backend, shared: encoded bytes -> CROPS (preprocess/ package)
    interactive_preprocess_KEY    Python backend, shared: preprocess_KEY reserved for small requests (one instance)
    pixels_preprocess_KEY         Python backend, shared: RGB frames -> CROPS (same code, decoding skipped)
    postprocess                   Python backend, shared by all: PROBABILITIES -> top-k LABELS, SCORES, CLASS_IDS

KEY names a distinct preprocessing (resize filter, resize_short, crop), so one step serves every model
with its key. The network has two variants: "production" (onnxruntime backend on GPU, or TensorRT) and
"portable" (the same ONNX file in ONNX Runtime inside the Python backend, for the local 2.51 server).

Nothing here is written at export: model_repository/layout.py renders every config from these
functions for the node's `Layout` when a server starts. Configs are dicts parsed into Triton's own
ModelConfig protobuf before they are written, so a misspelt field or a wrong type fails here.
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
    INTERACTIVE_PRIORITY,
    INTERACTIVE_SUFFIX,
    MAX_BATCH_SIZE,
    NETWORK_SUFFIX,
    PIXELS_INPUT,
    PIXELS_SUFFIX,
    PRECISION_PARAMETER,
    REFERENCE_IDS_PARAMETER,
    REFERENCE_PHOTO_PARAMETER,
    REFERENCE_SCORES_PARAMETER,
    TOP_K,
    TOP_K_OUTPUTS,
)

Variant = Literal["portable", "production"]
VARIANTS: tuple[Variant, ...] = ("portable", "production")
StepKind = Literal["ensemble", "preprocess", "pixels_preprocess", "interactive_preprocess", "network", "postprocess"]
PREPROCESS_KINDS: tuple[StepKind, ...] = ("preprocess", "pixels_preprocess", "interactive_preprocess")  # preprocess.py
DECODING_KINDS: tuple[StepKind, ...] = ("preprocess", "interactive_preprocess")  # IMAGE in: encoded bytes


# Between the steps: the uint8 crop, channels last, as the preprocess step makes it (a quarter of
# float32's bytes through shared memory and host-to-GPU copies); the network normalizes it itself.
NETWORK_INPUT = CROPS_INPUT  # the crop ensemble hands its input to the network unchanged
NORMALIZED_IMAGE = "NORMALIZED_IMAGE"
NETWORK_OUTPUT = "PROBABILITIES"
POSTPROCESS = "postprocess"

# The production network's batches join requests up to 128 images, where published throughput
# saturates (docs/capacity.md): larger batches add latency and memory, not images/s.
GPU_MAX_BATCH_SIZE = 128
GPU_MAX_QUEUE_DELAY_US = 1000  # at 8,000 img/s one millisecond gathers a batch of 8 at low load
# TensorRT plans, unverified on a GPU; rules from triton-inference-server/tensorrt_backend
# src/instance_state.cc. Profiles as (min, opt, max) batch: a small one for interactive traffic
# (served by CUDA graphs), a large one for saturating traffic. Both start at 1 because every graph
# is captured on every context of an instance (InitializeCudaGraph) and a graph outside a context's
# profile fails at load; a batch runs on the profile whose optimum is nearest (GetMostOptimizedProfile).
TRT_PROFILES: tuple[tuple[int, int, int], ...] = ((1, 8, 16), (1, 64, GPU_MAX_BATCH_SIZE))
# The graphs are the backend's default sizes (InitializeGraphSpecs); each also serves the batches
# down to the size after the previous one (graph_lower_bound; FindClosestCudaGraph pads the batch).
CUDA_GRAPH_BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
CUDA_GRAPH_BATCHES = range(1, TRT_PROFILES[0][2] + 1)  # the batches the config serves from graphs: 1-16
# STATIC (the default) gives every context the largest profile's activations; ON_PROFILE_CHANGE sizes
# each for its own profile, selected once before any graph is captured (model_state.cc).
TRT_CONTEXT_MEMORY_PARAMETER = "execution_context_allocation_strategy"
TRT_CONTEXT_MEMORY = "ON_PROFILE_CHANGE"
# trtexec's build time per profile, an estimate unverified on a GPU: fixed work plus time per GFLOP
# of one image. The chart sums it for the Deployment's progress deadline (helm/README.md, TensorRT plans).
TRT_BUILD_SECONDS_PER_PROFILE = 60
TRT_BUILD_SECONDS_PER_GFLOP = 4.0
# Triton's default pinned host memory pool; it holds batches on their way to the GPU.
TRITON_DEFAULT_PINNED_POOL_BYTES = 256 << 20

ConfigDict = dict[str, Any]


# --- names --------------------------------------------------------------------------------------


def preprocess_key(entry: ModelEntry) -> str:
    """What makes two models' crops identical: filter, short side and crop (e.g. pillow_bicubic_256_224)."""
    prep = entry.preprocessing
    return f"{prep.resize.replace('-', '_')}_{prep.resize_short}_{prep.crop}"


PREPROCESS_PREFIX = "preprocess_"
PIXELS_PREPROCESS_PREFIX = "pixels_preprocess_"
INTERACTIVE_PREPROCESS_PREFIX = "interactive_preprocess_"


def preprocess_name(entry: ModelEntry) -> str:
    return f"{PREPROCESS_PREFIX}{preprocess_key(entry)}"


def pixels_preprocess_name(entry: ModelEntry) -> str:
    return f"{PIXELS_PREPROCESS_PREFIX}{preprocess_key(entry)}"


def interactive_preprocess_name(entry: ModelEntry) -> str:
    return f"{INTERACTIVE_PREPROCESS_PREFIX}{preprocess_key(entry)}"


def network_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{NETWORK_SUFFIX}"


def interactive_network_name(entry: ModelEntry) -> str:
    """The portable network's instance reserved for `<model>_interactive` (rendered, never installed)."""
    return f"{entry.triton_name}{INTERACTIVE_SUFFIX}{NETWORK_SUFFIX}"


def installed_name(name: str) -> str:
    """The installed directory whose files a served model links: its own, or for an interactive network its model's."""
    reserved = f"{INTERACTIVE_SUFFIX}{NETWORK_SUFFIX}"
    return name.removesuffix(reserved) + NETWORK_SUFFIX if name.endswith(reserved) else name


def postprocess_name() -> str:
    return POSTPROCESS


def pixels_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{PIXELS_SUFFIX}"


def crop_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{CROP_SUFFIX}"


def interactive_ensemble_name(entry: ModelEntry) -> str:
    return f"{entry.triton_name}{INTERACTIVE_SUFFIX}"


def own_models(entry: ModelEntry) -> list[str]:
    """The models only `entry` uses: its four ensembles and its network."""
    return [
        entry.triton_name,
        interactive_ensemble_name(entry),
        pixels_ensemble_name(entry),
        crop_ensemble_name(entry),
        network_name(entry),
    ]


def shared_steps(entry: ModelEntry) -> list[str]:
    """The steps `entry` shares with every model of the same preprocessing (and, for postprocess, all)."""
    return [
        preprocess_name(entry),
        interactive_preprocess_name(entry),
        pixels_preprocess_name(entry),
        postprocess_name(),
    ]


def step_kind(name: str) -> StepKind:
    """Which kind of model a repository directory holds, from the names this module gives."""
    if name == POSTPROCESS:
        return "postprocess"
    if name.startswith(PIXELS_PREPROCESS_PREFIX):
        return "pixels_preprocess"
    if name.startswith(INTERACTIVE_PREPROCESS_PREFIX):
        return "interactive_preprocess"
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
            re.escape(INTERACTIVE_PREPROCESS_PREFIX) + ".+",
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
    instances serve the same images/s. The top-k step costs microseconds per image. The interactive
    step is not scaled with the cores: it is a reserve for small requests (load shedding, below),
    and one instance answers a 500x375 photo in milliseconds.
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
    interactive_preprocess_instances: int = 1  # not sized by for_cores: see above
    interactive_network_cpu_instances: int = 1  # portable only: the reserved network instance (load shedding)

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
            "interactive_preprocess": self.interactive_preprocess_instances,
            "pixels_preprocess": self.pixels_preprocess_instances,
            "postprocess": self.postprocess_instances,
            "network": self.network_gpu_instances if gpu else self.network_cpu_instances,
        }[kind]


# The portable network: one ONNX Runtime instance whose spinning intra-op pool has a thread per
# usable core, as fast as the in-process pipeline for a lone request; one single-threaded instance
# per core served a few percent more images/s at saturation but doubled a lone request's latency
# (docs/performance.md, "Decisions taken from earlier studies"; Model Analyzer: docs/operations.md).
PORTABLE_NETWORK_INSTANCES = 1
PORTABLE_NETWORK_SPINNING = True


# --- GPU memory ---------------------------------------------------------------------------------
# Each production network instance is one ONNX Runtime session whose CUDA arena holds weights,
# activations and cuDNN workspaces (onnxruntime_backend src/onnxruntime.cc; onnxruntime
# bfc_arena.cc never extends past its limit). gpu_mem_limit caps it at the export's graph estimate
# (export/memory.py) with a margin, so one session cannot starve the other networks; the margin is
# a choice, unverified on a GPU (docs/models.md, GPU memory).
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


# --- load shedding -------------------------------------------------------------------------------
# Every step that can fall behind (preprocess, network) has a bounded queue whose excess is refused
# at once (UNAVAILABLE, retryable), so an overloaded server answers in about a second instead of
# after the client's deadline. Why each size and timeout, with the measurements behind them:
# docs/reliability.md, "How load is shed". Any queue policy turns off 2.51's prefetching
# (docs/capacity.md, "Half-second stalls"), so postprocess, fed only by bounded networks, has none.
# A queued request whose timeout expires is refused at the batcher's next wake-up (about every
# 500 ms), so timeouts below the floor buy nothing.
QUEUE_TIMEOUT_FLOOR_US = 200_000
# Requests (1-8 images each) that may wait per instance: one per preprocess instance, so an admitted
# request starts after at most one execution; networks hold what they run in NETWORK_QUEUE_BUDGET_MS.
PREPROCESS_TIMEOUT_US = 1_000_000  # one full batch of 8 camera photos (8 x 100 ms) plus margin
# Interactive requests (a client that must hear within 2 s or be refused within 1 s) take a path of
# their own: `<model>_interactive`, whose first step, interactive_preprocess_KEY, is preprocess_KEY
# with one instance reserved for them. A flood of the largest requests keeps every instance of the
# shared step busy with 8-photo executions lasting seconds, and 2.51's batcher (core,
# src/dynamic_batch_scheduler.cc, 24.10; the same in 2.73) looks at a waiting request's timeout only
# when an execution ends or its 500 ms wait for a free instance runs out: a priority level of its own
# at that step refused 44 of 46 interactive requests, the slowest after 1.0-1.1 s (perf/drills.py
# flood). On the reserved step every execution is short, so the batcher wakes at each one's end:
# - INTERACTIVE_MAX_REQUEST_PIXELS: one 12-megapixel phone photo (4032x3024 = 12.2 MP) or eight web
#   photos; a 4000x3000 JPEG costs NextViT's step 113 ms of a core, ViT's 36 ms (docs/preprocessing.md),
#   so a request holds the instance about 0.1-0.2 s; larger requests go to `<model>`. Below
#   preprocess/slots.py's LARGE_PIXELS, so it never waits for a large-decode slot a flood holds.
# - INTERACTIVE_MAX_REQUEST_BYTES: phones write 2-5 MB per 12 MP JPEG.
# - One waiting request per instance (QUEUE_PER_INSTANCE) and INTERACTIVE_TIMEOUT_US: a request waits
#   behind at most one execution and is served at its end, or refused then if it came after the timeout;
#   only an execution outlasting the batcher's 500 ms waits delays a refusal, to about 1 s. Excess
#   arrivals are refused at once (queue full).
# - No niceness (PREPROCESS_NICENESS, below): under a flood a niced decode of even a small photo stretches
#   many times, and one instance of small requests takes at most one core from the network.
# The step has no priority levels: only interactive requests reach it (a priority above its levels
# falls to the default, core src/infer_request.cc SetPriority), and the shared preprocess steps have
# none either, since one mechanism does the job: the reserved instance. The networks keep two levels
# (with_interactive_level): the ensemble hands each step its request's priority (core,
# src/ensemble_scheduler/ensemble_scheduler.cc, 24.10 and later), so an interactive crop, from this
# step or a client's `<model>_crop`, waits in a queue a flood cannot fill and goes first. First is
# not soon enough on CPU: the portable network runs a flood request's 8 photos in 0.5-2 s, and its
# batcher, behind a queue policy, may wake 500 ms after that execution ends (docs/capacity.md,
# "Half-second stalls"); interactive answers took up to 2.8 s. So on CPU `<model>_interactive` runs
# on a network instance of its own too (interactive_network_config); a GPU runs the batch ahead in
# milliseconds, so there it shares the network (unverified on a GPU).
PRIORITY_LEVELS = 2
INTERACTIVE_TIMEOUT_US = 200_000
INTERACTIVE_MAX_REQUEST_PIXELS = 13_000_000
INTERACTIVE_MAX_REQUEST_BYTES = 6 << 20
QUEUE_PER_INSTANCE: dict[str, int] = {"preprocess": 1, "pixels_preprocess": 1, "interactive_preprocess": 1}
MIN_NETWORK_QUEUE = 2  # per instance: a stranded request and the next one (load shedding, above)
GPU_NETWORK_QUEUE_PER_INSTANCE = 256
NETWORK_QUEUE_BUDGET_MS = 1000
# Portable network cost per image on the 2-core reference machine (docs/performance.md).
PORTABLE_MS_PER_GFLOP = 14.0

# --- GPU rates (estimates, unverified on a GPU) ------------------------------------------------------
# One H100 at batch 64-128, images/s, low-high, TensorRT FP16 (anchors: helm/README.md, How many cores
# a GPU needs). The queues and timeouts use the low end.
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
    # (ort_profile) instead of one tuned for small batches.
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


# Preprocess processes lower their own CPU priority, so under overload the network and
# tritonserver's own threads keep the contended cores and excess work is refused before a decode
# (docs/reliability.md, "How load is shed"). 10 gives a CFS weight of 110 against 1024.
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
    (no queue policy, load shedding above). Unverified on a GPU: 2.51 cannot load it.
    """
    preprocess = max(
        layout.instances(kind) * MAX_BATCH_SIZE + preprocess_queue_policy(kind, layout)["max_queue_size"]
        for kind in PREPROCESS_KINDS
    )
    gpu = layout.network_gpu_instances
    network = gpu * (GPU_MAX_BATCH_SIZE + GPU_NETWORK_QUEUE_PER_INSTANCE)  # the cap of any network's queue
    return max(preprocess, network)


def preprocess_queue_policy(kind: StepKind, layout: Layout) -> ConfigDict:
    """A preprocess step's queue policy: QUEUE_PER_INSTANCE, or the layout's preprocess_queue, per instance.

    The interactive step keeps its own short queue and timeout whatever preprocess_queue says:
    batch traffic's looser deadlines are not its clients'.
    """
    instances = layout.instances(kind)
    if kind == "interactive_preprocess":
        return queue_policy(kind, INTERACTIVE_TIMEOUT_US, instances=instances)
    policy = queue_policy(kind, PREPROCESS_TIMEOUT_US, instances=instances)
    if layout.preprocess_queue:
        policy["max_queue_size"] = layout.preprocess_queue * instances
    return policy


def preprocess_batching(kind: StepKind, layout: Layout) -> ConfigDict:
    """A preprocess step's batching: one level, interactive requests having an instance of their own (above)."""
    return {"default_queue_policy": preprocess_queue_policy(kind, layout)}


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


def _network_batching(batching: ConfigDict, policy: ConfigDict) -> ConfigDict:
    """A network's batching: both priority levels under its policy, each in a queue of its own."""
    return with_interactive_level(batching | {"default_queue_policy": policy}, dict(policy))


def network_queue_policy(entry: ModelEntry, instances: int, runtime: GpuRuntime | None) -> ConfigDict:
    """The network's queue policy for the runtime that serves it (None: portable, on CPU)."""
    gpu_runtime = runtime or ONNXRUNTIME_RUNTIME  # unused on CPU
    return queue_policy(
        "network", network_timeout_us(entry, runtime), instances, runtime is not None, entry, gpu_runtime
    )


def with_interactive_level(batching: ConfigDict, interactive: ConfigDict) -> ConfigDict:
    """dynamic_batching with the interactive priority level (INTERACTIVE_PRIORITY) queued apart under `interactive`."""
    return batching | {
        "priority_levels": PRIORITY_LEVELS,
        "default_priority_level": PRIORITY_LEVELS,
        "priority_queue_policy": {str(INTERACTIVE_PRIORITY): interactive},
    }


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
# (the helm test, which mounts no repository) compares the served top-5 with them
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
    entry: ModelEntry,
    weights_note: str,
    reference: dict | None = None,
    variant: Variant = "portable",
    layout: Layout = Layout(),
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
            **({INFLIGHT_FIELD: ensemble_inflight_limit(layout)} if variant == "production" else {}),
        },
        "parameters": _params(paddleclas_name=entry.name, weights=weights_note, **reference_parameters(reference)),
    }


def pixels_ensemble_config(
    entry: ModelEntry,
    weights_note: str,
    reference: dict | None = None,
    variant: Variant = "portable",
    layout: Layout = Layout(),
) -> ConfigDict:
    """ensemble_config with its first step swapped for the pixels preprocess; every later step is shared."""
    config = copy.deepcopy(ensemble_config(entry, weights_note, reference, variant, layout))
    config |= {"name": pixels_ensemble_name(entry), "input": [_pixels_input()]}
    first = _first_step(config, entry)
    first["model_name"] = pixels_preprocess_name(entry)
    first["input_map"] = {PIXELS_INPUT: PIXELS_INPUT}
    return config


def interactive_ensemble_config(
    entry: ModelEntry,
    weights_note: str,
    reference: dict | None = None,
    variant: Variant = "portable",
    layout: Layout = Layout(),
) -> ConfigDict:
    """ensemble_config on the reserved steps: the interactive preprocess and, portable, the interactive network.

    The production network is shared: the interactive crop goes first in its queue and a GPU runs
    the batch ahead of it in milliseconds (unverified on a GPU).
    """
    config = copy.deepcopy(ensemble_config(entry, weights_note, reference, variant, layout))
    config["name"] = interactive_ensemble_name(entry)
    _first_step(config, entry)["model_name"] = interactive_preprocess_name(entry)
    if variant == "portable":
        config["ensemble_scheduling"]["step"][1]["model_name"] = interactive_network_name(entry)
    return config


def _first_step(config: ConfigDict, entry: ModelEntry) -> ConfigDict:
    """The ensemble's preprocess step, checked: a variant that swaps it must not swap another by mistake."""
    first = config["ensemble_scheduling"]["step"][0]
    if first["model_name"] != preprocess_name(entry):
        raise ValueError(f"the ensemble's first step is {first['model_name']}, expected {preprocess_name(entry)}")
    return first


def crop_ensemble_config(
    entry: ModelEntry,
    weights_note: str,
    reference: dict | None = None,
    variant: Variant = "portable",
    layout: Layout = Layout(),
) -> ConfigDict:
    """ensemble_config without its preprocess step: client-side CROPS go straight to the network.

    The crops are what the `preprocess` package makes (the client library runs it, exactly as the
    server's step does), so the answers equal the IMAGE path's. The preprocess step's parameters
    travel in this config, so a client crops with the served values (model config API, open) and
    needs no catalog. No warmup of its own: ensembles take none, and the network already warms with
    a real crop (WARMUP_CROP_FILE).
    """
    config = copy.deepcopy(ensemble_config(entry, weights_note, reference, variant, layout))
    _first_step(config, entry)
    steps = config["ensemble_scheduling"]["step"]
    steps.pop(0)
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
        "dynamic_batching": preprocess_batching("preprocess", layout),
        "instance_group": _cpu_instances(layout.preprocess_instances),
        "parameters": _params(**resolve.preprocess_parameters(entry), **{NICENESS_PARAMETER: PREPROCESS_NICENESS}),
        "model_warmup": _warmup("real_photo", [1], image_warmup),
    }


def interactive_preprocess_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """preprocess_config reserved for small interactive requests: its own instances, queue, limits and priority.

    Derived, so decoding and crop never drift from the shared step's (load shedding, above: why).
    """
    config = copy.deepcopy(preprocess_config(entry, layout))
    config |= {
        "name": interactive_preprocess_name(entry),
        "dynamic_batching": preprocess_batching("interactive_preprocess", layout),
        "instance_group": _cpu_instances(layout.interactive_preprocess_instances),
    }
    del config["parameters"][NICENESS_PARAMETER]
    config["parameters"] |= _params(
        max_request_pixels=INTERACTIVE_MAX_REQUEST_PIXELS, max_request_bytes=INTERACTIVE_MAX_REQUEST_BYTES
    )
    return config


def pixels_preprocess_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """preprocess_config with PIXELS in: derived, so its parameters never drift from it."""
    config = copy.deepcopy(preprocess_config(entry, layout))
    # Ragged: frames of different sizes may share a batch (the model handles each request's own shape).
    frame = {"data_type": "TYPE_UINT8", "dims": list(WARMUP_PIXELS_SHAPE), "input_data_file": WARMUP_PIXELS_FILE}
    config |= {
        "name": pixels_preprocess_name(entry),
        "input": [_pixels_input() | {"allow_ragged_batch": True}],
        "dynamic_batching": preprocess_batching("pixels_preprocess", layout),
        "instance_group": _cpu_instances(layout.pixels_preprocess_instances),
        "model_warmup": _warmup("real_photo_frame", [1], {PIXELS_INPUT: frame}),
    }
    return config


def network_config(
    entry: ModelEntry, variant: Variant, layout: Layout = Layout(), gpu_mem_limit: int | None = None
) -> ConfigDict:
    """One template, two runtimes: the tensors are identical in both variants, batching follows the hardware.

    gpu_mem_limit (production only): the cap of each instance's CUDA arena in bytes (ort_gpu_mem_limit of
    the export's memory record); the renderer always gives it: without it a session may take the card.
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
            "dynamic_batching": _network_batching(
                {"max_queue_delay_microseconds": GPU_MAX_QUEUE_DELAY_US},
                network_queue_policy(entry, layout.network_gpu_instances, ONNXRUNTIME_RUNTIME),
            ),
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
            "dynamic_batching": _network_batching(
                {"max_queue_delay_microseconds": 500}, network_queue_policy(entry, layout.network_cpu_instances, None)
            ),
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


def interactive_network_config(entry: ModelEntry, layout: Layout = Layout()) -> ConfigDict:
    """The portable network reserved for `<model>_interactive`: its own instances, no queue policy, no spinning.

    No policy, so 2.51's batcher prefetches: a crop arriving during an execution is batched at its
    end, not up to 500 ms later (load shedding, above). Its queue is bounded all the same: only the
    interactive preprocess step, itself bounded, feeds it. Idle threads sleep instead of spinning on
    the cores the shared network is using.
    """
    config = network_config(entry, "portable", layout)
    config["parameters"] |= _params(intra_op_spinning=0)
    return config | {
        "name": interactive_network_name(entry),
        "dynamic_batching": {},
        "instance_group": _cpu_instances(layout.interactive_network_cpu_instances),
    }


def tensorrt_network_config(entry: ModelEntry, plan_files: PlanFiles, layout: Layout = Layout()) -> ConfigDict:
    """The production network served from TensorRT plans (`plan_files`: which file each GPU loads).

    Two optimization profiles (TRT_PROFILES), both on every instance; the batcher aims for their
    optima; the small profile's batches run as CUDA graphs; each context holds only its own profile's
    activation memory. tensorrt_config_problems checks the result against the backend's rules.
    """
    config = network_config(entry, "production", layout)
    del config["backend"], config["parameters"]
    profiles = [str(index) for index in range(len(TRT_PROFILES))]
    config |= {
        "platform": "tensorrt_plan",
        "backend": "tensorrt",
        "default_model_filename": plan_files.default,
        "cc_model_filenames": dict(plan_files.by_capability),
        "dynamic_batching": _network_batching(
            {
                "preferred_batch_size": [opt for _, opt, _ in TRT_PROFILES],
                "max_queue_delay_microseconds": GPU_MAX_QUEUE_DELAY_US,
            },
            network_queue_policy(entry, layout.network_gpu_instances, ("tensorrt", plan_files.precision)),
        ),
        "instance_group": [{"kind": "KIND_GPU", "count": layout.network_gpu_instances, "profile": profiles}],
        "optimization": {"cuda": {"graphs": True, "graph_spec": cuda_graph_specs(entry)}},
        "parameters": _params(
            **{TRT_CONTEXT_MEMORY_PARAMETER: TRT_CONTEXT_MEMORY, PRECISION_PARAMETER: plan_files.precision}
        ),
        "model_warmup": _network_warmup(entry, network_warmup_batches("production", tensorrt=True)),
    }
    problems = tensorrt_config_problems(json_format.ParseDict(config, model_config_pb2.ModelConfig()))
    if problems:
        raise ValueError(f"{network_name(entry)}: " + "; ".join(problems))
    return config


@dataclass(frozen=True)
class PlanFiles:
    """The plans a TensorRT network loads: `default`, or the file of its GPU's compute capability."""

    default: str
    precision: Precision
    by_capability: tuple[tuple[str, str], ...] = ()  # (compute capability, file), Triton's cc_model_filenames


@dataclass(frozen=True)
class OrtTensorrt:
    """ONNX Runtime's TensorRT execution provider on the onnxruntime network (`python -m export NAME --ort-trt`)."""

    precision: Precision
    engine_cache: str  # engines and the timing cache; keep it on a volume so restarts reuse them
    workspace_mib: int = 4096


def ort_tensorrt_network_config(
    entry: ModelEntry, model_file: str, ort: OrtTensorrt, layout: Layout = Layout(), gpu_mem_limit: int | None = None
) -> ConfigDict:
    """The production onnxruntime network with ONNX Runtime's TensorRT provider as its accelerator.

    The precision is `model_file`'s (the export's FP16 network or model.onnx), never a provider flag:
    trt_fp16_enable sets TensorRT's FP16 builder flag, which TensorRT 11 removed. The provider gets
    one profile spanning TRT_PROFILES (ort_profile).
    """
    runtime: GpuRuntime = ("onnxruntime_tensorrt", ort.precision)
    config = network_config(entry, "production", layout, gpu_mem_limit)
    config["default_model_filename"] = model_file
    config["parameters"] |= _params(**{PRECISION_PARAMETER: ort.precision})
    config["dynamic_batching"] = _network_batching(
        {key: value for key, value in config["dynamic_batching"].items() if "priority" not in key},
        network_queue_policy(entry, layout.network_gpu_instances, runtime),
    )
    accelerator = {
        "name": "tensorrt",
        "parameters": {
            "max_workspace_size_bytes": str(ort.workspace_mib << 20),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": ort.engine_cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": ort.engine_cache,
            **ort_profile(entry),
        },
    }
    config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    return config


def ort_profile(entry: ModelEntry) -> dict[str, str]:
    """One provider profile covering every batch of TRT_PROFILES: the optimum of the widest one.

    ONNX Runtime builds several profiles but keeps its execution context on profile 0, so a batch
    outside it fails (onnxruntime tensorrt_execution_provider.cc; microsoft/onnxruntime#31624, open;
    ORT 1.19 of Triton 24.10 lacks the switching). The widest profile is the saturating traffic,
    where throughput is decided.
    """
    widest = max(TRT_PROFILES, key=lambda profile: profile[2] - profile[0])
    batches = {"min": min(low for low, _, _ in TRT_PROFILES), "opt": widest[1], "max": max(p[2] for p in TRT_PROFILES)}
    size = entry.input_size
    return {f"trt_profile_{key}_shapes": f"{NETWORK_INPUT}:{batch}x{size}x{size}x3" for key, batch in batches.items()}


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


def trt_profiles(entry: ModelEntry) -> list[dict[str, dict[str, list[int]]]]:
    """TRT_PROFILES as the network input's shapes, the numbers trtexec's profile flags are formatted from.

    [{"min": {"CROPS": [1, S, S, 3]}, "opt": {...}, "max": {...}}, ...], one dict per profile.
    """
    dims = _crops_tensor(entry)["dims"]
    return [
        {key: {NETWORK_INPUT: [batch, *dims]} for key, batch in zip(("min", "opt", "max"), profile, strict=True)}
        for profile in TRT_PROFILES
    ]


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


# --- a field of the production release that the local ModelConfig lacks -------------------------
# ModelEnsembling.max_inflight_requests exists from Triton 2.65 on; tritonclient 2.51's ModelConfig
# (this venv and the server image's render step) lacks it, so to_pbtxt writes it into the text after
# rendering the rest through ModelConfig, and parse_pbtxt leaves it out. tests/chart/test_newer_release.py
# parses the text with 2.73's ModelConfig.
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


def parse_pbtxt(text: str) -> model_config_pb2.ModelConfig:
    """Parse strictly; a max_inflight_requests the local ModelConfig cannot hold is left out (inflight_limit)."""
    if not _local_model_config_has_inflight():
        text = _INFLIGHT_LINE.sub("", text)
    return text_format.Parse(text, model_config_pb2.ModelConfig())
