"""What a PaddleClas user runs instead of this server, measured in the same `make perf` run: the peer figure.

PaddleClas's own deploy path, in process: `paddleclas.deploy.python.predict_cls.ClsPredictor` (PaddleClas
2.6.0, deploy/python/predict_cls.py), which builds Paddle Inference's `create_predictor` as
deploy/utils/predictor.py does, with the CPU settings of deploy/configs/inference_cls.yaml (MKL-DNN on, IR
optimisation on, no TensorRT, FP32) and its preprocessing operators (deploy/python/preprocess.py) for the
model's transforms; images read as its `main` reads them (cv2.imread, BGR to RGB), in batches of 8. The
network is the Paddle inference program the served ONNX network was converted from, rebuilt from the export
record. One baseline: the same cores and photographs as the Triton sweep, the threads set to those cores.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path

import cv2

from catalog import ModelEntry
from model_repository.cores import usable_cores
from perf import machine

BATCH = 8  # images per predict() call: the served requests' largest batch, PaddleClas's batch_size setting
SOURCE = (
    "PaddleClas 2.6.0 deploy/python/predict_cls.py (ClsPredictor), deploy/utils/predictor.py and the CPU "
    "settings of deploy/configs/inference_cls.yaml"
)


def settings(entry: ModelEntry, model_dir: Path, threads: int) -> dict:
    """ClsPredictor's config: inference_cls.yaml's Global on CPU, the model's transforms, Topk 5."""
    from catalog.reference import _package_dir
    from export.reference import paddleclas_transforms

    labels = _package_dir("paddleclas", "make setup") / "ppcls/utils/imagenet1k_label_list.txt"
    common = {"use_gpu": False, "enable_mkldnn": True, "cpu_num_threads": threads, "ir_optim": True}
    common |= {"use_tensorrt": False, "use_fp16": False, "enable_profile": False, "gpu_mem": 8000}
    return {
        "Global": common | {"inference_model_dir": str(model_dir), "batch_size": BATCH},
        # predict_cls.main decodes with cv2.imread itself, so its transforms start at the resize
        "PreProcess": {"transform_ops": paddleclas_transforms(entry.preprocessing)[1:]},
        "PostProcess": {"main_indicator": "Topk", "Topk": {"topk": 5, "class_id_map_file": str(labels)}},
    }


def paddle_config(args, model_dir: str):
    """Paddle Inference's Config as deploy/utils/predictor.py's create_paddle_predictor sets it on CPU, but for
    enable_memory_optim: Paddle 3.3.1 refuses it for a Paddle 3 (PIR) program ("Not find predictor_id 0 and
    pass_name memory_optimize_pass" at create_predictor), so the peer runs without that memory reuse."""
    from paddle.inference import Config

    config = Config(model_dir, "inference")
    config.disable_gpu()
    if args.enable_mkldnn:
        config.set_mkldnn_cache_capacity(10)  # PaddleClas's value: ten input shapes cached
        config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(args.cpu_num_threads)
    config.disable_glog_info()
    config.switch_ir_optim(args.ir_optim)
    config.switch_use_feed_fetch_ops(False)  # zero-copy tensors, as PaddleClas runs them
    return config


def predictor(entry: ModelEntry, model_dir: Path, threads: int):
    """PaddleClas's ClsPredictor (its operators, predict, Topk) on the inference model in `model_dir`."""
    from paddle.inference import create_predictor
    from paddleclas.deploy.python.predict_cls import ClsPredictor
    from paddleclas.deploy.utils.config import AttrDict, create_attr_dict

    class Peer(ClsPredictor):
        def create_paddle_predictor(self, args, inference_model_dir=None):
            config = paddle_config(args, inference_model_dir or args.inference_model_dir)
            return create_predictor(config), config

    config = AttrDict(settings(entry, model_dir, threads))
    create_attr_dict(config)
    return Peer(config)


def read(path: Path):
    """One image as predict_cls.main reads it: cv2.imread, then BGR to RGB."""
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"cv2.imread could not read {path}")
    return image[:, :, ::-1]


def throughput(predict: Callable[[list], list], photos: list[Path], seconds: float) -> dict:
    """Images/s over whole batches of BATCH (photos cycling) for at least `seconds`, after one unmeasured batch."""
    stream = cycle(photos)
    last = predict([read(p) for p in islice(stream, BATCH)])
    batches, start = 0, time.perf_counter()
    while batches < 2 or time.perf_counter() - start < seconds:
        last = predict([read(p) for p in islice(stream, BATCH)])
        batches += 1
    elapsed = time.perf_counter() - start
    return {
        "images": batches * BATCH,
        "seconds": round(elapsed, 2),
        "images_per_s": batches * BATCH / elapsed,
        "top1": [int(result["class_ids"][0]) for result in last],
    }


def measure(
    entry: ModelEntry,
    repository: Path,
    photos: list[Path],
    seconds: float,
    quiet_percent: float | None,
    progress: Callable[[str], None] = print,
) -> dict:
    """The peer's images/s for `entry`, on the program rebuilt from `repository`'s export record."""
    import tempfile

    from export.reference import reference_program

    threads = usable_cores()
    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="peer-") as work:
        program = reference_program(entry, None, repository, Path(work), log)
        with contextlib.redirect_stdout(log):
            predict = predictor(entry, program.parent, threads).predict
        measured = machine.measure_quietly(
            lambda: throughput(predict, photos, seconds), quiet_percent, progress=progress
        )
    progress(f"  PaddleClas deploy path, {entry.name}: {measured.value['images_per_s']:.2f} images/s")
    return measured.value | {
        "threads": threads,
        "batch": BATCH,
        "other_cpu_percent": round(measured.other_cpu_percent, 1),
        "attempts": measured.attempts,
        "pid_cpus": sorted(os.sched_getaffinity(0)),
    }
