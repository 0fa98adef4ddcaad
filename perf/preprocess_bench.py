"""Benchmark (not a test): exact preprocessing per image on one core beside the network, and the price of
going beyond the server's cores (fast decode, client-side crops: the server pays nothing, the client exact).

    make bench-preprocess   # python -m perf preprocess --repository REPOSITORY --publish

Both families, IMAGE_SETS of JPEGs made from the sample photographs, photo by photo in the served step's
process state: exact decode and resize + crop timed apart, alternating run by run with fast decode; then
fast against exact crops and the network's own time, through the exported network (seeded random weights,
exported into --repository if missing). Writes preprocess.json, .md and preprocess_price.png under --out;
--publish the `preprocess-bench` and `fast-decode-price` blocks of docs/preprocessing.md and the plot.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

import catalog
from catalog.reference import sample_photo_paths
from catalog.resolve import preprocessor
from model_repository import configs, layout
from perf import machine, study
from perf.serving import ensure_exported
from preprocess import Preprocessor
from preprocess.allocator import keep_large_buffers
from preprocess.decoding import FAST_DECODE_MARGIN, dct_scale

DOCS = study.DOCS / "preprocessing.md"
MODELS = ("NextViT_small_224", "ViT_base_patch16_224")  # one per family, the CI exports
# Published TensorRT FP16 images/s of one H100 at batch 64-128, low and high: estimates, unverified on a
# GPU. The one copy is model_repository/configs.py, which also prices the other runtimes.
H100_IMAGES_PER_S = configs.H100_TENSORRT_FP16_IMAGES_PER_S
NOISE_SIGMA = 3.0  # levels: a 12 MP file then has a camera's entropy-coded size (see photo_jpegs)
Classify = Callable[[np.ndarray], np.ndarray]  # uint8 crops N x S x S x 3 -> probabilities N x classes
SIZES = ((500, 375), (1920, 1080), (4000, 3000))  # a web photo, a video frame, a 12 MP camera photo
# SIZES with noise (benchmark_jpegs, also perf.capacity's and perf.drills' traffic), and 4000x3000 without:
# fast decode's gain depends on the entropy-coded size, which scaled decoding cannot reduce.
IMAGE_SETS = (*((f"{w}x{h}", (w, h), NOISE_SIGMA) for w, h in SIZES), ("4000x3000, no noise", (4000, 3000), 0.0))
# Fast decode's margins priced: the default, and the smaller one that takes 12 MP photos to 1/8 scale.
# A set is timed at a margin only where that margin picks another DCT scale than the default does.
MARGINS = (FAST_DECODE_MARGIN, 1.25)


def photo_jpegs(size: tuple[int, int], sigma: float = NOISE_SIGMA) -> list[bytes]:
    """Every sample photograph upscaled (bicubic) to cover `size`, its centre, plus noise, as a quality-90 JPEG.

    The entropy-coded size sets the decode time: with noise of sigma 3 a 12-megapixel file is a
    camera's size (1.6 MB here; phones write 2-5 MB), where a smooth upscale compresses far better.
    """
    (width, height), rng, result = size, np.random.default_rng(0), []
    for path in sample_photo_paths():
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        scale = max(width / bgr.shape[1], height / bgr.shape[0])
        big = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
        top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
        noisy = big[top : top + height, left : left + width] + rng.normal(0, sigma, (height, width, 3))
        ok, encoded = cv2.imencode(".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        result.append(encoded.tobytes())
    return result


BENCHMARK_JPEGS = "the sample photographs upscaled to cover each size (bicubic), noise of sigma 3, quality 90"


def benchmark_jpegs() -> dict[tuple[int, int], list[bytes]]:
    """BENCHMARK_JPEGS at each of SIZES: mixed-size traffic of real-looking photos."""
    return {size: photo_jpegs(size) for size in SIZES}


def time_photo(exact: Preprocessor, fast: Preprocessor, data: bytes, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per run of the exact decode, the exact resize + crop, their sum, and fast decode's whole step.

    One unmeasured run first: lazy imports and allocator growth are not the steady state.
    """
    exact.crop_encoded(data), fast.crop_encoded(data)
    runs: dict[str, list[float]] = {"decode": [], "resize_crop": [], "exact": [], "fast": []}
    for _ in range(repeats):
        start = time.perf_counter()
        rgb = exact.decode(data)
        decoded = time.perf_counter()
        exact.pixels(rgb)
        done = time.perf_counter()
        fast.crop_encoded(data)
        runs["decode"].append((decoded - start) * 1000)
        runs["resize_crop"].append((done - decoded) * 1000)
        runs["exact"].append((done - start) * 1000)
        runs["fast"].append((time.perf_counter() - done) * 1000)
    return runs


def time_set(exact: Preprocessor, fast: Preprocessor, jpegs: list[bytes], repeats: int) -> dict[str, object]:
    """Per kind: median over photos of each photo's median, their range, median of each photo's best; JPEG sizes."""
    per_photo = [time_photo(exact, fast, data, repeats) for data in jpegs]
    summary: dict[str, object] = {"images": len(jpegs), "jpeg_kb": statistics.mean(map(len, jpegs)) / 1000}
    for kind in per_photo[0]:
        medians = [statistics.median(runs[kind]) for runs in per_photo]
        summary[f"{kind}_ms"] = statistics.median(medians)
        summary[f"{kind}_ms_range"] = [min(medians), max(medians)]
        summary[f"{kind}_best_ms"] = statistics.median(min(runs[kind]) for runs in per_photo)
    return summary


def onnx_network(repository: Path, entry: catalog.ModelEntry) -> Classify:
    """uint8 crops -> probabilities by the exported network in ONNX Runtime, set up as onnx_network.py does."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = layout.resolve().layout.network_cpu_threads  # the launcher's, for this machine
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(configs.PORTABLE_NETWORK_SPINNING)))
    path = repository / configs.network_name(entry) / "1" / "model.onnx"
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda crops: session.run([configs.NETWORK_OUTPUT], {configs.NETWORK_INPUT: crops})[0]


def time_network(classify: Classify, size: int, batch: int, repeats: int) -> list[float]:
    """[median, fastest] milliseconds per image at `batch` uint8 crops, after one unmeasured run."""
    crops = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        classify(crops)
        times.append((time.perf_counter() - start) * 1000 / batch)
    return [statistics.median(times[1:]), min(times[1:])]


def deviation(classify: Classify, exact: Preprocessor, fast: Preprocessor, jpegs: list[bytes]) -> dict[str, object]:
    """Fast against exact crops: level differences; the network's top-1 / top-5 (as sets) agreement, largest |dp|."""
    decoded = [exact.decode(data) for data in jpegs]
    exact_crops = np.stack([exact.pixels(rgb) for rgb in decoded])
    fast_crops = np.stack([fast.crop_encoded(data) for data in jpegs])
    diff = np.abs(exact_crops.astype(np.int16) - fast_crops.astype(np.int16))
    exact_p, fast_p = classify(exact_crops), classify(fast_crops)
    e5, f5 = (np.argsort(-p, axis=1)[:, : configs.TOP_K] for p in (exact_p, fast_p))
    scales = {dct_scale(rgb.shape[1], rgb.shape[0], fast.resize_short, fast.fast_decode_margin) for rgb in decoded}
    return {
        "dct_scales": sorted(scales),
        "crop_kb": exact_crops[0].nbytes / 1000,
        "mean_diff": float(diff.mean()),
        "max_diff": int(diff.max()),
        "top1": float(np.mean(e5[:, 0] == f5[:, 0])),
        "top5": float(np.mean([set(a) == set(b) for a, b in zip(e5, f5, strict=True)])),
        "max_dp": float(np.abs(exact_p - fast_p).max()),
    }


def run(repository: Path, repeats: int, quiet_percent: float | None, progress: Callable[[str], None]) -> dict:
    """Every preprocessing figure first, while no ONNX Runtime thread exists; then the network's."""
    started, load_before = machine.utc_now(), os.getloadavg()
    cv2.setNumThreads(1)  # the served step's process state: one OpenCV thread, malloc keeping large buffers
    keep_large_buffers()
    entries = [catalog.get(name) for name in MODELS]
    ensure_exported(repository, entries, progress)
    sets = {label: (size, photo_jpegs(size, sigma)) for label, size, sigma in IMAGE_SETS}
    pairs = {(e.name, margin): fast_pair(e, margin) for e in entries for margin in MARGINS}
    rows: dict[tuple[str, str, float], dict] = {}
    for label, (size, jpegs) in sets.items():
        for entry, margin in ((e, m) for e in entries for m in MARGINS if priced(e, size, m)):
            measure = partial(time_set, *pairs[entry.name, margin], jpegs, repeats)
            timed = machine.measure_quietly(measure, quiet_percent, progress=progress)
            row = {"model": entry.name, "resize": entry.preprocessing.resize, "image": label, "margin": margin}
            rows[entry.name, label, margin] = row | timed.value | {"other_cpu_percent": timed.other_cpu_percent}
            progress(f"  {entry.name}, {label}, margin {margin:g}: {timed.value['exact_ms']:.1f} ms exact")
    network_ms = {}
    for entry in entries:
        classify = onnx_network(repository, entry)
        batches = {f"batch{b}": time_network(classify, entry.input_size, b, max(3, repeats // 3)) for b in (1, 8)}
        network_ms[entry.name] = batches
        for (name, label, margin), row in rows.items():
            if name == entry.name:
                row |= deviation(classify, *pairs[name, margin], sets[label][1])
        progress(f"  {entry.name}: network timed, fast decode compared with exact")
    load = [load_before, os.getloadavg()]
    results = {"started_at": started, "machine": machine.facts(), "load": load, "repeats": repeats}
    return results | {"network": network_ms, "rows": list(rows.values())}


def fast_pair(entry: catalog.ModelEntry, margin: float) -> tuple[Preprocessor, Preprocessor]:
    """The served step's exact preprocessing, and its fast decode at `margin`."""
    exact = preprocessor(entry)
    return exact, dataclasses.replace(exact, decode_mode="fast", fast_decode_margin=margin)


def priced(entry: catalog.ModelEntry, size: tuple[int, int], margin: float) -> bool:
    """The default margin always; another only where it decodes `size` at another scale."""
    resize_short = entry.preprocessing.resize_short
    return margin == FAST_DECODE_MARGIN or dct_scale(*size, resize_short, margin) != dct_scale(*size, resize_short)


def _margin(row: dict) -> float:
    return row.get("margin", FAST_DECODE_MARGIN)  # runs from before the margin was a setting used the default


def cores_per_gpu(model: str, ms_per_image: float) -> str:
    """Cores of this per-image cost that one H100 at its published rate keeps busy, low-high."""
    low, high = H100_IMAGES_PER_S[model]
    return f"{low * ms_per_image / 1000:.0f}-{high * ms_per_image / 1000:.0f}"


def gpu_rates() -> str:
    rates = ", ".join(f"{model} {low:,}-{high:,}" for model, (low, high) in H100_IMAGES_PER_S.items())
    return f"published TensorRT FP16 images/s of one H100 at batch 64-128 ({rates}; estimates, no GPU here)"


def machine_sentence(facts: dict, load: list[list[float]]) -> str:
    """CPU, flags, usable cores and the load average at the start (and end), flagged when other jobs ran."""
    busy = " (a shared machine: other jobs ran)" if max(x[0] for x in load) > 0.5 else ""
    when = " before and ".join(f"{x[0]:.2f}" for x in load) + (" after" if len(load) > 1 else " at the start")
    flags = ", ".join(facts["cpu_flags"]) or "no AVX flags"
    return f"{facts['cpu_model']} ({flags}), {facts['usable_cores']} usable cores; load average {when}{busy}"


def _footnote(results: dict, packages: tuple[str, ...]) -> str:
    """Machine, other processes' share while preprocessing was timed, versions, and the command."""
    shares = [r["other_cpu_percent"] for r in results["rows"]]
    other = f"; other processes used {min(shares):.0f}-{max(shares):.0f} % of the machine meanwhile"
    versions = ", ".join(f"{p} {results['machine']['versions'][p]}" for p in packages)
    where = machine_sentence(results["machine"], results["load"])
    return f"{where}{other}. {versions}. Produced by `make bench-preprocess`."


def _ms(row: dict, kind: str) -> str:
    return f"{row[f'{kind}_ms']:.1f} ({row[f'{kind}_best_ms']:.1f})"


def time_table(results: dict) -> str:
    """Where the time of exact preprocessing goes, beside the network's time per image."""
    lines = [
        "| model (resize) | JPEG | decode | resize + crop | **exact total** | network, batch 1 "
        "| network, batch 8 (per image) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in (r for r in results["rows"] if _margin(r) == FAST_DECODE_MARGIN):  # exact: one row per set
        b1, b8 = results["network"][row["model"]].values()
        lines.append(
            f"| {row['model']} ({row['resize']}) | {row['image']} | {_ms(row, 'decode')} | {_ms(row, 'resize_crop')} "
            f"| **{_ms(row, 'exact')}** | {b1[0]:.1f} ({b1[1]:.1f}) | {b8[0]:.1f} ({b8[1]:.1f}) |"
        )
    repeats = results["repeats"]
    lines += [
        "",
        f"Milliseconds per image on one core: median over the {results['rows'][0]['images']} photographs of each "
        f"photo's median of {repeats} runs, in brackets of each photo's fastest run. Network: ONNX Runtime as the "
        f"portable network model runs it, median (fastest) of {max(3, repeats // 3)} runs, uint8 crops in "
        "(normalization in its graph), seeded random weights (speed does not depend on them). "
        f"{_footnote(results, ('opencv-python-headless', 'pillow', 'numpy', 'onnxruntime'))}",
    ]
    return "\n".join(lines)


def price_table(results: dict) -> str:
    """Exact against fast decode (client-side crops: the exact column, on the clients): time, bytes, deviation,
    cores per H100."""
    lines = [
        "| model (resize) | JPEG | margin | DCT scale | JPEG / crop KB | exact ms | fast ms | speed-up (fastest runs) "
        "| crop diff mean / max | top-1 / top-5 agree | max dp | cores per H100: exact | fast |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        scale = ", ".join(f"1/{s}" if s > 1 else "exact" for s in row["dct_scales"])
        (e_low, e_high), (f_low, f_high) = row["exact_ms_range"], row["fast_ms_range"]
        lines.append(
            f"| {row['model']} ({row['resize']}) | {row['image']} | {_margin(row):g} | {scale} "
            f"| {row['jpeg_kb']:.0f} / {row['crop_kb']:.0f} | {row['exact_ms']:.1f} ({e_low:.1f}-{e_high:.1f}) "
            f"| {row['fast_ms']:.1f} ({f_low:.1f}-{f_high:.1f}) "
            f"| {row['exact_ms'] / row['fast_ms']:.2f}x ({row['exact_best_ms'] / row['fast_best_ms']:.2f}x) "
            f"| {row['mean_diff']:.2f} / {row['max_diff']} "
            f"| {row['top1']:.0%} / {row['top5']:.0%} | {row['max_dp']:.1e} "
            f"| {cores_per_gpu(row['model'], row['exact_ms'])} | {cores_per_gpu(row['model'], row['fast_ms'])} |"
        )
    images = results["rows"][0]["images"]
    lines += [
        "",
        "Milliseconds per image on one core of the served step's work (decode, resize, crop; one OpenCV thread): "
        f"median over the {images} photographs of each photo's median of {results['repeats']} runs, exact and fast "
        "alternately; in brackets the fastest and slowest photo. Margin: `--fast-decode-margin` (default "
        f"{FAST_DECODE_MARGIN:g}), another listed where it picks another DCT scale. Speed-up: exact / fast, in "
        "brackets of each photo's fastest run. Crop difference in levels (0-255) over every pixel of the "
        f"{images} crops; agreement and max dp through the exported network (seeded random weights). Cores per "
        f"H100 = {gpu_rates()} x ms per image; client-side crops move the exact column to the clients. "
        f"{_footnote(results, ('opencv-python-headless', 'pillow', 'numpy'))}",
    ]
    return "\n".join(lines)


def _group(row: dict) -> str:
    """A plot group: the image set, and the margin where it is not the default."""
    margin = _margin(row)
    return row["image"] if margin == FAST_DECODE_MARGIN else f"{row['image']},\nmargin {margin:g}"


def bar_chart(path: Path, title: str, ylabel: str, panels: dict[str, dict[str, dict[str, float]]]) -> None:
    """Grouped bars on a log scale, one panel per key: {panel title: {series: {group: value}}}."""
    from perf.plots import plt, save  # matplotlib on first drawing: perf.drills imports this module for its JPEGs

    figure, axes = plt.subplots(1, len(panels), figsize=(1 + 4.6 * len(panels), 3.8), squeeze=False)
    figure.suptitle(title, fontsize=10)
    for axis, (name, series) in zip(axes[0], panels.items(), strict=True):
        groups, width = list(next(iter(series.values()))), 0.8 / len(series)
        for index, (label, values) in enumerate(series.items()):
            offset = (index - (len(series) - 1) / 2) * width
            axis.bar(np.arange(len(groups)) + offset, [values[g] for g in groups], width, label=label)
        axis.set_xticks(np.arange(len(groups)), groups, fontsize=8)
        axis.set(yscale="log", title=name, ylabel=ylabel)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
    save(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = study.arguments("perf preprocess", __doc__, study.PROJECT / "build/perf/preprocess", model=False)
    parser.add_argument("--repeats", type=int, default=15, help="runs per photo (network: a third, at least 3)")
    parser.add_argument("--quiet-percent", type=float, help="time a set again while other processes use more")
    parser.add_argument("--publish", action="store_true", help=f"write the blocks of {DOCS.name} and the plot")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last preprocess.json")
    args = parser.parse_args(argv)
    measure = partial(run, args.repository, args.repeats, args.quiet_percent, partial(print, file=sys.stderr))
    results = study.raw_data(args.out / "preprocess.json", args.report_only, measure)
    png = args.out / "preprocess_price.png"
    tables = {"preprocess-bench": time_table(results), "fast-decode-price": price_table(results)}
    text = "\n\n".join(tables.values())
    (args.out / "preprocess.md").write_text(f"{text}\n\n![exact and fast decode per image]({png.name})\n")
    series = {m: [r for r in results["rows"] if r["model"] == m] for m in MODELS}
    panels = {m: {k: {_group(r): r[f"{k}_ms"] for r in rows} for k in ("exact", "fast")} for m, rows in series.items()}
    bar_chart(png, "Preprocessing per image on one core (ms, lower is better)", "ms per image", panels)
    print(text)
    if args.publish:
        study.publish(DOCS, tables, {png: png.name})
    return 0
