"""In-process baselines, one configuration per process: python -m perf.inprocess KIND ... prints JSON.

The pipeline is the project's own code without a server, step for step as served: decode, resize
and crop (preprocess package) into uint8 crops, ONNX Runtime on the exported model.onnx (whose graph
normalizes the crops), top-k with the served labels. "Sessions" are ONNX Runtime sessions run side
by side by threads of this process (ONNX Runtime, OpenCV and Pillow release the GIL), each taking
the next `batch` images from a shared stream.

Every configuration runs in a fresh process so one engine's thread pools (OpenMP spin-waiting
in oneDNN, ONNX Runtime's pools) never steal cores from the next measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

import catalog
from catalog.reference import imagenet_labels, sample_photo_paths
from export.parity import paddleclas_input, photo_crops, preprocessor_for, top_k
from model_repository.configs import NETWORK_INPUT
from perf.stats import summarize


def onnx_session(onnx_path: Path, threads: int):
    """threads=0 keeps ONNX Runtime's default (one intra-op thread per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class Pipeline:
    """Encoded images -> top-k labels, the served steps in one process."""

    def __init__(self, entry: catalog.ModelEntry, onnx_path: Path, threads: int) -> None:
        self.preprocessor = preprocessor_for(entry)
        self.session = onnx_session(onnx_path, threads)
        self.labels = imagenet_labels()

    def __call__(self, images: list[bytes]) -> list[list[str]]:
        crops = np.stack([self.preprocessor.pixels(self.preprocessor.decode(data)) for data in images])
        (probabilities,) = self.session.run(None, {NETWORK_INPUT: crops})
        return [[self.labels[i] for i in row] for row in top_k(probabilities)]


def run_pipeline(
    entry: catalog.ModelEntry, onnx_path: Path, sessions: int, threads: int, batch: int, images: int
) -> dict[str, object]:
    """`images` photographs through `sessions` pipelines side by side, `batch` images per call."""
    photos = [path.read_bytes() for path in sample_photo_paths()]
    pipelines = [Pipeline(entry, onnx_path, threads) for _ in range(sessions)]
    for pipeline in pipelines:  # first calls allocate; not measured
        pipeline([photos[i % len(photos)] for i in range(batch)])
    stream = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []

    def worker(pipeline: Pipeline) -> None:
        while True:
            with lock:
                indices = [i for i in (next(stream) for _ in range(batch)) if i < images]
            if not indices:
                return
            start = time.perf_counter()
            pipeline([photos[i % len(photos)] for i in indices])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads_ = [threading.Thread(target=worker, args=(p,)) for p in pipelines]
    start = time.perf_counter()
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join()
    wall = time.perf_counter() - start
    config = {"sessions": sessions, "threads": threads, "batch": batch}
    return config | summarize(latencies, images, wall).as_dict()


def timed_iterations(run, min_seconds: float, min_iterations: int) -> list[float]:
    times = []
    start = time.perf_counter()
    while len(times) < min_iterations or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def network_tensors(entry: catalog.ModelEntry, batch: int, engine: str = "onnxruntime") -> np.ndarray:
    """The sample photographs as each engine takes them, repeated up to `batch` images.

    ONNX Runtime runs the exported model.onnx: the served uint8 crops, N x S x S x 3 (its graph
    normalizes, so its time includes the normalization). Paddle Inference runs PaddleClas's
    program: the same crops normalized, float32 N x 3 x S x S.
    """
    crops = photo_crops(entry)
    crops = np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])))
    return crops if engine == "onnxruntime" else paddleclas_input(entry, crops)


def paddle_predictor(program: Path, threads: int):
    """Paddle Inference on CPU with oneDNN, as PaddleClas's deployment docs configure it."""
    import paddle.inference as pi

    config = pi.Config(str(program), str(program.parent / "inference.pdiparams"))
    config.disable_gpu()
    config.enable_onednn()
    config.set_cpu_math_library_num_threads(threads)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return pi.create_predictor(config), config.onednn_enabled()


def run_network(
    engine: str, entry: catalog.ModelEntry, path: Path, batches: list[int], threads: int, min_seconds: float
) -> list[dict[str, object]]:
    """The network alone on the same tensors: ms per batch (median) and images/s, per batch size."""
    results = []
    if engine == "onnxruntime":
        session = onnx_session(path, threads)
        onednn = None
    else:
        predictor, onednn = paddle_predictor(path, threads)
    for batch in batches:
        tensors = network_tensors(entry, batch, engine)
        if engine == "onnxruntime":

            def infer(tensors: np.ndarray = tensors) -> None:
                session.run(None, {NETWORK_INPUT: tensors})
        else:
            handle = predictor.get_input_handle(predictor.get_input_names()[0])

            def infer(tensors: np.ndarray = tensors, handle=handle) -> None:
                handle.reshape(list(tensors.shape))
                handle.copy_from_cpu(tensors)
                predictor.run()
                predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

        for _ in range(2):  # oneDNN picks and caches kernels per shape on the first runs
            infer()
        times = timed_iterations(infer, min_seconds, 3)
        median = float(np.median(times))
        results.append(
            {
                "engine": engine,
                "batch": batch,
                "threads": threads,
                "iterations": len(times),
                "ms_per_batch": median * 1000.0,
                "throughput": batch / median,
                "onednn": onednn,
            }
        )
    return results


def build_paddle_model(entry: catalog.ModelEntry, source: dict, out_dir: Path) -> Path:
    """The Paddle inference program of the exported model: same weights as its model.onnx."""
    from export import network

    weights = Path(source["path"]) if source.get("kind") == "pdparams" else None
    seed = None if weights else int(source.get("seed") or 0)
    classifier = network.build(entry, weights=weights, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return network.save_inference_model(classifier, entry, out_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf.inprocess", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    pipeline = sub.add_parser("pipeline", help="decode -> preprocess -> ONNX Runtime -> top-k")
    pipeline.add_argument("--model", required=True)
    pipeline.add_argument("--onnx", type=Path, required=True)
    pipeline.add_argument("--sessions", type=int, default=1)
    pipeline.add_argument("--threads", type=int, default=0, help="intra-op threads per session; 0 = default")
    pipeline.add_argument("--batch", type=int, default=1)
    pipeline.add_argument("--images", type=int, required=True)
    net = sub.add_parser("network", help="the network alone on the photographs' crops (PaddleClas's input for paddle)")
    net.add_argument("--engine", choices=("onnxruntime", "paddle"), required=True)
    net.add_argument("--model", required=True)
    net.add_argument("--path", type=Path, required=True, help="model.onnx, or the Paddle inference program")
    net.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    net.add_argument("--threads", type=int, required=True)
    net.add_argument("--seconds", type=float, default=5.0, help="minimum measured time per batch size")
    paddle = sub.add_parser("paddle-model", help="write the Paddle inference program of an exported model")
    paddle.add_argument("--model", required=True)
    paddle.add_argument("--source", required=True, help="the export record's source, as JSON")
    paddle.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    entry = catalog.get(args.model)
    if args.kind == "pipeline":
        result: object = run_pipeline(entry, args.onnx, args.sessions, args.threads, args.batch, args.images)
    elif args.kind == "network":
        result = run_network(args.engine, entry, args.path, args.batches, args.threads, args.seconds)
    else:
        result = {"program": str(build_paddle_model(entry, json.loads(args.source), args.out))}
    # The last stdout line is the result; libraries may print above it.
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
