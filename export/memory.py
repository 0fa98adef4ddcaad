"""GPU memory of one served network instance, estimated from its ONNX graph, and ONNX Runtime's CPU check of it.

    python -m export memory --repository DIR                    # record it for every network of DIR
    python -m export memory --repository DIR --check-cpu NAME   # ONNX Runtime on CPU against the estimate (batch 8)
    python -m export memory --repository DIR --chart            # the chart's files/network-memory.json from DIR

A production network instance is one ONNX Runtime session on the CUDA execution provider, whose arena
holds its weights, the activations of a run and cuDNN's workspaces (model_repository/configs.py, "GPU
memory", which turns these figures into the arena's `gpu_mem_limit`). The estimate of one instance at
the largest batch the batcher forms (configs.GPU_MAX_BATCH_SIZE):

- weights: the bytes of every initializer of the served graph;
- activations: the largest sum of tensors alive at once when the nodes run in their stored
  (topological) order, each tensor alive from the node that makes it to the last node that reads it
  (graph inputs from the start, outputs to the end), every shape from shape inference with the batch
  fixed (_infer). The graph is the exported one: ONNX Runtime's in-place reuse (an output written over
  a dying input) holds less, its kernels' own scratch buffers more, neither in the graph.

ONNX Runtime on CPU runs the same graph with the same planner, so its peak memory at a small batch
checks the activation figure (check_on_cpu): NextViT held less than the estimate, ViT about 8 % more
(docs/models.md), both inside the cap's margin (configs.ORT_ARENA_ACTIVATION_HEADROOM). Nothing here
ran on a GPU (GPU_NOTE).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import catalog
from export.errors import ExportError, MemoryEstimateError
from model_repository import configs, install
from model_repository.paths import NETWORK_FIGURES

MIB = 1 << 20
# Initializers larger than this become graph inputs of the same type and shape before shape inference
# (it needs their shapes, never their values), so a 1.2 GB network is not copied through it; smaller
# ones stay, as they may hold the shapes a Reshape reads.
VALUE_NEEDED_BELOW_BYTES = 4096
MAX_FOLD_ROUNDS = 8  # rounds of folding shape arithmetic into constants (_infer); ViT needs one
FOLD_MAX_ELEMENTS = 1024  # only shape-sized results are folded, never an activation
METHOD = "graph estimate: initializers + peak live activations, ONNX shape inference at a fixed batch"
GPU_NOTE = "unverified on a GPU"
CPU_CHECK_BATCH = 8


@dataclass(frozen=True)
class NetworkMemory:
    """One network instance's memory at `batch`, in bytes (the export record's `memory`)."""

    batch: int
    weights_bytes: int
    activations_bytes: int
    peak_node: str  # the node at which the most activation bytes are alive
    largest_tensor: str
    largest_tensor_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activations_bytes

    def as_record(self) -> dict[str, object]:
        return asdict(self) | {"total_bytes": self.total_bytes, "method": METHOD, "gpu": GPU_NOTE}


def _dtype_bytes(elem_type: int) -> int:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def _tensor_bytes(value: object) -> int | None:
    """Bytes of a tensor whose every dimension is known, else None."""
    tensor = value.type.tensor_type  # type: ignore[attr-defined]
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):  # type: ignore[attr-defined]
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if any(d is None for d in dims):
        return None
    return math.prod(dims) * _dtype_bytes(tensor.elem_type)  # type: ignore[arg-type]


def _fix_batch(value: object, batch: int) -> None:
    dim = value.type.tensor_type.shape.dim[0]  # type: ignore[attr-defined]
    dim.Clear()
    dim.dim_value = batch


def _lighten(model: object, batch: int) -> tuple[int, set[str]]:
    """Prepare `model` in place for shape inference at `batch`; the bytes of its initializers and their names."""
    from onnx import helper

    graph = model.graph  # type: ignore[attr-defined]
    weights, names, kept = 0, set(), []
    for init in graph.initializer:
        size = math.prod(init.dims) * _dtype_bytes(init.data_type)
        weights += size
        names.add(init.name)
        if size < VALUE_NEEDED_BELOW_BYTES:
            kept.append(init)
        else:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    small = [type(init)() for init in kept]
    for copy, init in zip(small, kept, strict=True):
        copy.CopyFrom(init)
    del graph.initializer[:]
    graph.initializer.extend(small)
    del graph.value_info[:]
    for value in [*graph.input, *graph.output]:
        if value.name not in names:
            _fix_batch(value, batch)
    return weights, names


def _infer(model: object) -> object:
    """The graph with every shape inferred at the fixed batch.

    ONNX's shape inference with data propagation follows most shape arithmetic, not all: ViT's
    class-token Expand takes a shape computed from Shape(x) through Reshape and Max, which it leaves
    open. So each round folds the small computations whose inputs are known (a Shape of a tensor whose
    shape is known, or constants) into constants, evaluated node by node by ONNX's reference runtime,
    and infers again, until nothing more folds. Folded tensors are a few integers each, not activations.
    """
    from onnx import shape_inference

    for _ in range(MAX_FOLD_ROUNDS):
        graph = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True).graph  # type: ignore[attr-defined]
        if all(_tensor_bytes(value) is not None for value in [*graph.value_info, *graph.output]):
            return graph
        if not _fold_shape_arithmetic(model, graph):
            return graph
    return graph


def _fold_shape_arithmetic(model: object, inferred: object) -> bool:
    """Replace, in `model`, every node whose outputs are computable and small by constants; True if any was."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph  # type: ignore[attr-defined]
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes = {value.name: value for value in [*inferred.input, *inferred.value_info]}  # type: ignore[attr-defined]
    folded, kept = [], []
    for node in graph.node:
        feeds = None
        if node.op_type == "Shape" and node.input[0] in shapes and _tensor_bytes(shapes[node.input[0]]) is not None:
            dims = [d.dim_value for d in shapes[node.input[0]].type.tensor_type.shape.dim]
            results = [ReferenceEvaluator(node).run(None, {node.input[0]: _shaped(dims)})[0]]
        elif (node.input or node.op_type == "Constant") and all(name in values for name in node.input if name):
            feeds = {name: values[name] for name in node.input if name}
            results = ReferenceEvaluator(node).run(None, feeds)
        else:
            kept.append(node)
            continue
        if any(result.size > FOLD_MAX_ELEMENTS for result in results):
            kept.append(node)
            continue
        for name, result in zip(node.output, results, strict=True):
            values[name] = result
            folded.append(numpy_helper.from_array(result, name))
    if not folded:
        return False
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    return True


def _shaped(dims: list[int]) -> object:
    """An array of the given shape without its bytes (Shape reads only the shape)."""
    import numpy as np

    return np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=dims, strides=[0] * len(dims))


def estimate(model_path: Path, batch: int = configs.GPU_MAX_BATCH_SIZE) -> NetworkMemory:
    """Weights and peak live activations of the network at `batch` (see the module docstring)."""
    import onnx

    model = onnx.load(str(model_path))
    weights, initializers = _lighten(model, batch)
    graph = _infer(model)
    del model
    subgraphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(attr.type in subgraphs for node in graph.node for attr in node.attribute):
        raise MemoryEstimateError(f"{model_path}: subgraphs (If, Loop, Scan) are not modelled by the liveness walk")
    sizes: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name in initializers:
            continue
        size = _tensor_bytes(value)
        if size is None:
            raise MemoryEstimateError(f"{model_path}: shape inference left the size of {value.name!r} open")
        sizes[value.name] = size
    unsized = [name for node in graph.node for name in node.output if name and name not in sizes]
    if unsized:
        raise MemoryEstimateError(f"{model_path}: shape inference gave no shape for {', '.join(unsized[:5])}")
    return _walk(graph, sizes, batch, weights)


def _walk(graph: object, sizes: dict[str, int], batch: int, weights: int) -> NetworkMemory:
    """Peak of the bytes alive at each node: a tensor lives from its producer (or the start) to its last reader."""
    nodes = list(graph.node)  # type: ignore[attr-defined]
    last_read: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name in sizes:
                last_read[name] = index
    for value in graph.output:  # type: ignore[attr-defined]
        last_read[value.name] = len(nodes)  # handed back after the run
    live = {value.name: sizes[value.name] for value in graph.input if value.name in sizes}  # type: ignore[attr-defined]
    peak, peak_node = sum(live.values()), "(inputs)"
    for index, node in enumerate(nodes):
        live |= {name: sizes[name] for name in node.output if name in sizes}
        current = sum(live.values())
        if current > peak:
            peak, peak_node = current, node.name or f"#{index} {node.op_type}"
        for name in [name for name in live if last_read.get(name, index) <= index]:
            del live[name]
    largest = max(sizes, key=sizes.__getitem__)
    return NetworkMemory(batch, weights, peak, peak_node, largest, sizes[largest])


# --- the check on ONNX Runtime's CPU provider ----------------------------------------------------
# A fresh process per measurement. Its arena and memory patterns off, every tensor is its own
# allocation, and with glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_, which also
# stops glibc from raising it) every tensor larger than that is mapped when made and unmapped when
# freed: the resident set follows the bytes alive. Its peak over one run (VmHWM, reset before the run
# through /proc/self/clear_refs, Linux 4.0+) less the resident set before the run is what the run
# held at once. One intra-op thread, so no per-thread scratch; the first run at batch 1 loads kernels.
_PROBE = r"""
import json, sys
import numpy as np, onnxruntime as ort

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

path, batch, level = sys.argv[1], int(sys.argv[2]), sys.argv[3]
options = ort.SessionOptions()
options.enable_cpu_mem_arena = False
options.enable_mem_pattern = False
options.intra_op_num_threads = options.inter_op_num_threads = 1
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
(feed,) = session.get_inputs()
shape = [1, *feed.shape[1:]]
session.run(None, {feed.name: np.zeros(shape, np.uint8)})
crops = np.zeros([batch, *shape[1:]], np.uint8)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
session.run(None, {feed.name: crops})
print(json.dumps({"held_bytes": status("VmHWM") - before, "onnxruntime": ort.__version__}))
"""
CPU_LEVELS = {"exported graph": "ORT_DISABLE_ALL", "served optimizations": "ORT_ENABLE_ALL"}


def _probe(model_path: Path, batch: int, level: str) -> dict[str, object]:
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model_path), str(batch), level],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the ONNX Runtime CPU probe of {model_path} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_on_cpu(model_path: Path, batch: int = CPU_CHECK_BATCH) -> dict[str, object]:
    """Activation bytes ONNX Runtime on CPU held in one run at `batch`, against the graph estimate at that batch.

    Twice: the exported graph as stored (ORT_DISABLE_ALL: what the walk models) and with the
    optimizations a served session applies (ORT_ENABLE_ALL, the CPU provider's fusions).
    """
    estimated = estimate(model_path, batch).activations_bytes
    check: dict[str, object] = {"batch": batch, "estimated_activations_bytes": estimated}
    for label, level in CPU_LEVELS.items():
        probe = _probe(model_path, batch, level)
        held = int(probe["held_bytes"])  # type: ignore[call-overload]
        check[label] = {"held_bytes": held, "estimate_over_held": round(estimated / held, 3)}
        check["onnxruntime"] = probe["onnxruntime"]
    check["method"] = "resident set peak of one run, ONNX Runtime CPU, arena and memory patterns off, 1 thread"
    from perf.machine import cpu_flags, facts  # the machine beside the number, as every measurement records it

    check["cpu"] = {"model": facts()["cpu_model"], "flags": cpu_flags()}
    return check


# --- records of a repository, and the chart's copy of them ----------------------------------------


def network_dirs(repository: Path) -> dict[str, Path]:
    """Catalog name -> network directory, for every exported network of `repository`."""
    found = {}
    for record_path in sorted(repository.glob(f"*_network/{install.EXPORT_RECORD}")):
        found[json.loads(record_path.read_text("utf-8"))["model"]] = record_path.parent
    return found


def _update_record(network: Path, key: str, value: dict[str, object], under: str | None = None) -> None:
    """Set record[key] (or record[under][key]) of one network's export record, rewriting the file atomically."""
    path = network / install.EXPORT_RECORD
    record = json.loads(path.read_text("utf-8"))
    (record[under] if under else record)[key] = value
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    temporary.replace(path)


def record_repository(repository: Path) -> dict[str, NetworkMemory]:
    """The estimate at GPU_MAX_BATCH_SIZE written into every export record of `repository` (no re-export)."""
    figures = {}
    for name, network in network_dirs(repository).items():
        figures[name] = estimate(network / "1" / "model.onnx")
        before = json.loads((network / install.EXPORT_RECORD).read_text("utf-8")).get("memory", {})
        kept = {"cpu_check": before["cpu_check"]} if "cpu_check" in before else {}  # the graph's, not the margin's
        _update_record(network, "memory", figures[name].as_record() | kept)
    return figures


def chart_figures(repository: Path) -> dict[str, object]:
    """The chart's per-model figures (files/network-memory.json) from a repository holding every model's record."""
    networks = network_dirs(repository)
    records = {name: json.loads((d / install.EXPORT_RECORD).read_text("utf-8")) for name, d in networks.items()}
    missing = [name for name in catalog.CATALOG if "memory" not in records.get(name, {})]
    if missing:
        raise MemoryEstimateError(f"{repository} has no memory record of {', '.join(missing)}: export them first")
    models = {}
    for entry in catalog.CATALOG.values():
        memory = records[entry.name]["memory"]
        if memory["batch"] != configs.GPU_MAX_BATCH_SIZE:
            raise MemoryEstimateError(f"{entry.name}'s memory record is at batch {memory['batch']}: record it again")
        models[entry.triton_name] = chart_entry(entry.name, memory)
    return {
        "comment": f"generated by `python -m export memory --chart` from export records; {METHOD}; {GPU_NOTE}",
        "batch": configs.GPU_MAX_BATCH_SIZE,
        "models": models,
    }


def chart_entry(name: str, memory: dict) -> dict[str, object]:
    """One model's line of the chart's file: what the chart sums (gpuMemLimitMiB, per instance) and what it shows."""
    limit = configs.ort_gpu_mem_limit(memory["weights_bytes"], memory["activations_bytes"])
    return {
        "name": name,
        "gpuMemLimitMiB": limit // MIB,
        "weightsMiB": math.ceil(memory["weights_bytes"] / MIB),
        "activationsMiB": math.ceil(memory["activations_bytes"] / MIB),
    }


def chart_text(figures: dict[str, object]) -> str:
    return json.dumps(figures, indent=2) + "\n"


def readme_table(figures: dict | None = None) -> str:
    """helm/README.md's block: each model's cap per instance from the chart's file, and the sums the chart checks."""
    figures = figures or json.loads(NETWORK_FIGURES.read_text("utf-8"))
    models = figures["models"]
    rows = [
        "| model | gpu_mem_limit per instance, MiB | of which weights | activations at batch 128 |",
        "|---|--:|--:|--:|",
    ]
    for line in sorted(models.values(), key=lambda line: -line["gpuMemLimitMiB"]):
        rows.append(
            f"| `{line['name']}` | {line['gpuMemLimitMiB']:,} | {line['weightsMiB']:,} | {line['activationsMiB']:,} |"
        )
    by_size = {
        "all 19": list(models),
        "the 224-px models": [n for n in models if n.endswith(("_224", "_224_ssld"))],
        "the 384-px models": [n for n in models if n.endswith(("_384", "_384_ssld"))],
    }
    for label, names in by_size.items():
        total = sum(models[n]["gpuMemLimitMiB"] for n in names)
        rows.append(f"| **{label}** ({len(names)}), one instance each, before gpu.reservedMiB | {total:,} | | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True, help="a repository of exported networks")
    parser.add_argument("--check-cpu", nargs="+", metavar="NAME", help="check these models on ONNX Runtime's CPU")
    parser.add_argument("--batch", type=int, default=CPU_CHECK_BATCH, help="batch of the CPU check")
    parser.add_argument(
        "--chart", action="store_true", help=f"write {NETWORK_FIGURES.relative_to(NETWORK_FIGURES.parents[3])}"
    )
    args = parser.parse_args(argv)
    networks = network_dirs(args.repository)
    if not networks:
        print(f"error: {args.repository} holds no exported network", file=sys.stderr)
        return 1
    try:
        if args.chart:
            NETWORK_FIGURES.write_text(chart_text(chart_figures(args.repository)), "utf-8")
            print(f"wrote {NETWORK_FIGURES}")
            return 0
        if args.check_cpu:
            for name in args.check_cpu:
                network = networks[catalog.get(name).name]
                check = check_on_cpu(network / "1" / "model.onnx", args.batch)
                _update_record(network, "cpu_check", check, under="memory")
                print(json.dumps({name: check}))
            return 0
        for name, figure in record_repository(args.repository).items():
            print(f"{name}: weights {figure.weights_bytes / MIB:,.0f} MiB, activations at batch {figure.batch} "
                  f"{figure.activations_bytes / MIB:,.0f} MiB (peak at {figure.peak_node})")  # fmt: skip
        print("production networks carry gpu_mem_limit from their next start (configs are rendered at start)")
    except (ExportError, ValueError, KeyError, FileExistsError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
