"""Benchmark (not a test): the CPU time a served image costs per tier, what a set of models costs, how warm
"ready" is. `make bench-capacity` runs `python -m perf capacity --out build/perf/capacity --publish`.

One run, one figure at a time: CPU ms per served image of each family, tier and JPEG size (perf.cpu_cost:
tritonserver on one core, an open-loop load on another, CPU time from /proc; perf.preprocess_bench's JPEGs)
and the cores one H100 needs at that cost; processes and memory of a server with one model per preprocessing
key; time to ready and first requests with model_warmup and without (served throughput: `make perf`).
--quick checks the run end to end (seconds per point, exact tier, small JPEGs): not figures for the docs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import catalog
from model_repository import procfs
from model_repository.server import TritonServer
from perf import cpu_cost, machine, serving, study
from perf import preprocess_bench as bench
from perf.input_data import image_tensor
from perf.study import table

EVERY_KEY = (*bench.MODELS, "NextViT_small_384", "ViT_base_patch16_384")  # one model per preprocessing key
SIZES = ((500, 375), (4000, 3000))  # a web photo and a 12 MP camera photo: the ends of bench.SIZES
DEFAULT_TIERS = tuple(cpu_cost.TIERS)


def footprint(server: TritonServer) -> dict:
    """Python step models, their processes (the networks' too on CPU) and resident memory of the whole server."""
    assert server.process is not None and server.serving is not None
    processes = procfs.descendants(server.process.pid)
    return {
        "models": server.served_models,
        "layout": server.serving["layout"],
        "python_step_models": server.serving["python_step_models"],
        "python_processes": sum(procfs.STUB in p.command for p in processes),
        "resident_mb": round(sum(p.resident_kib for p in processes) / 1024),
    }


def first_requests(server: TritonServer, ready_s: float, photo: bytes) -> dict:
    """The first request of each model after ready, against the steady p50 of the next 15."""
    import tritonclient.grpc as grpcclient

    tensor = image_tensor(grpcclient, photo)
    result: dict = {"warmup": server.warmup, "ready_s": round(ready_s, 2), "models": {}}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for name in bench.MODELS:
            times = []
            for _ in range(16):
                begin = time.perf_counter()
                client.infer(catalog.get(name).triton_name, [tensor])
                times.append((time.perf_counter() - begin) * 1000)
            p50 = round(statistics.median(times[1:]), 1)
            result["models"][name] = {"first_ms": round(times[0], 1), "steady_p50_ms": p50}
    return result


def run(
    repository: Path, out: Path, quick: bool, tiers: list[cpu_cost.Tier], progress: Callable[[str], None] = print
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": machine.utc_now(), "machine": machine.facts(), "jpegs": bench.BENCHMARK_JPEGS}
    jpegs = {size: bench.photo_jpegs(size) for size in (SIZES[:1] if quick else SIZES)}
    keys = bench.MODELS if quick else EVERY_KEY
    serving.ensure_exported(repository, [catalog.get(name) for name in keys], progress)
    progress("CPU time per served image, per tier")
    foreign = machine.ForeignCpu()
    results["cpu"] = cpu_cost.measure(repository, list(bench.MODELS), tiers, jpegs, out / "cpu", quick, progress)
    results["cpu"]["other_cpu_percent"] = round(foreign.stop(), 1)
    progress("processes and memory, one model per preprocessing key")
    with TritonServer.on_free_ports(repository, out / "tritonserver-keys.log", models=list(keys)) as server:
        time.sleep(2)
        results["footprint"] = footprint(server)
    progress("time to ready and first request, without and with warmup")
    results["readiness"] = []
    for warmup in (False, True):
        log = out / f"tritonserver-warmup-{warmup}.log"
        server = TritonServer.on_free_ports(repository, log, models=list(bench.MODELS), warmup=warmup)
        start = time.monotonic()
        with server:
            results["readiness"].append(first_requests(server, time.monotonic() - start, jpegs[500, 375][0]))
            progress(f"  warmup {warmup}: {results['readiness'][-1]}")
    results["load_average_end"] = os.getloadavg()
    return results


def by_point(cpu: dict) -> dict[tuple[str, str, str], dict[int, dict]]:
    """The rows of one model, tier and JPEG size, by images per request."""
    points: dict[tuple[str, str, str], dict[int, dict]] = {}
    for row in cpu["rows"]:
        points.setdefault((row["model"], row["tier"], row["jpeg"]), {})[row.get("images_per_request", 1)] = row
    return points


def cpu_rows(cpu: dict, baseline: str = "exact") -> list[list[object]]:
    """One row per model, tier and size: CPU ms per served image for each request size, images per CPU second
    against `baseline`'s at the same size and request size, and at the largest request size tritonserver's share
    and the cores an H100 needs."""
    points, rows = by_point(cpu), []
    sizes = sorted({images for per in points.values() for images in per})
    for (model, tier, jpeg), per in points.items():
        base = points.get((model, baseline, jpeg), {})
        cells, gains = [], []
        for images in sizes:
            row = per.get(images, {})
            ms = row.get("net_ms")
            cells.append(f"**{ms:.2f}**" if ms else f"failed: {row['error']}" if "error" in row else "")
            base_ms = base.get(images, {}).get("net_ms")
            gains.append(f"{base_ms / ms:.2f}x" if ms and base_ms else "-")
        largest = per.get(sizes[-1], {})
        share, cores = "", ""
        if "net_ms" in largest:
            split = largest["cpu_s"]
            share = f"{split['tritonserver'] / max(split['tritonserver'] + split['steps'], 1e-9):.0%}"
            cores = bench.cores_per_gpu(model, largest["net_ms"])
        rows.append([model, tier, jpeg, *cells, " / ".join(gains), share, cores])
    return rows


def cpu_text(results: dict) -> list[str]:
    """The CPU-time table and how it was measured: placement, rates, idle floor, the other processes' share."""
    cpu = results["cpu"]
    placed = cpu["cores"]
    where = (
        f"tritonserver and its steps pinned to core {placed['server_core']}, the load generator and the network "
        f"to core {placed['load_core']}"
        if placed["server_core"] is not None
        else "unpinned (one usable core)"
    )
    tiers = "; ".join(f"{name}: {json.dumps(options)}" for name, options in cpu["tiers"].items())
    floors = ", ".join(f"{name} {1000 * (x['tritonserver'] + x['steps']):.1f}" for name, x in cpu["idle"].items())
    sizes = sorted({row.get("images_per_request", 1) for row in cpu["rows"]})
    per_request = [f"CPU ms per image, {n} per request" for n in sizes]
    largest = f"{sizes[-1]} per request"
    header = ["model", "tier", "JPEG", *per_request, "images per CPU second vs exact", f"tritonserver ({largest})"]
    return [
        "## CPU time per served image",
        "",
        "CPU seconds that tritonserver and its Python steps (preprocess, postprocess) spent "
        "(`/proc/<pid>/task/*/schedstat`) over an open-loop window, per image the server answered: "
        f"{where} (one core serves, `cores=1`). The generator sends requests of 1 or 8 images over gRPC at a "
        f"constant rate, never waiting for answers; a probe at {cpu_cost.PROBE_RATE:g} images/s prices an image, then "
        f"the window runs at the rate that keeps the server's core about {cpu_cost.SERVER_LOAD:.0%} busy, and closes "
        "when the last answer is in. The network is a STAND-IN (`perf/standin.py`: the network's tensors, almost "
        "no work; its answers are not classifications), counted apart: on a GPU node that work is the GPU's, and "
        "the portable network would hold the rate to a few images a second, where no two requests share an "
        f"execution as they do at a GPU's rate. Net of the idle floor (CPU ms per second: {floors}). Tiers "
        "(TritonServer "
        f"options): {tiers}; client-crops sends uint8 crops to `<model>_crop` (the client pays the "
        f"preprocessing). JPEGs: {results['jpegs']}. *Cores per H100* = CPU ms per image x {bench.gpu_rates()}. "
        f"Other processes used {cpu['other_cpu_percent']:.0f} % of the machine meanwhile (not counted).",
        "",
        *table([*header, f"cores per H100 ({largest})"], cpu_rows(cpu)),
    ]


def report(results: dict) -> str:
    f, m, warm = results["footprint"], results["machine"], []
    for run_ in results["readiness"]:
        for model, x in run_["models"].items():
            first, p50 = x["first_ms"], x["steady_p50_ms"]
            warm.append(["on" if run_["warmup"] else "off", run_["ready_s"], model, first, p50, f"{first / p50:.2f}"])
    load = [m["load_average"], results["load_average_end"]]
    lines = [
        f"Measured {results['started_at']} by `make bench-capacity` (`python -m perf capacity`) on "
        f"{bench.machine_sentence(m, load)}. Every figure below comes from this one run.",
        "",
        *cpu_text(results),
        "## Processes and memory",
        "",
        f"One model per preprocessing key ({', '.join(f['models'])}), sized by the launcher for this machine "
        f"(`{json.dumps(f['layout'])}`): {f['python_step_models']} Python step models, {f['python_processes']} "
        f"Python processes, {f['resident_mb']} MB resident (the server and its processes). The portable networks are "
        "Python processes too (ONNX Runtime inside the Python backend); on GPU they are the onnxruntime or TensorRT "
        "backend, inside tritonserver.",
        "",
        "## Warm before ready",
        "",
        *table(
            ["model_warmup", "time to ready (s)", "model", "first request (ms)", "steady p50 (ms)", "first / p50"], warm
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = study.arguments("perf capacity", __doc__, study.PROJECT / "build" / "perf" / "capacity", model=False)
    parser.add_argument("--quick", action="store_true", help="a short end-to-end check (figures not for the docs)")
    parser.add_argument("--publish", action="store_true", help="write the block of docs/capacity.md, the plot")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last capacity.json")
    parser.add_argument(
        "--tier",
        action="append",
        type=cpu_cost.parse_tier,
        help=f"a tier to price (repeat; default {', '.join(DEFAULT_TIERS)}): a name, or NAME=OPTION=VALUE[,...] "
        "with TritonServer options",
    )
    args = parser.parse_args(argv)
    if args.quick and args.publish:
        parser.error("--quick figures are not for the docs")
    tiers = args.tier or [cpu_cost.TIERS[name] for name in DEFAULT_TIERS]
    measure = partial(run, args.repository, args.out, args.quick, tiers)
    results = study.raw_data(args.out / "capacity.json", args.report_only, measure)
    text = report(results)
    (args.out / "capacity.md").write_text(text + "\n![CPU ms per served image](capacity.png)\n")
    rows, panels = results["cpu"]["rows"], {}
    for model in bench.MODELS:
        tiers_seen = dict.fromkeys(r["tier"] for r in rows if r["model"] == model)
        panels[model] = {
            t: {
                f"{r['jpeg']} x{r.get('images_per_request', 1)}": r.get("net_ms", 0.0)
                for r in rows
                if (r["model"], r["tier"]) == (model, t)
            }
            for t in tiers_seen
        }
    bench.bar_chart(args.out / "capacity.png", "CPU ms per served image (lower is better)", "CPU ms", panels)
    print(text)
    if args.publish:
        block = {"capacity": text + "\n![CPU ms per served image](img/capacity.png)"}
        study.publish(study.DOCS / "capacity.md", block, {args.out / "capacity.png": "capacity.png"})
    return 0
