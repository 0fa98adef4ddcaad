"""Benchmark (not a test): decode + preprocess time per image beside the network's time per image.

    python -m perf.preprocess_bench [--repeats 15] [--repository build/model_repository/portable] [--no-write]

Question answered: is preprocessing the bottleneck? For a typical 500x375 JPEG and a 4000x3000
camera-sized JPEG, each preprocessing family is timed as the preprocess model runs it (the served
code: decode, resize + crop into the uint8 crop; one OpenCV thread; malloc keeping large buffers, see
preprocess/allocator.py), and the exported network of the same family is timed with ONNX Runtime
as the portable network model runs it (2 intra-op threads, uint8 crops in: its graph normalizes, so
the normalization is part of the network's time), at batch 1 and 8. Medians and best of
--repeats runs; the machine's load is printed with the table because shared machines make every
number noisy. The table replaces the marked block of docs/preprocessing.md (--no-write: print only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np

import catalog
from catalog.reference import sample_photo_paths
from catalog.resolve import preprocessor as preprocessor_for
from docs import blocks
from model_repository import configs
from model_repository.cores import usable_cores
from perf.machine import cpu_model
from preprocess import Preprocessor, decode
from preprocess.allocator import keep_large_buffers

PROJECT = Path(__file__).resolve().parent.parent
DOCS = PROJECT / "docs" / "preprocessing.md"
MODELS = ("NextViT_small_224", "ViT_base_patch16_224")  # one per family, the two CI exports
NETWORK_THREADS = 2  # model_repository/configs.py network_config's default for the portable variant


@dataclass(frozen=True)
class TestImage:
    label: str
    data: bytes


def _test_images() -> list[TestImage]:
    """Two JPEGs (quality 90) from real photographs, as cameras and web pages deliver them.

    The 4000x3000 one is upscaled from the largest shipped photo, and sensor-like noise is added so
    that its entropy-coded size, which sets the decode time, is that of a real 12 MP photo.
    """
    photos = sample_photo_paths()[0].parent  # scikit-image's shipped photographs
    coffee = cv2.imread(str(photos / "coffee.png"))[:, :, ::-1]  # 600x400
    small = np.ascontiguousarray(coffee[12:387, 50:550])
    retina = cv2.imread(str(photos / "retina.jpg"))[:, :, ::-1]  # 1411x1411
    large = cv2.resize(retina[176:1234], (4000, 3000), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    large += np.random.default_rng(0).normal(0, 4, large.shape).astype(np.int16)
    large = np.clip(large, 0, 255).astype(np.uint8)
    result = []
    for rgb in (small, large):
        ok, buffer = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        height, width = rgb.shape[:2]
        result.append(TestImage(f"{width}x{height} JPEG ({len(buffer) / 1e6:.2f} MB)", buffer.tobytes()))
    return result


@dataclass(frozen=True)
class Timing:
    """Milliseconds: the median, and the fastest run (the cost without other jobs in the way)."""

    median: float
    best: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.median + other.median, self.best + other.best)

    def __truediv__(self, divisor: int) -> Timing:
        return Timing(self.median / divisor, self.best / divisor)

    def __str__(self) -> str:
        return f"{self.median:.1f} ({self.best:.1f})"


def _time(work: Callable[[], object], repeats: int) -> Timing:
    work()  # warm-up: first-call costs (lazy imports, allocator growth) are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return Timing(statistics.median(times), min(times))


@dataclass(frozen=True)
class Row:
    model: str
    image: str
    decode: Timing
    resize_crop: Timing
    network_b1: Timing | None
    network_b8: Timing | None

    @property
    def preprocess(self) -> Timing:
        return self.decode + self.resize_crop


def time_preprocessing(prep: Preprocessor, data: bytes, repeats: int) -> tuple[Timing, Timing]:
    """Decode, then resize + crop: all the served step does (the network normalizes the crop)."""
    rgb = decode(data, prep.max_pixels)
    return (
        _time(lambda: decode(data, prep.max_pixels), repeats),
        _time(lambda: prep.pixels(rgb), repeats),
    )


def time_network(onnx_path: Path, size: int, batch: int, repeats: int) -> Timing:
    """ONNX Runtime milliseconds per image at `batch` of uint8 S x S x 3 crops, configured as onnx_network.py does."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = NETWORK_THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    crops = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    inputs = {configs.NETWORK_INPUT: crops}
    return _time(lambda: session.run([configs.NETWORK_OUTPUT], inputs), repeats) / batch


def measure(models: list[str], repository: Path, repeats: int) -> list[Row]:
    # The process state of a served preprocess instance: one OpenCV thread, malloc keeping large
    # buffers. Preprocessing is timed before any ONNX Runtime session exists, as in its own stub.
    cv2.setNumThreads(1)
    keep_large_buffers()
    test_images = _test_images()
    preprocessing = {}
    for name in models:
        prep = preprocessor_for(catalog.get(name))  # the served step's own parameters
        for image in test_images:
            preprocessing[name, image.label] = time_preprocessing(prep, image.data, repeats)
            print(f"  {name}, {image.label}: preprocessing timed", file=sys.stderr)
    rows = []
    for name in models:
        entry = catalog.get(name)
        onnx_path = repository / configs.network_name(entry) / "1" / "model.onnx"
        if onnx_path.exists():
            network = tuple(time_network(onnx_path, entry.input_size, b, max(3, repeats // 3)) for b in (1, 8))
        else:
            print(f"warning: no {onnx_path}, so no network time (make export MODEL={name})", file=sys.stderr)
            network = (None, None)
        rows += [Row(name, image.label, *preprocessing[name, image.label], *network) for image in test_images]
    return rows


def _ms(value: Timing | None) -> str:
    return "—" if value is None else str(value)


def table(rows: list[Row], repeats: int, load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    lines = [
        "| model (resize) | image | decode | resize + crop | **preprocess total** "
        "| network, batch 1 | network, batch 8 (per image) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        resize = catalog.get(row.model).preprocessing.resize
        lines.append(
            f"| {row.model} ({resize}) | {row.image} | {_ms(row.decode)} | {_ms(row.resize_crop)} "
            f"| **{_ms(row.preprocess)}** | {_ms(row.network_b1)} | {_ms(row.network_b8)} |"
        )
    versions = ", ".join(f"{p} {version(p)}" for p in ("opencv-python-headless", "pillow", "numpy", "onnxruntime"))
    lines += [
        "",
        f"Milliseconds per image: median of {repeats} runs (network: of {max(3, repeats // 3)}), and in brackets "
        "the fastest run, the cost when no other job gets in the way. Preprocessing on one thread, network on "
        f"{NETWORK_THREADS} (uint8 crops in, normalization in its graph). "
        f"{cpu_model()}, {usable_cores()} cores; load average "
        f"{load[0][0]:.1f} before and {load[1][0]:.1f} after (other jobs shared the machine). {versions}. "
        "Network weights are seeded random (speed does not depend on them). "
        "Produced by `python -m perf.preprocess_bench`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.preprocess_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="catalog names (default: one per family)")
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help=f"print the table without updating {DOCS.name}")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = measure(args.models, args.repository, args.repeats)
    markdown = table(rows, args.repeats, (load_before, os.getloadavg()))
    print(markdown)
    if not args.no_write:
        blocks.update(DOCS, "preprocess-bench", markdown)
        print(f"\nwritten to {DOCS.relative_to(PROJECT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
