"""Benchmark (not a test): what one core of preprocessing feeds, what a served set of models costs, how warm "ready" is.

    python -m perf.capacity [--repository DIR] [--out build/perf/capacity] [--seconds 2] [--publish] [--report-only]

One run, one machine, in this order (nothing else of the run holds a core while a figure is taken):

1. Per-core exact preprocessing in-process, the way the served step runs it (one OpenCV thread, the
   step's allocator setting): decode + resize + crop ("now": the network normalizes) and the same
   plus PaddleClas's float normalization ("before": what the step did when it produced float32
   tensors), for 500x375, 1920x1080 and 4000x3000 JPEGs of two real photographs, both families.
2. The same through the served preprocess step: one instance (one core) of `preprocess_<key>`
   driven directly by perf_analyzer at concurrency 4, images/s at saturation.
3. Python processes and resident memory of a server holding one model of each of the four
   preprocessing keys (the launcher's own sizing for this machine).
4. Time to ready, the first request after ready and the steady p50 of NextViT_small_224 and
   ViT_base_patch16_224, with model_warmup and without.
5. Served throughput of those two models at concurrency 4 (perf_analyzer, sample photographs), the
   point docs/performance.md reports for the layout before shared steps.

Writes capacity.json, capacity.md and a plot under --out; --publish replaces the capacity block of
docs/capacity.md (docs/blocks.py) and copies the plot to docs/img/. GPU rates in the cores-per-GPU
table are published figures (../shared/reference/gpu-capacity.md), labelled as estimates: no GPU runs here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

import catalog
from catalog.reference import sample_photo_paths
from docs import blocks
from model_repository import configs, procfs
from model_repository.server import TritonServer, free_port
from perf import machine, serving
from perf.analyzer import Analyzer, Windows
from perf.input_data import write_input_data
from perf.run import PROFILES
from preprocess import Preprocessor, decode
from preprocess.allocator import keep_large_buffers
from preprocess.image import normalize

PROJECT = Path(__file__).resolve().parent.parent
FAMILIES = ("NextViT_small_224", "ViT_base_patch16_224")  # one model per family, the CI exports
EVERY_KEY = (*FAMILIES, "NextViT_small_384", "ViT_base_patch16_384")  # one model per preprocessing key
SIZES = ((500, 375), (1920, 1080), (4000, 3000))
PHOTOS = ("retina.jpg", "astronaut.png")  # real photographs shipped by scikit-image
STEP_WINDOWS = Windows(window_ms=3000, stability_percent=20, max_trials=6)
# Published TensorRT FP16 rates for one H100, low and high (gpu-capacity.md): estimates, not measured.
H100_IMAGES_PER_S = {"NextViT_small_224": (12_000, 20_000), "ViT_base_patch16_224": (8_000, 12_000)}
# docs/performance.md, concurrency 4: the run before shared steps and uint8 crops, for the ratio.
PREVIOUS_SERVED = {"NextViT_small_224": 12.77, "ViT_base_patch16_224": 4.50}


def benchmark_jpegs() -> dict[tuple[int, int], list[bytes]]:
    """JPEGs (quality 90) of two real photographs at each size; sensor-like noise so that the
    entropy-coded size, which sets the decode time, is that of a real photo of that size."""
    folder = sample_photo_paths()[0].parent
    rng = np.random.default_rng(0)
    result: dict[tuple[int, int], list[bytes]] = {}
    for width, height in SIZES:
        result[(width, height)] = []
        for name in PHOTOS:
            rgb = cv2.imread(str(folder / name))
            side = min(rgb.shape[:2])
            frame = cv2.resize(rgb[:side, :side], (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
            frame += rng.normal(0, 3, frame.shape).astype(np.int16)
            ok, encoded = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            result[(width, height)].append(encoded.tobytes())
    return result


def _rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of `work` over about `seconds`, after one unmeasured call."""
    work()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 3:
        work()
        count += 1
    return count / elapsed


def _rates(work: Callable[[np.ndarray], object], encoded: list[bytes], seconds: float) -> list[float]:
    """Images/s of decode + `work` for each encoded image."""
    return [_rate(lambda data=data: work(decode(data)), seconds) for data in encoded]


def in_process(jpegs: dict, seconds: float, progress=print) -> list[dict]:
    """Images/s on one core: crop only (now) and crop + normalization (before), per family, size and photo."""
    cv2.setNumThreads(1)
    keep_large_buffers()
    rows = []
    for name in FAMILIES:
        prep = catalog.get(name).preprocessing
        crop = Preprocessor(resize_short=prep.resize_short, crop=prep.crop, resize=prep.resize).pixels
        mean, std = (np.array(v, np.float32).reshape(1, 1, 3) for v in (prep.mean, prep.std))
        for size, encoded in jpegs.items():
            now = _rates(crop, encoded, seconds)
            before = _rates(
                lambda rgb, crop=crop, mean=mean, std=std: normalize(crop(rgb), mean, std), encoded, seconds
            )
            rows.append({"model": name, "size": list(size), "now": now, "before": before})
            progress(f"  in-process {name} {size[0]}x{size[1]}: {_span(now)} img/s now, {_span(before)} before")
    return rows


def _server(repository: Path, out: Path, name: str, models: tuple[str, ...], **options) -> TritonServer:
    log = out / f"tritonserver-{name}.log"
    return TritonServer(repository, free_port(), free_port(), free_port(), log_path=log, models=list(models), **options)


def _analyzer(server: TritonServer, input_data: Path, windows: Windows, out: Path) -> Analyzer:
    import tritonclient.grpc as grpcclient

    return Analyzer(grpcclient.InferenceServerClient(server.grpc_url), serving.target(server), input_data, windows, out)


def served_step(server: TritonServer, jpegs: dict, out: Path, progress=print) -> list[dict]:
    """Images/s of one preprocess instance (one core) at saturation, driven by perf_analyzer.

    Concurrency 4 keeps the step's queue full, so its dynamic batcher hands the instance several
    requests per execution, as a busy server does; both photographs of a size alternate.
    """
    rows = []
    for name in FAMILIES:
        step = configs.preprocess_name(catalog.get(name))
        for (width, height), encoded in jpegs.items():
            photos = out / "photos" / f"{width}x{height}"
            photos.mkdir(parents=True, exist_ok=True)
            for index, data in enumerate(encoded):
                (photos / f"{index}.jpg").write_bytes(data)
            input_data = write_input_data(sorted(photos.glob("*.jpg")), photos / "input_data.json")
            rate = _analyzer(server, input_data, STEP_WINDOWS, photos).point(step, 4).throughput
            rows.append({"model": name, "size": [width, height], "served": [rate]})
            progress(f"  served {step} {width}x{height}: {rate:.0f} img/s")
    return rows


def footprint(server: TritonServer) -> dict:
    assert server.process is not None and server.serving is not None
    processes = procfs.descendants(server.process.pid)
    per_model: dict[str, int] = {}
    for stub in (p for p in processes if procfs.STUB in p.command):
        words = stub.command.split()
        model = words[1].rstrip("/").split("/")[-3] if len(words) > 1 else "?"
        per_model[model] = per_model.get(model, 0) + 1
    return {
        "models": server.served_models,
        "layout": server.serving["layout"],
        "python_step_models": server.serving["python_step_models"],
        "python_processes": sum(per_model.values()),
        "processes_per_model": per_model,
        "resident_mb": round(sum(p.resident_kib for p in processes) / 1024),
        "server_resident_mb": round(processes[0].resident_kib / 1024),
        # The layout before shared steps, for the same models: 2 + 2 + 1 Python steps and a network each.
        "before_python_step_models": 3 * len(server.served_models),
        "before_python_processes": 6 * len(server.served_models),
    }


def first_requests(server: TritonServer, ready_s: float, photo: bytes) -> dict:
    """The first request of each model after ready, against the steady p50 of the next 15."""
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[photo]], dtype=object))
    result: dict = {"warmup": server.warmup, "ready_s": round(ready_s, 2), "models": {}}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for name in FAMILIES:
            times = []
            for _ in range(16):
                begin = time.perf_counter()
                client.infer(catalog.get(name).triton_name, [tensor])
                times.append((time.perf_counter() - begin) * 1000)
            p50 = statistics.median(times[1:])
            result["models"][name] = {
                "first_ms": round(times[0], 1),
                "steady_p50_ms": round(p50, 1),
                "first_over_p50": round(times[0] / p50, 2),
            }
    return result


def served_throughput(server: TritonServer, out: Path, progress=print) -> dict:
    """perf_analyzer at concurrency 4 on each ensemble with the sample photographs, as docs/performance.md."""
    analyzer = _analyzer(
        server, write_input_data(sample_photo_paths(), out / "input_data.json"), PROFILES["full"].windows, out
    )
    result = {}
    for name in FAMILIES:
        ensemble = catalog.get(name).triton_name
        analyzer.warm_up(ensemble)
        point = analyzer.point(ensemble, 4)
        result[name] = {"images_per_s": point.throughput, "p50_ms": point.p50_ms, "previous": PREVIOUS_SERVED[name]}
        result[name]["failed"] = point.failed_requests
        progress(
            f"  served {ensemble} at concurrency 4: {point.throughput:.2f} img/s (previous {PREVIOUS_SERVED[name]})"
        )
    return result


def run(repository: Path, out: Path, seconds: float, progress=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine.facts()}
    jpegs = benchmark_jpegs()
    results["jpeg_bytes"] = {f"{w}x{h}": [len(d) for d in v] for (w, h), v in jpegs.items()}
    progress("in-process per-core preprocessing")
    results["in_process"] = in_process(jpegs, seconds, progress)
    serving.ensure_exported(repository, [catalog.get(name) for name in EVERY_KEY], progress)
    progress("one served preprocess instance")
    with _server(repository, out, "step", FAMILIES, layout=configs.Layout(network_cpu_threads=1)) as server:
        results["served_step"] = served_step(server, jpegs, out, progress)
    progress("processes and memory, one model per preprocessing key")
    with _server(repository, out, "keys", EVERY_KEY) as server:
        time.sleep(2)
        results["footprint"] = footprint(server)
    progress("time to ready and first request, without and with warmup; then served throughput")
    results["readiness"] = []
    for warmup in (False, True):
        server, start = _server(repository, out, f"warmup-{warmup}", FAMILIES, warmup=warmup), time.monotonic()
        with server:
            results["readiness"].append(first_requests(server, time.monotonic() - start, jpegs[SIZES[0]][0]))
            progress(f"  warmup {warmup}: {results['readiness'][-1]}")
            if warmup:
                results["served"] = served_throughput(server, out, progress)
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (out / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


# --- report ---------------------------------------------------------------------------------------


def _span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else f"{low:.{digits}f}-{high:.{digits}f}"


def _served_rates(results: dict) -> dict[tuple[str, str], list[float]]:
    return {(r["model"], f"{r['size'][0]}x{r['size'][1]}"): r["served"] for r in results["served_step"]}


def report(results: dict) -> str:
    m, served, f = results["machine"], _served_rates(results), results["footprint"]
    load = m["load_average"][0]
    lines = [
        f"Measured {results['started_at']} by `make bench-capacity` (`python -m perf.capacity`) on {m['cpu_model']}, "
        f"{m['usable_cores']} usable cores, flags {', '.join(m['cpu_flags']) or 'none of note'}, load average "
        f"{load:.2f} at the start{' (a shared machine: other jobs ran beside this one)' if load > 0.5 else ''}. "
        "Every figure below comes from this one run; GPU rates are published figures, not measurements (no GPU here).",
        "",
        "## Exact preprocessing per core",
        "",
        "Images/s on one core, ranges over two real photographs re-encoded as JPEG quality 90. *now*: decode, resize "
        "and crop (the network normalizes the uint8 crop); *before*: the same plus PaddleClas's float32 normalization "
        "on the CPU, what the served step did before; *served*: one instance of the served `preprocess_<key>` step "
        "driven by perf_analyzer at concurrency 4 (both photographs alternating), the per-core rate a node gets.",
        "",
        "| family | JPEG | now (in-process) | before (in-process) | now / before | served step |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["in_process"]:
        size = f"{row['size'][0]}x{row['size'][1]}"
        gain = [n / b for n, b in zip(row["now"], row["before"], strict=True)]
        lines.append(
            f"| {catalog.get(row['model']).family} ({row['model']}) | {size} | {_span(row['now'])} | "
            f"{_span(row['before'])} | {_span(gain, 2)}x | {_span(served[(row['model'], size)])} |"
        )
    lines += [
        "",
        "## Cores to keep one H100 busy (estimates)",
        "",
        "Cores = GPU images/s / served images/s per core. GPU images/s: published TensorRT FP16 figures at batch "
        "64-128 (`../shared/reference/gpu-capacity.md`), NextViT_small_224 12,000-20,000, ViT_base_patch16_224 "
        "8,000-12,000: estimates, never measured here. Typical GPU nodes have 12-24 cores per GPU.",
        "",
        "| model | JPEG | served img/s per core | cores per H100 |",
        "|---|---|---|---|",
    ]
    for (model, size), rates in served.items():
        (low, high), per_core = H100_IMAGES_PER_S[model], statistics.mean(rates)
        lines.append(f"| {model} | {size} | {per_core:.0f} | {low / per_core:.0f}-{high / per_core:.0f} |")
    lines += [
        "",
        "## Processes and memory",
        "",
        f"One model per preprocessing key ({', '.join(f['models'])}), sized by the launcher for this machine "
        f"(`{json.dumps(f['layout'])}`):",
        "",
        "| | Python step models | Python processes | resident MB (server and its processes) |",
        "|---|---|---|---|",
        f"| now (shared steps) | {f['python_step_models']} | {f['python_processes']} | {f['resident_mb']} |",
        f"| before (2+2+1 per model, computed) | {f['before_python_step_models']} | {f['before_python_processes']} | |",
        "",
        f"Processes per model now: {', '.join(f'{k} {v}' for k, v in sorted(f['processes_per_model'].items()))}. "
        "The portable networks are Python processes too (ONNX Runtime inside the Python backend); on GPU they are "
        "the onnxruntime or TensorRT backend, inside tritonserver.",
        "",
        "## Warm before ready",
        "",
        "| model_warmup | time to ready (s) | model | first request (ms) | steady p50 (ms) | first / p50 |",
        "|---|---|---|---|---|---|",
    ]
    for run_ in results["readiness"]:
        for model, x in run_["models"].items():
            lines.append(
                f"| {'on' if run_['warmup'] else 'off'} | {run_['ready_s']} | {model} | {x['first_ms']} | "
                f"{x['steady_p50_ms']} | {x['first_over_p50']} |"
            )
    lines += [
        "",
        "## Served throughput on this CPU",
        "",
        "perf_analyzer, concurrency 4, the sample photographs, the launcher's layout for this machine; *previous*: "
        "docs/performance.md (same CPU model, 2026-11-22, float32 crops and per-model steps). Another run, so "
        "differences of a few percent are noise.",
        "",
        "| model | images/s | p50 ms | previous images/s | ratio | failed |",
        "|---|---|---|---|---|---|",
    ]
    for model, x in results["served"].items():
        lines.append(
            f"| {model} | {x['images_per_s']:.2f} | {x['p50_ms']:.1f} | {x['previous']} | "
            f"{x['images_per_s'] / x['previous']:.2f} | {x['failed']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = _served_rates(results)
    figure, axes = plt.subplots(1, len(FAMILIES), figsize=(11, 4), sharey=False)
    for axis, model in zip(axes, FAMILIES, strict=True):
        rows = [r for r in results["in_process"] if r["model"] == model]
        labels = [f"{r['size'][0]}x{r['size'][1]}" for r in rows]
        bars = {
            "before (in-process)": [statistics.mean(r["before"]) for r in rows],
            "now (in-process)": [statistics.mean(r["now"]) for r in rows],
            "now (served step)": [statistics.mean(served[(model, label)]) for label in labels],
        }
        for offset, (label, values) in enumerate(bars.items()):
            axis.bar(np.arange(len(rows)) + (offset - 1) * 0.27, values, 0.27, label=label)
        axis.set_xticks(np.arange(len(rows)), labels)
        axis.set(yscale="log", title=f"{model}: exact preprocessing, one core", ylabel="images/s per core")
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "perf" / "capacity")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    parser.add_argument(
        "--publish", action="store_true", help="write the report into docs/capacity.md, the plot to docs/img/"
    )
    parser.add_argument("--report-only", action="store_true", help="redraw from the last capacity.json")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.out / "capacity.json").read_text())
    else:
        results = run(args.repository, args.out, args.seconds)
    text = report(results)
    (args.out / "capacity.md").write_text(text + "\n![images/s per core](capacity.png)\n")
    plot(results, args.out / "capacity.png")
    print(text)
    if args.publish:
        shutil.copyfile(args.out / "capacity.png", PROJECT / "docs" / "img" / "capacity.png")
        blocks.update(PROJECT / "docs" / "capacity.md", "capacity", text + "\n![images/s per core](img/capacity.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
