"""Benchmark (not a test): the near-exact resize tier (pillow-simd) priced against the exact one (stock Pillow).

    make bench-resize-tier   # python -m perf resize-tier --repository REPOSITORY --publish

Both Pillow builds install as the module `PIL`, so each tier runs in a process of its own, as served:
the exact one as the environment has it, the near-exact one with pillow-simd's directory first on
PYTHONPATH (preprocess/tiers.py refuses the wrong build). Each worker cuts the same encoded images
with the served `Preprocessor` for both Pillow-resized families and times the served step's work
(decode, resize, crop) in CPU seconds (time.process_time, one OpenCV thread) on JPEGs of 500x375,
1920x1080 and 4000x3000. The images: the sample photographs, DERIVED variants of them (random crop,
scale and flip as export/fp16_price.py makes them, re-encoded as JPEG at QUALITIES or as PNG), and
the benchmark JPEGs of perf/preprocess_bench.py. The exact worker also cuts and times cheaper routes
beside the tier (ROUTES: stock Pillow's reducing_gap, OpenCV INTER_AREA), to say whether one is
near-exact. Then, for every Pillow-resized catalog model exported in --repository, both tiers' crops
through its network (ONNX Runtime CPU, seeded random weights): max |dp|, top-1 and top-5 agreement,
as export/fp16_price.py prices FP16 (same helpers; an `_ssld` twin with the same ONNX bytes is not run
twice). Writes resize_tier.json and .md under --out; --publish the `resize-tier-price` block of
docs/preprocessing.md.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

import catalog
from catalog.reference import sample_photo_paths
from catalog.resolve import preprocess_parameters
from model_repository.layout import default_pillow_simd_dir
from perf import machine, study
from preprocess import RESIZE_TIER_PARAMETER, Preprocessor

DOCS = study.DOCS / "preprocessing.md"
TIMED_MODEL = "NextViT_small_224"  # the judged model; its family's preprocessing is what is timed
DERIVED = 300  # variants of the photographs, cut by both tiers
QUALITIES = (50, 70, 85, 95)  # JPEG qualities of the variants; every fifth variant is a PNG instead
NETWORK_BUDGET_GFLOP = 3000.0  # derived images per network: all, or fewer for heavy networks (published GFLOPs)
NETWORK_MIN = 48
ROUTES = ("pillow-reducing-gap-3", "opencv-area")
SIZES = ((500, 375), (1920, 1080), (4000, 3000))
SEED = 0


def pillow_entries() -> list[catalog.ModelEntry]:
    """Every catalog model whose preprocessing resizes with Pillow: the models the near-exact tier serves."""
    return [entry for entry in catalog.CATALOG.values() if entry.preprocessing.resize == "pillow-bicubic"]


def family_key(entry: catalog.ModelEntry) -> str:
    """A Pillow preprocessing's key, 'R -> C' (resize_short, crop): the models sharing it get the same crops."""
    return f"{entry.preprocessing.resize_short} -> {entry.preprocessing.crop}"


def families() -> dict[str, catalog.ModelEntry]:
    """One model per distinct Pillow preprocessing."""
    chosen: dict[str, catalog.ModelEntry] = {}
    for entry in pillow_entries():
        chosen.setdefault(family_key(entry), entry)
    return chosen


def served(entry: catalog.ModelEntry, tier: str) -> Preprocessor:
    """The served step's Preprocessor for `entry` at `tier` (its config parameters, the tier's one added)."""
    return Preprocessor.from_parameters(preprocess_parameters(entry) | {RESIZE_TIER_PARAMETER: tier})


def derived_images(count: int, seed: int = SEED) -> list[bytes]:
    """`count` variants of the sample photographs, encoded: JPEG at one of QUALITIES, every fifth one PNG."""
    import cv2

    from export.fp16_price import _variant

    photos = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in sample_photo_paths()]
    rng, images = np.random.default_rng(seed), []
    for index in range(count):
        bgr = _variant(photos[index % len(photos)], rng)
        if index % 5 == 4:
            ok, encoded = cv2.imencode(".png", bgr)
        else:
            ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.choice(QUALITIES))])
        assert ok
        images.append(encoded.tobytes())
    return images


def image_sets(derived: int = DERIVED) -> dict[str, list[bytes]]:
    """Every set the tiers cut: the photographs, `derived` variants, and the benchmark JPEGs by size."""
    from perf.preprocess_bench import benchmark_jpegs

    sets = {"photographs": [path.read_bytes() for path in sample_photo_paths()], "derived": derived_images(derived)}
    return sets | {f"{w}x{h}": jpegs for (w, h), jpegs in benchmark_jpegs().items()}


# --- the worker: one tier, one process -------------------------------------------------------------------


def route_crop(route: str, cut: Preprocessor, data: bytes) -> np.ndarray:
    """`data` decoded as served, resized by another route to the served size, centre-cropped as served."""
    import cv2
    from PIL import Image

    from preprocess import center_crop, resized_shape

    rgb = cut.decode(data)
    size = resized_shape(rgb.shape[1], rgb.shape[0], cut.resize_short)
    if route == "pillow-reducing-gap-3":
        resized = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC, reducing_gap=3.0))
    elif route == "opencv-area":
        resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    else:
        raise ValueError(f"unknown route {route!r}")
    return center_crop(resized, cut.crop)


def cpu_ms(cut: object, images: list[bytes], repeats: int) -> dict[str, float]:
    """CPU milliseconds per image of `cut(data)`: median over images of each image's median, and of its fastest."""
    medians, fastest = [], []
    for data in images:
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            cut(data)
            runs.append((time.process_time() - start) * 1000)
        medians.append(statistics.median(runs))
        fastest.append(min(runs))
    return {"ms": statistics.median(medians), "best_ms": statistics.median(fastest)}


def worker(tier: str, images_path: Path, out: Path, repeats: int) -> None:
    """In this process's PIL: crops of every set for every family, and the timed model's CPU ms per size.

    repeats=0 cuts the tier's crops only (no routes, no timing): what tests compare a served step with.
    """
    import cv2
    import PIL

    from preprocess.allocator import keep_large_buffers
    from preprocess.tiers import loaded_pillow

    cv2.setNumThreads(1)  # as the served step (model_repository/python_models/preprocess.py)
    keep_large_buffers()
    sets: dict[str, list[bytes]] = pickle.loads(images_path.read_bytes())
    routes = ("tier", *ROUTES) if tier == "exact" and repeats else ("tier",)
    crops, timing = {}, {}
    for family, entry in families().items():
        cut = served(entry, tier)
        for route in routes:
            crop = cut.crop_encoded if route == "tier" else partial(route_crop, route, cut)
            crops[(route, family)] = {
                name: np.stack([crop(data) for data in data_list]) for name, data_list in sets.items()
            }
            if entry.name == TIMED_MODEL and repeats:
                timing[route] = {f"{w}x{h}": cpu_ms(crop, sets[f"{w}x{h}"], repeats) for w, h in SIZES}
    result = {"pillow": loaded_pillow(), "version": PIL.__version__, "crops": crops, "timing": timing}
    out.write_bytes(pickle.dumps(result))


def run_worker(tier: str, images_path: Path, pillow_simd_dir: Path, repeats: int) -> dict:
    """One tier's worker in its own process: near-exact with pillow-simd first on PYTHONPATH.

    `images_path`: a pickle of {set name: [encoded image, ...]}; the result's "crops" maps
    (route, family) to {set name: uint8 crops}, route "tier" being the tier's own.
    """
    out = images_path.with_name(f"{tier}.pickle")
    env = dict(os.environ)
    path = [str(study.PROJECT)] + ([str(pillow_simd_dir)] if tier == "near-exact" else [])
    env["PYTHONPATH"] = os.pathsep.join([*path[::-1], env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-m", "perf", "resize-tier", "--worker", tier, "--images", str(images_path)]
    subprocess.run([*command, "--worker-out", str(out), "--repeats", str(repeats)], env=env, check=True)
    result = pickle.loads(out.read_bytes())
    if result["pillow"] != ("pillow-simd" if tier == "near-exact" else "pillow"):
        raise RuntimeError(f"the {tier} worker resized with {result['pillow']}")
    return result


# --- the price ---------------------------------------------------------------------------------------


def deviation(other: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Crop difference in levels over every value: share differing, mean and largest |difference|."""
    diff = np.abs(other.astype(np.int16) - exact.astype(np.int16))
    return {
        "images": len(exact),
        "values_differing": float(np.mean(diff > 0)),
        "mean": float(diff.mean()),
        "max": int(diff.max()),
    }


def network_price(entry: catalog.ModelEntry, repository: Path, near: np.ndarray, exact: np.ndarray) -> dict:
    """Both tiers' crops through the model's exported network: export/fp16_price.py's agreement figures."""
    from export import fp16
    from export.fp16_price import THREADS, _run, confidence
    from model_repository.configs import network_name

    onnx_path = repository / network_name(entry) / "1" / "model.onnx"
    p_exact, seconds = _run(onnx_path, exact, THREADS)
    p_near, _ = _run(onnx_path, near, THREADS)
    return {"model": entry.name, **confidence(p_exact), **fp16.agreement(p_near, p_exact).as_dict(), "seconds": seconds}


def network_images(entry: catalog.ModelEntry, derived: int) -> int:
    return min(derived, max(NETWORK_MIN, round(NETWORK_BUDGET_GFLOP / entry.published.flops_g)))


def price_networks(repository: Path, crops: tuple[dict, dict], derived: int, progress: partial) -> dict[str, dict]:
    """Every exported Pillow-resized model: the photographs and its share of the variants, both tiers."""
    from export.fp16_price import onnx_digest, same_network
    from model_repository.configs import network_name

    results: dict[str, dict] = {"models": {}}
    for entry in pillow_entries():
        if not (repository / network_name(entry) / "1" / "model.onnx").is_file():
            if entry.arch in results["models"]:  # an `_ssld` twin: with random weights its base's network
                results["models"][entry.name] = results["models"][entry.arch] | {
                    "model": entry.name,
                    "same_network_as": entry.arch,
                    "not_exported": True,
                }
            else:
                progress(f"{entry.name}: not exported in {repository}, skipped")
            continue
        family = family_key(entry)
        digest = onnx_digest(repository, entry)
        twin = same_network(results, digest)
        if twin:
            results["models"][entry.name] = results["models"][twin] | {"model": entry.name, "same_network_as": twin}
            continue
        count = network_images(entry, derived)
        near, exact = (
            np.concatenate([c[("tier", family)]["photographs"], c[("tier", family)]["derived"][:count]]) for c in crops
        )
        result = network_price(entry, repository, near, exact) | {"onnx_sha256": digest}
        results["models"][entry.name] = result
        progress(f"{entry.name}: {result['images']} images, max |dp| {result['max_abs_diff']:.1e}")
    return results["models"]


def run(repository: Path, pillow_simd_dir: Path, out: Path, repeats: int, derived: int, progress: partial) -> dict:
    from preprocess.tiers import check_pillow_simd_dir

    pillow_simd_dir = check_pillow_simd_dir(pillow_simd_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_path = out / "images.pickle"
    images_path.write_bytes(pickle.dumps(image_sets(derived)))
    load = [list(os.getloadavg())]
    progress("exact tier (stock Pillow) ...")
    exact = run_worker("exact", images_path, pillow_simd_dir, repeats)
    progress("near-exact tier (pillow-simd) ...")
    near = run_worker("near-exact", images_path, pillow_simd_dir, repeats)
    load.append(list(os.getloadavg()))
    crop_rows = []
    for route, family in exact["crops"]:
        other = near["crops"][("tier", family)] if route == "tier" else exact["crops"][(route, family)]
        reference = exact["crops"][("tier", family)]
        for name in reference:
            row = {"route": "near-exact" if route == "tier" else route, "family": family, "set": name}
            crop_rows.append(row | deviation(other[name], reference[name]))
    return {
        "machine": machine.facts(),
        "load": load,
        "pillow": exact["version"],
        "pillow_simd": near["version"],
        "crops": crop_rows,
        "timing": {"exact": exact["timing"]["tier"], "near-exact": near["timing"]["tier"]}
        | {route: exact["timing"][route] for route in ROUTES},
        "networks": price_networks(repository, (near["crops"], exact["crops"]), derived, progress),
        "command": study.command("perf"),  # `python -m perf resize-tier ...`: argv holds the subcommand
    }


# --- the tables --------------------------------------------------------------------------------------


def _percent(share: float) -> str:
    return f"{share:.0%}" if share in (0.0, 1.0) else f"{share:.1%}"


def speed_table(results: dict) -> list[str]:
    """The timed model's CPU ms per image, per tier and route, and the near-exact tier's images per CPU second."""
    timing = results["timing"]
    rows = []
    for size in timing["exact"]:
        exact, near = timing["exact"][size], timing["near-exact"][size]
        cells = [f"{timing[k][size]['ms']:.2f} ({timing[k][size]['best_ms']:.2f})" for k in ("exact", "near-exact")]
        routes = [f"{timing[r][size]['ms']:.2f}" for r in ROUTES]
        rows.append(
            [size, *cells, f"**{exact['ms'] / near['ms']:.2f}x** ({exact['best_ms'] / near['best_ms']:.2f}x)", *routes]
        )
    header = [
        f"{TIMED_MODEL}, JPEG",
        "exact CPU ms",
        "near-exact CPU ms",
        "images per CPU s, near-exact / exact",
        *ROUTES,
    ]
    return study.table(header, rows)


def crop_table(results: dict) -> list[str]:
    """Crop deviation from the exact tier per route and family, over every image set (the range over sets)."""
    rows = []
    keys = dict.fromkeys((r["route"], r["family"]) for r in results["crops"])
    for route, family in keys:
        sets = [r for r in results["crops"] if (r["route"], r["family"]) == (route, family)]
        images = sum(r["images"] for r in sets)
        shares = [r["values_differing"] for r in sets]
        mean = sum(r["mean"] * r["images"] for r in sets) / images
        spread = f"{_percent(min(shares))}-{_percent(max(shares))}"
        rows.append([route, family, images, spread, f"{mean:.4f}", max(r["max"] for r in sets)])
    header = ["route", "family (R -> C)", "images", "values differing (range over sets)", "mean diff", "max diff"]
    return study.table(header, rows)


def network_table(results: dict) -> list[str]:
    """Agreement per exported network; an `_ssld` twin (the same random network) carries its base's row."""
    rows = []
    for name, r in results["networks"].items():
        if "same_network_as" in r:
            continue
        rows.append(
            [
                name,
                r["images"],
                f"{r['max_abs_diff']:.1e}",
                _percent(r["top1_agreement"]),
                _percent(r["top5_agreement"]),
                f"{r['fp32_top1_median']:.3f}",
            ]
        )
    header = ["model", "images", "max abs dp", "top-1 agree", "top-5 agree", "exact top-1 p (median)"]
    return study.table(header, rows)


def footnote(results: dict) -> str:
    from perf.preprocess_bench import machine_sentence

    versions = (
        f"pillow {results['pillow']} (exact), pillow-simd {results['pillow_simd']} (near-exact, built with `-mavx2`)"
    )
    return (
        f"{machine_sentence(results['machine'], results['load'])}. {versions}. Produced by "
        f"`{results['command']}` (`make bench-resize-tier`)."
    )


def price_text(results: dict) -> str:
    lines = [*speed_table(results), *crop_table(results), *network_table(results), footnote(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = study.arguments("perf resize-tier", __doc__, study.PROJECT / "build/perf/resize-tier", model=False)
    parser.add_argument("--pillow-simd-dir", type=Path, default=default_pillow_simd_dir(), help="pillow-simd's folder")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per image")
    parser.add_argument("--derived", type=int, default=DERIVED, help="variants of the photographs")
    parser.add_argument("--publish", action="store_true", help=f"write the resize-tier-price block of {DOCS.name}")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last resize_tier.json")
    parser.add_argument("--worker", choices=("exact", "near-exact"), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.images, args.worker_out, args.repeats)
        return 0
    progress = partial(print, file=sys.stderr, flush=True)
    measure = partial(run, args.repository, args.pillow_simd_dir, args.out, args.repeats, args.derived, progress)
    results = study.raw_data(args.out / "resize_tier.json", args.report_only, measure)
    text = price_text(results)
    (args.out / "resize_tier.md").write_text(text + "\n")
    print(text)
    if args.publish:
        study.publish(DOCS, {"resize-tier-price": text})
    return 0
