"""Benchmark (not a test): what one core of preprocessing feeds, what a served set of models costs, how warm "ready" is.

    python -m perf.capacity [--repository DIR] [--out build/perf/capacity] [--seconds 2] [--publish]

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
   point docs/performance.md reports for the previous layout.

Writes capacity.json, capacity.md and a plot under --out; --publish copies the report to
docs/capacity.md and the plot to docs/img/. GPU rates in the cores-per-GPU table are published
figures (../shared/reference/gpu-capacity.md), labelled as estimates: no GPU runs here.
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
from model_repository import configs, procfs
from model_repository.server import TritonServer, free_port
from perf import machine, repository
from preprocess import Preprocessor, decode
from preprocess.allocator import keep_large_buffers
from preprocess.image import normalize

PROJECT = Path(__file__).resolve().parent.parent
FAMILIES = ("NextViT_small_224", "ViT_base_patch16_224")  # one model per family, the CI exports
EVERY_KEY = (*FAMILIES, "NextViT_small_384", "ViT_base_patch16_384")  # one model per preprocessing key
SIZES = ((500, 375), (1920, 1080), (4000, 3000))
PHOTOS = ("retina.jpg", "astronaut.png")  # real photographs shipped by scikit-image
JPEG_QUALITY = 90
# Published TensorRT FP16 rates for one H100, low and high (gpu-capacity.md): estimates, not measured.
H100_IMAGES_PER_S = {"NextViT_small_224": (12_000, 20_000), "ViT_base_patch16_224": (8_000, 12_000)}
PREVIOUS_SERVED = {"NextViT_small_224": 12.77, "ViT_base_patch16_224": 4.50}  # docs/performance.md, concurrency 4


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
            square = rgb[:side, :side]
            frame = cv2.resize(square, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
            frame += rng.normal(0, 3, frame.shape).astype(np.int16)
            ok, encoded = cv2.imencode(
                ".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
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


def _crop_rates(crop: Callable[[bytes], np.ndarray], encoded: list[bytes], seconds: float) -> list[float]:
    return [_rate(lambda data=data: crop(decode(data)), seconds) for data in encoded]


def in_process(jpegs: dict, seconds: float, progress=print) -> list[dict]:
    """Images/s on one core: crop only (now) and crop + normalization (before), per family, size and photo."""
    cv2.setNumThreads(1)
    keep_large_buffers()
    rows = []
    for name in FAMILIES:
        prep = catalog.get(name).preprocessing
        crop_only = Preprocessor(prep.resize_short, prep.crop, prep.resize)
        mean, std = (np.array(v, np.float32).reshape(1, 1, 3) for v in (prep.mean, prep.std))

        def crop_and_normalize(rgb: np.ndarray, crop_only: Preprocessor = crop_only, mean=mean, std=std) -> np.ndarray:
            return normalize(crop_only.pixels(rgb), mean, std)

        for size, encoded in jpegs.items():
            now = _crop_rates(crop_only.pixels, encoded, seconds)
            before = _crop_rates(crop_and_normalize, encoded, seconds)
            rows.append({"model": name, "size": list(size), "now": now, "before": before})
            progress(f"  in-process {name} {size[0]}x{size[1]}: {_span(now)} img/s now, {_span(before)} before")
    return rows


def _infer(client, model: str, input_name: str, data: bytes):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(input_name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    return client.infer(model, [tensor])


def served_step(server: TritonServer, jpegs: dict, out: Path, progress=print) -> list[dict]:
    """Images/s of one preprocess instance (one core) at saturation, driven by perf_analyzer.

    Concurrency 4 keeps the step's queue full, so its dynamic batcher hands the instance several
    requests per execution, as a busy server does; both photographs of a size alternate.
    """
    from perf import analyzer
    from perf.input_data import write_input_data

    target = analyzer.Target(grpc_url=server.grpc_url, metrics_url=server.metrics_url, admin_key=server.admin_key)
    windows = analyzer.Windows(window_ms=3000, stability_percent=20, max_trials=6)
    rows = []
    for name in FAMILIES:
        step = configs.preprocess_name(catalog.get(name))
        for (width, height), encoded in jpegs.items():
            photos = []
            for index, data in enumerate(encoded):
                photos.append(out / "photos" / f"{width}x{height}_{index}.jpg")
                photos[-1].parent.mkdir(parents=True, exist_ok=True)
                photos[-1].write_bytes(data)
            data_file = write_input_data(photos, out / "photos" / f"{width}x{height}.json")
            csv_path = out / "served_step" / f"{step}_{width}x{height}.csv"
            command = analyzer.command(target, step, 4, data_file, csv_path)
            analyzer.run_windows(command, windows, csv_path.with_suffix(".log"), 900.0)
            rate = float(analyzer.read_csv(csv_path)["Inferences/Second"])
            rows.append({"model": name, "size": [width, height], "served": [rate]})
            progress(f"  served {step} {width}x{height}: {rate:.0f} img/s")
    return rows


def footprint(server: TritonServer) -> dict:
    assert server.process is not None
    processes = procfs.descendants(server.process.pid)
    stubs = [p for p in processes if procfs.STUB in p.command]
    per_model: dict[str, int] = {}
    for stub in stubs:
        words = stub.command.split()
        model = words[1].rstrip("/").split("/")[-3] if len(words) > 1 else "?"
        per_model[model] = per_model.get(model, 0) + 1
    served = server.served_models
    return {
        "models": served,
        "layout": server.serving["layout"] if server.serving else None,
        "python_step_models": server.serving["python_step_models"] if server.serving else None,
        "python_processes": len(stubs),
        "processes_per_model": per_model,
        "resident_mb": round(sum(p.resident_kib for p in processes) / 1024),
        "server_resident_mb": round(processes[0].resident_kib / 1024),
        # The layout before shared steps, for the same models: 2 + 2 + 1 Python steps and a network each.
        "before_python_step_models": 3 * len(served),
        "before_python_processes": 6 * len(served),
    }


def readiness(repository_dir: Path, out: Path, warmup: bool, photo: bytes) -> tuple[dict, TritonServer]:
    """Start a server, time it to ready, then the first request of each model and the steady p50."""
    import tritonclient.grpc as grpcclient

    server = TritonServer(
        repository_dir,
        free_port(),
        free_port(),
        free_port(),
        log_path=out / f"tritonserver-warmup-{warmup}.log",
        models=list(FAMILIES),
        warmup=warmup,
    )
    start = time.monotonic()
    server.__enter__()
    ready_s = time.monotonic() - start
    result: dict = {"warmup": warmup, "ready_s": round(ready_s, 2), "models": {}}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for name in FAMILIES:
            ensemble = catalog.get(name).triton_name
            begin = time.perf_counter()
            _infer(client, ensemble, configs.IMAGE_INPUT, photo)
            first_ms = (time.perf_counter() - begin) * 1000
            steady = []
            for _ in range(15):
                begin = time.perf_counter()
                _infer(client, ensemble, configs.IMAGE_INPUT, photo)
                steady.append((time.perf_counter() - begin) * 1000)
            p50 = statistics.median(steady)
            result["models"][name] = {
                "first_ms": round(first_ms, 1),
                "steady_p50_ms": round(p50, 1),
                "first_over_p50": round(first_ms / p50, 2),
            }
    return result, server


def served_throughput(server: TritonServer, out: Path, progress=print) -> dict:
    """perf_analyzer at concurrency 4 on each ensemble with the sample photographs, as docs/performance.md."""
    import tritonclient.grpc as grpcclient

    from perf import analyzer
    from perf.input_data import write_input_data
    from perf.profiles import PROFILES

    target = analyzer.Target(grpc_url=server.grpc_url, metrics_url=server.metrics_url, admin_key=server.admin_key)
    data = write_input_data(sample_photo_paths(), out / "input_data.json")
    result = {}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for name in FAMILIES:
            ensemble = catalog.get(name).triton_name
            analyzer.warm_up(target, ensemble, data, out, requests=8)
            point = analyzer.measure_once(client, target, ensemble, 4, data, out, PROFILES["full"].windows)
            result[name] = {
                "images_per_s": point.throughput,
                "p50_ms": point.p50_ms,
                "previous": PREVIOUS_SERVED[name],
                "failed": point.failed_requests,
            }
            progress(
                f"  served {ensemble} at concurrency 4: {point.throughput:.2f} img/s (previous {PREVIOUS_SERVED[name]})"
            )
    return result


def run(repository_dir: Path, out: Path, seconds: float, progress=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine.facts()}
    jpegs = benchmark_jpegs()
    results["jpeg_bytes"] = {f"{w}x{h}": [len(d) for d in v] for (w, h), v in jpegs.items()}
    progress("1/5 per-core preprocessing in-process")
    results["in_process"] = in_process(jpegs, seconds, progress)
    repository.ensure_exported(repository_dir, [catalog.get(name) for name in EVERY_KEY], progress)
    progress("2/5 one served preprocess instance")
    step_layout = configs.Layout(preprocess_instances=1, network_cpu_threads=1)
    with TritonServer(
        repository_dir,
        free_port(),
        free_port(),
        free_port(),
        log_path=out / "tritonserver-step.log",
        models=list(FAMILIES),
        layout=step_layout,
    ) as server:
        results["served_step"] = served_step(server, jpegs, out, progress)
    progress("3/5 processes and memory, one model per preprocessing key")
    with TritonServer(
        repository_dir,
        free_port(),
        free_port(),
        free_port(),
        log_path=out / "tritonserver-keys.log",
        models=list(EVERY_KEY),
    ) as server:
        time.sleep(2)
        results["footprint"] = footprint(server)
    progress("4/5 time to ready and first request, without and with warmup")
    photo = jpegs[SIZES[0]][0]
    results["readiness"] = []
    for warmup in (False, True):
        measured, server = readiness(repository_dir, out, warmup, photo)
        results["readiness"].append(measured)
        progress(f"  warmup {warmup}: ready in {measured['ready_s']} s, {measured['models']}")
        if warmup:
            progress("5/5 served throughput")
            try:
                results["served"] = served_throughput(server, out, progress)
            finally:
                server.stop()
        else:
            server.stop()
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
    m = results["machine"]
    lines = [
        "# Capacity: what the CPU side of a node can feed",
        "",
        f"Measured {results['started_at']} by `make bench-capacity` (`python -m perf.capacity`) on {m['cpu_model']}, "
        f"{m['usable_cores']} usable cores, flags {', '.join(m['cpu_flags']) or 'none of note'}. Every figure "
        "below comes from this one run; GPU rates are published figures, not measurements (no GPU here).",
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
    served = _served_rates(results)
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
        low, high = H100_IMAGES_PER_S[model]
        per_core = statistics.mean(rates)
        lines.append(f"| {model} | {size} | {per_core:.0f} | {low / per_core:.0f}-{high / per_core:.0f} |")
    f = results["footprint"]
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
        for model, figures in run_["models"].items():
            lines.append(
                f"| {'on' if run_['warmup'] else 'off'} | {run_['ready_s']} | {model} | {figures['first_ms']} | "
                f"{figures['steady_p50_ms']} | {figures['first_over_p50']} |"
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
    for model, figures in results.get("served", {}).items():
        ratio = figures["images_per_s"] / figures["previous"]
        lines.append(
            f"| {model} | {figures['images_per_s']:.2f} | {figures['p50_ms']:.1f} | {figures['previous']} | "
            f"{ratio:.2f} | {figures['failed']:.0f} |"
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
        x = np.arange(len(rows))
        for offset, (label, values) in enumerate(
            (
                ("before (in-process)", [statistics.mean(r["before"]) for r in rows]),
                ("now (in-process)", [statistics.mean(r["now"]) for r in rows]),
                ("now (served step)", [statistics.mean(served[(model, lab)]) for lab in labels]),
            )
        ):
            axis.bar(x + (offset - 1) * 0.27, values, 0.27, label=label)
        axis.set_xticks(x, labels)
        axis.set_yscale("log")
        axis.set_title(f"{model}: exact preprocessing, one core")
        axis.set_ylabel("images/s per core")
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
    parser.add_argument("--publish", action="store_true", help="copy the report to docs/capacity.md and docs/img/")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last capacity.json")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.out / "capacity.json").read_text())
    else:
        results = run(args.repository, args.out, args.seconds)
    text = report(results)
    (args.out / "capacity.md").write_text(text.replace("img/capacity.png", "capacity.png"))
    plot(results, args.out / "capacity.png")
    print(text)
    if args.publish:
        docs = PROJECT / "docs"
        (docs / "img").mkdir(exist_ok=True)
        shutil.copyfile(args.out / "capacity.png", docs / "img" / "capacity.png")
        (docs / "capacity.md").write_text(text + "\n![images/s per core](img/capacity.png)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
