"""Benchmark (not a test): what one served core of preprocessing feeds, what a set of models costs, how warm
"ready" is. `make bench-capacity` runs `python -m perf.capacity --out build/perf/capacity --publish`.

One run, one figure at a time: images/s of one instance (one core) of each family's served preprocess
step under perf_analyzer with perf.preprocess_bench's JPEGs (which gives their in-process costs), and the
cores one H100 needs at that rate; processes and memory of a server with one model per preprocessing
key; time to ready and first requests with model_warmup and without (served throughput: `make perf`).
--quick checks the run end to end (short, loose windows; the two families only): not figures for the docs.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import catalog
from model_repository import configs, procfs
from model_repository.server import TritonServer
from perf import machine, serving, study
from perf import preprocess_bench as bench
from perf.analyzer import Analyzer, Windows
from perf.input_data import image_tensor, write_input_data
from perf.study import table

EVERY_KEY = (*bench.MODELS, "NextViT_small_384", "ViT_base_patch16_384")  # one model per preprocessing key
STEP_WINDOWS = Windows(window_ms=3000, stability_percent=20, max_trials=6)
# Four requests in flight keep one instance busy between round trips. The step is served without a queue
# policy: with one, 2.51 does not prefetch and a closed loop of clients waits out half-second stalls that a
# node's steady stream of requests does not (docs/capacity.md, "Half-second stalls"); without, nothing is
# refused either.
STEP_CONCURRENCY = 4
QUICK_WINDOWS = Windows(window_ms=2000, stability_percent=100, max_trials=5)  # --quick: any figure, soon


def served_step(server: TritonServer, jpegs: dict, windows: Windows, out: Path, progress) -> list[dict]:
    """Images/s of one preprocess instance (one core) at saturation per family and size, by perf_analyzer.

    STEP_CONCURRENCY requests on a step without a queue policy, so the instance never idles and nothing
    is refused; the photographs of a size alternate.
    """
    import tritonclient.grpc as grpcclient

    client, rows = grpcclient.InferenceServerClient(server.grpc_url), []
    for name, (width, height) in itertools.product(bench.MODELS, jpegs):
        step = configs.preprocess_name(catalog.get(name))
        photos = out / "photos" / f"{width}x{height}"
        photos.mkdir(parents=True, exist_ok=True)
        for index, data in enumerate(jpegs[width, height]):
            (photos / f"{index}.jpg").write_bytes(data)
        input_data = write_input_data(sorted(photos.glob("*.jpg")), photos / "input_data.json")
        analyzer = Analyzer(client, serving.target(server), input_data, windows, photos, progress)
        served = analyzer.point(step, STEP_CONCURRENCY).throughput
        rows.append({"model": name, "jpeg": f"{width}x{height}", "served": served})
        progress(f"  served {step} {width}x{height}: {served:.0f} img/s")
    return rows


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


def run(repository: Path, out: Path, quick: bool, progress: Callable[[str], None] = print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": machine.utc_now(), "machine": machine.facts()}
    jpegs, results["jpegs"], results["step_concurrency"] = (
        bench.benchmark_jpegs(),
        bench.BENCHMARK_JPEGS,
        STEP_CONCURRENCY,
    )
    keys = bench.MODELS if quick else EVERY_KEY
    serving.ensure_exported(repository, [catalog.get(name) for name in keys], progress)
    progress("one served preprocess instance")
    one_thread, log = configs.Layout(network_cpu_threads=1), out / "tritonserver-step.log"
    with serving.server(repository, bench.MODELS, log, layout=one_thread, queue_policies=False) as server:
        windows = QUICK_WINDOWS if quick else STEP_WINDOWS
        results["per_core"] = served_step(server, jpegs, windows, out, progress)
    progress("processes and memory, one model per preprocessing key")
    with serving.server(repository, keys, out / "tritonserver-keys.log") as server:
        time.sleep(2)
        results["footprint"] = footprint(server)
    progress("time to ready and first request, without and with warmup")
    results["readiness"] = []
    for warmup in (False, True):
        log = out / f"tritonserver-warmup-{warmup}.log"
        server, start = serving.server(repository, bench.MODELS, log, warmup=warmup), time.monotonic()
        with server:
            results["readiness"].append(first_requests(server, time.monotonic() - start, jpegs[500, 375][0]))
            progress(f"  warmup {warmup}: {results['readiness'][-1]}")
    return results


def report(results: dict) -> str:
    f, m, per_core, warm = results["footprint"], results["machine"], [], []
    for row in results["per_core"]:
        model, cores = row["model"], bench.cores_per_gpu(row["model"], 1000 / row["served"])
        per_core.append([f"{catalog.get(model).family} ({model})", row["jpeg"], f"{row['served']:.0f}", cores])
    for run_ in results["readiness"]:
        for model, x in run_["models"].items():
            first, p50 = x["first_ms"], x["steady_p50_ms"]
            warm.append(["on" if run_["warmup"] else "off", run_["ready_s"], model, first, p50, f"{first / p50:.2f}"])
    lines = [
        f"Measured {results['started_at']} by `make bench-capacity` (`python -m perf.capacity`) on "
        f"{bench.machine_sentence(m, [m['load_average']])}. Every figure below comes from this one run.",
        "",
        "## Exact preprocessing per core",
        "",
        "Images/s of one instance (one core) of the served `preprocess_<key>` step, driven by perf_analyzer at "
        f"concurrency {results['step_concurrency']} with {results['jpegs']} (alternating), the step served without "
        "its queue policy ([why](#half-second-stalls-triton-251-does-not-prefetch-behind-a-queue-policy)): the "
        "per-core rate a node gets. What each part costs in process is in [preprocessing.md](preprocessing.md#speed) "
        "(`make bench-preprocess`). *Cores per H100* = GPU images/s / served images/s, with "
        f"{bench.gpu_rates()}; typical GPU nodes have 12-24 cores per GPU (`../shared/reference/gpu-capacity.md`).",
        "",
        *table(["family", "JPEG", "served step, images/s per core", "cores per H100"], per_core),
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
    args = parser.parse_args(argv)
    if args.quick and args.publish:
        parser.error("--quick figures are not for the docs")
    measure = partial(run, args.repository, args.out, args.quick)
    results = study.raw_data(args.out / "capacity.json", args.report_only, measure)
    text = report(results)
    (args.out / "capacity.md").write_text(text + "\n![images/s per core](capacity.png)\n")
    served = {m: {r["jpeg"]: r["served"] for r in results["per_core"] if r["model"] == m} for m in bench.MODELS}
    bench.bar_chart(args.out / "capacity.png", "Exact preprocessing per core", "images/s", {"one served step": served})
    print(text)
    if args.publish:
        block = {"capacity": text + "\n![images/s per core](img/capacity.png)"}
        study.publish(study.DOCS / "capacity.md", block, {args.out / "capacity.png": "capacity.png"})
    return 0
