"""Benchmark (not a test): the price list of preprocessing beyond the server's cores (issue 14).

    python -m perf.decode_price [--repository build/model_repository/portable] [--repeats 11] [--no-write]
    make bench-price

For each family (NextViT_small_224: Pillow bicubic; ViT_base_patch16_224: OpenCV bilinear) and image
size (the sample photographs as JPEGs; 1920x1080 and 4000x3000 JPEGs made from the same photographs
by upscaling with OpenCV's bicubic filter plus sensor-like noise, so their entropy-coded size, which
sets the decode time, is a real photo's), it answers:

- cost per image on one core, as the served step runs (one OpenCV thread, its allocator setting):
  exact, fast decode (preprocess.decode_reduced), and with client-side crops, where the server does
  no preprocessing and the client pays the exact cost instead; exact and fast are timed interleaved,
  photo by photo, and reported as the median with the spread of the per-photo medians;
- the bytes on the wire: the JPEG against the uint8 crop a client would send instead;
- how far fast decode is from exact: mean and largest absolute crop difference, and top-1 / top-5
  agreement through the exported network (ONNX Runtime, the model in --repository, exported with
  seeded random weights if missing);
- cores per GPU: the published H100 rates perf/capacity.py holds (estimates, no GPU here) divided
  by one core's images/s.

Writes build/perf/price/price.json and docs/img/preprocess_price.png, and the `fast-decode-price`
block of docs/preprocessing.md (--no-write: print only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import catalog
from catalog.reference import sample_photo_paths
from catalog.resolve import preprocessor
from docs.blocks import update
from model_repository import configs
from perf import machine
from perf.capacity import H100_IMAGES_PER_S
from perf.serving import ensure_exported
from preprocess import Preprocessor
from preprocess.allocator import keep_large_buffers
from preprocess.decoding import dct_scale

PROJECT = Path(__file__).resolve().parent.parent
DOCS = PROJECT / "docs" / "preprocessing.md"
PLOT = PROJECT / "docs" / "img" / "preprocess_price.png"
BLOCK = "fast-decode-price"
MODELS = ("NextViT_small_224", "ViT_base_patch16_224")  # one per family, the two CI exports
# (width, height, noise sigma); None: the sample photographs at their own size. The noiseless 4000x3000
# row shows how the gain depends on the entropy-coded size, which scaled decoding does not reduce.
SIZES = (None, (1920, 1080, 3.0), (4000, 3000, 3.0), (4000, 3000, 0.0))
JPEG_QUALITY = 90
NETWORK_THREADS = 2


@dataclass(frozen=True)
class TestImage:
    photo: str
    data: bytes
    width: int
    height: int


def _cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Upscale to cover width x height (bicubic), then the centre: the photo's content at camera size."""
    scale = max(width / rgb.shape[1], height / rgb.shape[0])
    big = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[top : top + height, left : left + width]


def test_images(size: tuple[int, int, float] | None, seed: int = 0) -> list[TestImage]:
    """Every sample photograph as a quality-90 JPEG, at its own size or upscaled to (width, height) plus noise.

    Noise of sigma 3 (as perf/capacity.py's benchmark JPEGs) gives a 12-megapixel file the size of a
    camera's (1.6 MB here; phones write 2-5 MB), where a smooth upscale compresses far better.
    """
    rng = np.random.default_rng(seed)
    result = []
    for path in sample_photo_paths():
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if size is not None:
            width, height, sigma = size
            noisy = _cover(bgr, width, height).astype(np.float32) + rng.normal(0, sigma, (height, width, 3))
            bgr = np.clip(noisy, 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        assert ok
        result.append(TestImage(path.stem, encoded.tobytes(), bgr.shape[1], bgr.shape[0]))
    return result


def _ms(work, data: bytes) -> float:
    start = time.perf_counter()
    work(data)
    return (time.perf_counter() - start) * 1000


def time_interleaved(exact: Preprocessor, fast: Preprocessor, images: list[TestImage], repeats: int) -> dict:
    """Per photo: the median and the fastest ms of exact and of fast, measured alternately so load hits both alike.

    The fastest run is the cost when no other job got in the way: on a shared machine the fairer figure.
    """
    per_photo: dict[str, list[float]] = {"exact": [], "fast": [], "exact_best": [], "fast_best": []}
    for image in images:
        exact.crop_encoded(image.data), fast.crop_encoded(image.data)  # warm-up
        times: dict[str, list[float]] = {"exact": [], "fast": []}
        for _ in range(repeats):
            times["exact"].append(_ms(exact.crop_encoded, image.data))
            times["fast"].append(_ms(fast.crop_encoded, image.data))
        for mode, values in times.items():
            per_photo[mode].append(statistics.median(values))
            per_photo[f"{mode}_best"].append(min(values))
    return per_photo


def network_session(onnx_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = NETWORK_THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def agreement(session, exact_crops: np.ndarray, fast_crops: np.ndarray) -> dict:
    """Top-1 and top-5 (as a set) agreement of the network's answers for the two kinds of crop, and the largest |dp|."""
    exact_p, fast_p = (
        session.run([configs.NETWORK_OUTPUT], {configs.NETWORK_INPUT: c})[0] for c in (exact_crops, fast_crops)
    )
    top5 = lambda p: np.argsort(-p, axis=1)[:, : configs.TOP_K]  # noqa: E731
    e5, f5 = top5(exact_p), top5(fast_p)
    return {
        "top1": float(np.mean(e5[:, 0] == f5[:, 0])),
        "top5": float(np.mean([set(a) == set(b) for a, b in zip(e5, f5, strict=True)])),
        "max_dp": float(np.abs(exact_p - fast_p).max()),
    }


def measure(repository: Path, repeats: int) -> list[dict]:
    cv2.setNumThreads(1)  # the served step's process state (model_repository/python_models/preprocess.py)
    keep_large_buffers()
    entries = [catalog.get(name) for name in MODELS]
    ensure_exported(repository, entries, progress=lambda line: print(line, file=sys.stderr))
    rows = []
    for size in SIZES:
        images = test_images(size)
        for entry in entries:
            exact = preprocessor(entry)
            fast = dataclasses.replace(exact, decode_mode="fast")
            times = time_interleaved(exact, fast, images, repeats)
            exact_crops = np.stack([exact.crop_encoded(i.data) for i in images])
            fast_crops = np.stack([fast.crop_encoded(i.data) for i in images])
            diff = np.abs(exact_crops.astype(np.int16) - fast_crops.astype(np.int16))
            session = network_session(repository / configs.network_name(entry) / "1" / "model.onnx")
            label = "sample photos" if size is None else f"{size[0]}x{size[1]}" + ("" if size[2] else ", no noise")
            scales = sorted({dct_scale(i.width, i.height, exact.resize_short) for i in images})
            rows.append(
                {
                    "model": entry.name,
                    "resize": entry.preprocessing.resize,
                    "image": label,
                    "dct_scales": scales,
                    "jpeg_kb": statistics.mean(len(i.data) for i in images) / 1000,
                    "crop_kb": exact_crops[0].nbytes / 1000,
                    "exact_ms": statistics.median(times["exact"]),
                    "exact_ms_range": [min(times["exact"]), max(times["exact"])],
                    "fast_ms": statistics.median(times["fast"]),
                    "fast_ms_range": [min(times["fast"]), max(times["fast"])],
                    "exact_best_ms": statistics.median(times["exact_best"]),
                    "fast_best_ms": statistics.median(times["fast_best"]),
                    "mean_diff": float(diff.mean()),
                    "max_diff": int(diff.max()),
                    **agreement(session, exact_crops, fast_crops),
                    "images": len(images),
                }
            )
            print(f"  {entry.name}, {label}: timed", file=sys.stderr)
    return rows


def cores_per_gpu(row: dict, ms: float) -> str:
    if ms <= 0:
        return "0"
    low, high = H100_IMAGES_PER_S[row["model"]]
    return f"{low * ms / 1000:.0f}-{high * ms / 1000:.0f}"


def table(rows: list[dict], facts: dict, load: tuple, repeats: int) -> str:
    lines = [
        "| model (resize) | JPEG | DCT scale | JPEG / crop KB | exact ms | fast ms | speed-up (fastest runs) "
        "| client-side: server ms | crop diff mean / max | top-1 / top-5 agree | max dp "
        "| cores per H100: exact | fast |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        scale = ", ".join(f"1/{s}" if s > 1 else "exact" for s in row["dct_scales"])
        lines.append(
            f"| {row['model']} ({row['resize']}) | {row['image']} | {scale} "
            f"| {row['jpeg_kb']:.0f} / {row['crop_kb']:.0f} "
            f"| {row['exact_ms']:.1f} ({row['exact_ms_range'][0]:.1f}-{row['exact_ms_range'][1]:.1f}) "
            f"| {row['fast_ms']:.1f} ({row['fast_ms_range'][0]:.1f}-{row['fast_ms_range'][1]:.1f}) "
            f"| {row['exact_ms'] / row['fast_ms']:.2f}x ({row['exact_best_ms'] / row['fast_best_ms']:.2f}x) "
            f"| 0 (client: {row['exact_ms']:.1f}) "
            f"| {row['mean_diff']:.2f} / {row['max_diff']} | {row['top1']:.0%} / {row['top5']:.0%} "
            f"| {row['max_dp']:.1e} | {cores_per_gpu(row, row['exact_ms'])} | {cores_per_gpu(row, row['fast_ms'])} |"
        )
    flags = ", ".join(facts["cpu_flags"])
    lines += [
        "",
        f"Milliseconds per image on one core (decode, resize, crop: the served step's work; one OpenCV thread): "
        f"median over the {rows[0]['images']} photographs of each photo's median of {repeats} runs, exact and fast "
        "timed alternately; in brackets the fastest and slowest photo. Speed-up: exact / fast of those medians, and "
        "in brackets of each photo's fastest run (the cost without other jobs in the way). Crop difference in "
        "levels (0-255) over "
        f"every pixel of the {rows[0]['images']} crops; agreement and max dp through the exported network "
        "(seeded random weights) on the same crops. Cores per H100 = published TensorRT FP16 images/s "
        f"(NextViT_small_224 {H100_IMAGES_PER_S['NextViT_small_224'][0]:,}-"
        f"{H100_IMAGES_PER_S['NextViT_small_224'][1]:,}, ViT_base_patch16_224 "
        f"{H100_IMAGES_PER_S['ViT_base_patch16_224'][0]:,}-{H100_IMAGES_PER_S['ViT_base_patch16_224'][1]:,}; "
        "estimates, no GPU here) x ms per image; with client-side crops the server needs none for preprocessing "
        f"and the clients need the exact column in total. {facts['cpu_model']} ({flags}), "
        f"{facts['usable_cores']} usable cores; load average {load[0][0]:.2f} before and {load[1][0]:.2f} after"
        f"{' (a shared machine: other jobs ran)' if max(load[0][0], load[1][0]) > 0.5 else ''}. "
        f"opencv-python-headless {facts['versions']['opencv-python-headless']}, pillow {facts['versions']['pillow']}, "
        f"numpy {facts['versions']['numpy']}. Produced by `make bench-price` (`python -m perf.decode_price`).",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(9.6, 3.6), squeeze=False)
    fig.suptitle("Preprocessing per image on one core (ms, lower is better)", fontsize=10)
    for ax, model in zip(axes[0], MODELS, strict=True):
        mine = [r for r in rows if r["model"] == model]
        x = np.arange(len(mine))
        ax.bar(x - 0.2, [r["exact_ms"] for r in mine], 0.4, label="exact", color="#4c72b0")
        ax.bar(x + 0.2, [r["fast_ms"] for r in mine], 0.4, label="fast decode", color="#dd8452")
        ax.set_xticks(x, [r["image"] for r in mine], fontsize=8)
        ax.set_title(model, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.decode_price", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "perf" / "price")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOCS.name} and the plot")
    args = parser.parse_args(argv)
    facts = machine.facts()
    load_before = os.getloadavg()
    rows = measure(args.repository, args.repeats)
    load = (load_before, os.getloadavg())
    markdown = table(rows, facts, load, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "price.json").write_text(json.dumps({"machine": facts, "load": load, "rows": rows}, indent=2) + "\n")
    print(markdown)
    if not args.no_write:
        plot(rows, PLOT)
        update(DOCS, BLOCK, markdown)
        print(f"\nwritten to {DOCS.relative_to(PROJECT)} and {PLOT.relative_to(PROJECT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
