"""python -m export fp16-price [--repository DIR] [--output FILE] [NAME...]: what FP16 costs, on CPU.

For every exported network of a repository, the FP16 network (export/fp16.py) against the FP32
network, both in ONNX Runtime on CPU, on the same uint8 crops: the sample photographs as served,
and variants made from them (random crops, scales and horizontal flips, then the served
preprocessing). Per model: max |p_fp16 - p_fp32| over all 1000 probabilities, top-1 and top-5
agreement. Results are appended per model to the output file as each finishes (a rerun skips the
models already there), and `python -m export report` publishes them in docs/models.md.

What the figure means: ONNX Runtime's CPU provider has FP16 kernels for few operators; for the
others it inserts Casts to FP32 around the node (onnxruntime/core/optimizer/insert_cast_transformer.cc,
"InsertCastTransformer": float16 nodes without a float16 kernel on the CPU are computed in float32).
So on CPU the price is the FP16 rounding of weights and of the activations between operators, not
FP16 arithmetic inside a MatMul or a convolution; a GPU's FP16 kernels may accumulate in FP16 too.
With random weights it is a floor: trained ViTs carry activation outliers that FP16 can overflow.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import catalog
from catalog import ModelEntry
from catalog.reference import sample_photo_paths
from catalog.resolve import photo_crops, preprocessor
from export import fp16
from model_repository.configs import NETWORK_INPUT, network_name
from model_repository.install import EXPORT_RECORD

DEFAULT_REPOSITORY = Path("build/model_repository/production")  # make export-all VARIANT=production
DEFAULT_OUTPUT = Path("build/fp16-price/results.json")
# Variants of the photographs per model: DERIVED, or fewer for heavy networks so that no model costs
# more than about BUDGET_GFLOP of FP32 work (ViT-L/16 at 384 costs seconds per image per pass on CPU).
DERIVED = 48
BUDGET_GFLOP = 1000.0
DERIVED_MIN = 8
SEED = 0
BATCH = 8
THREADS = 2


def image_count(entry: ModelEntry, derived: int = DERIVED, budget_gflop: float = BUDGET_GFLOP) -> int:
    """Derived images for a model: `derived`, fewer where the budget (published GFLOPs per image) says so."""
    return min(derived, max(DERIVED_MIN, round(budget_gflop / entry.published.flops_g)))


def _variant(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random crop (35-100 % of the area, aspect 3:4 to 4:3), scale (0.5-1.5x) and flip (one in two)."""
    import cv2

    height, width = rgb.shape[:2]
    area = rng.uniform(0.35, 1.0) * height * width
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = int(min(width, round(np.sqrt(area * aspect))))
    crop_h = int(min(height, round(np.sqrt(area / aspect))))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    out = rgb[top : top + crop_h, left : left + crop_w]
    scale = rng.uniform(0.5, 1.5)
    size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
    out = cv2.resize(out, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def derived_crops(entry: ModelEntry, count: int, seed: int = SEED) -> np.ndarray:
    """`count` variants of the sample photographs, cut by the model's served preprocessing (uint8 N x S x S x 3)."""
    cut = preprocessor(entry)
    photos = [cut.decode(path.read_bytes()) for path in sample_photo_paths()]
    rng = np.random.default_rng(seed)
    crops = [cut.pixels(_variant(photos[index % len(photos)], rng)) for index in range(count)]
    return np.stack(crops) if crops else np.zeros((0, entry.input_size, entry.input_size, 3), np.uint8)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(path: Path, crops: np.ndarray, threads: int) -> tuple[np.ndarray, float]:
    """Probabilities for `crops`, in batches of BATCH, and the seconds it took."""
    session = _session(path, threads)
    start = time.perf_counter()
    outputs = [session.run(None, {NETWORK_INPUT: crops[i : i + BATCH]})[0] for i in range(0, len(crops), BATCH)]
    return np.concatenate(outputs), time.perf_counter() - start


def price(entry: ModelEntry, repository: Path, derived: int, threads: int, raw: Path) -> dict[str, object]:
    """One model's FP16 price: both networks on the photographs and `derived` variants of them."""
    import onnx

    onnx_path = repository / network_name(entry) / "1" / "model.onnx"
    installed = onnx_path.with_name(fp16.FP16_FILE)  # what a production export of this checkout serves
    photos = photo_crops(entry)
    crops = np.concatenate([photos, derived_crops(entry, derived)])
    with tempfile.TemporaryDirectory(prefix="fp16-price-", dir=raw.parent) as tmp:
        fp16_path = installed if installed.is_file() else Path(tmp) / fp16.FP16_FILE
        fp32_model = onnx.load(str(onnx_path))
        converted = onnx.load(str(installed)) if installed.is_file() else fp16.convert(fp32_model)
        fp16.check_layout(fp32_model, converted)
        del fp32_model
        if not installed.is_file():  # an export made before the FP16 network: converted as the export would
            onnx.save(converted, str(fp16_path))
        del converted
        p32, seconds32 = _run(onnx_path, crops, threads)
        p16, seconds16 = _run(fp16_path, crops, threads)
    np.savez_compressed(raw, fp32=p32, fp16=p16, crops_photographs=len(photos))
    return {
        "model": entry.name,
        **confidence(p32),
        "photographs": fp16.agreement(p16[: len(photos)], p32[: len(photos)]).as_dict(),
        "all": fp16.agreement(p16, p32).as_dict(),
        "derived_images": derived,
        "fp16_network": "installed" if installed.is_file() else "converted by this checkout's export/fp16.py",
        "seconds_fp32": round(seconds32, 1),
        "seconds_fp16": round(seconds16, 1),
        "raw": str(raw),
    }


def onnx_digest(repository: Path, entry: ModelEntry) -> str:
    """The exported network's SHA-256, from its export record."""
    record = repository / network_name(entry) / EXPORT_RECORD
    return json.loads(record.read_text("utf-8"))["onnx"]["sha256"]


def same_network(results: dict, digest: str) -> str | None:
    """A model already measured with this very network (random weights: `_ssld` names are their base model's)."""
    return next((name for name, r in results["models"].items() if r.get("onnx_sha256") == digest), None)


def confidence(fp32: np.ndarray) -> dict[str, float]:
    """How peaked FP32's answers are: a flat distribution has small absolute differences whatever the precision."""
    return {"fp32_top1_median": float(np.median(fp32.max(axis=1)))}


def backfill(results: dict) -> None:
    """Add `confidence` to results measured before it existed, from their raw probabilities."""
    for result in results["models"].values():
        if "fp32_top1_median" not in result and Path(result["raw"]).is_file():
            result |= confidence(np.load(result["raw"])["fp32"])


def read_results(path: Path) -> dict:
    return json.loads(path.read_text("utf-8")) if path.is_file() else {"models": {}}


def main(argv: list[str] | None = None) -> int:
    from perf import machine

    parser = argparse.ArgumentParser(prog="python -m export fp16-price", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="catalog names (default: every exported one)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="exported production networks")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results, one entry per model")
    parser.add_argument("--derived", type=int, default=DERIVED, help="variants of the photographs per model")
    parser.add_argument("--budget", type=float, default=BUDGET_GFLOP, help="GFLOPs of derived images per model")
    parser.add_argument("--threads", type=int, default=THREADS, help="ONNX Runtime intra-op threads")
    parser.add_argument("--again", action="store_true", help="measure models already in --output again")
    args = parser.parse_args(argv)
    entries = [catalog.get(name) for name in args.names] if args.names else list(catalog.CATALOG.values())
    results = read_results(args.output)
    backfill(results)
    command = "python -m export fp16-price " + " ".join(argv if argv is not None else sys.argv[1:])
    results["seed"] = SEED
    args.output.parent.mkdir(parents=True, exist_ok=True)
    measured = 0
    for entry in entries:
        if entry.name in results["models"] and not args.again:
            continue
        if not (args.repository / network_name(entry) / "1" / "model.onnx").is_file():
            print(f"{entry.name}: not exported in {args.repository}, skipped", flush=True)
            continue
        digest = onnx_digest(args.repository, entry)
        twin = same_network(results, digest)
        if twin:  # the same bytes give the same probabilities: measuring again would only cost CPU
            result = results["models"][twin] | {"model": entry.name, "same_network_as": twin}
        else:
            derived = image_count(entry, args.derived, args.budget)
            raw = args.output.with_name(f"{entry.name}.npz")
            result = price(entry, args.repository, derived, args.threads, raw) | {"machine": machine.facts()}
            result["onnx_sha256"] = digest
        result["command"] = command
        results["models"][entry.name] = result
        args.output.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
        measured += 1
        every = result["all"]
        print(
            f"{entry.name}: {every['images']} images, max |dp| {every['max_abs_diff']:.2e}, top-1 "
            f"{every['top1_agreement']:.1%}, top-5 {every['top5_agreement']:.1%} "
            f"({result['seconds_fp32']} s FP32, {result['seconds_fp16']} s FP16)",
            flush=True,
        )
    print(f"{measured} measured; {len(results['models'])} models in {args.output}")
    return 0
