"""CPU time of an exact camera-photo crop and the memory a decoding process keeps, per allocator.

python -m perf allocators [--repeats N]

Each configuration runs in its own process, as a served preprocess step would: one OpenCV thread,
the allocator preloaded with its settings (model_repository/memory.py), `keep_large_buffers` and,
unless `--no-release`, the step's `IdleRelease`. It crops 4000x3000 JPEGs (perf.preprocess_bench's
camera photos) back to back and prints CPU ms per crop (user + system: page faults show as system
time; CPU time rather than wall time, which a shared machine inflates), minor page faults per crop,
and the process's proportional set size right after the loop and 3 s later.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from model_repository import memory
from perf.study import PROJECT

# (name, malloc, extra environment, use the step's allocator helpers)
CONFIGS = (
    ("glibc, step helpers", "system", {}, True),
    (
        "tcmalloc as the NVIDIA image sets it",
        "tcmalloc",
        {"TCMALLOC_AGGRESSIVE_DECOMMIT": "false", "TCMALLOC_RELEASE_RATE": "200"},
        False,
    ),
    ("tcmalloc, aggressive decommit", "tcmalloc", {}, False),
    ("tcmalloc, aggressive decommit, step helpers (served)", "tcmalloc", {}, True),
    ("jemalloc, 1 s decay", "jemalloc", {}, False),
    ("jemalloc, 1 s decay, step helpers", "jemalloc", {}, True),
)


def measure(repeats: int, helpers: bool) -> dict:
    """In this process: crop every camera photo `repeats` times; CPU, faults, PSS."""
    import resource

    import cv2

    from model_repository.procfs import pss_kib
    from perf.preprocess_bench import photo_jpegs
    from preprocess import Preprocessor
    from preprocess.allocator import IdleRelease, keep_large_buffers

    cv2.setNumThreads(1)
    release = IdleRelease() if helpers else None
    allocator = keep_large_buffers() if helpers else "untouched"
    photos, crop = photo_jpegs((4000, 3000)), Preprocessor(256, 224, "pillow-bicubic")
    crop.crop_encoded(photos[0])  # lazy imports and first growth are not the steady state
    start, faults = os.times(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        for data in photos:
            if release:
                release.busy()
            crop.crop_encoded(data)
            if release:
                release.idle()
    end, count = os.times(), repeats * len(photos)
    right_after = pss_kib(os.getpid()) / 1024
    time.sleep(3)
    return {
        "helpers": allocator,
        "cpu_ms": round(1000 * (end.user + end.system - start.user - start.system) / count, 1),
        "system_ms": round(1000 * (end.system - start.system) / count, 1),
        "faults": round((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / count),
        "pss_mb": round(right_after),
        "pss_3s_mb": round(pss_kib(os.getpid()) / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf allocators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--child", choices=("helpers", "plain"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.repeats, args.child == "helpers")))
        return 0
    print("| configuration | CPU ms per crop | of it system | page faults per crop | PSS MB after | 3 s later |")
    print("|---|---|---|---|---|---|")
    for name, malloc, extra, helpers in CONFIGS:
        env = {k: v for k, v in os.environ.items() if k not in memory.MALLOC_VARIABLES}
        env |= memory.malloc_environment(malloc) | extra
        child = [sys.executable, "-m", "perf", "allocators", "--repeats", str(args.repeats)]
        child += ["--child", "helpers" if helpers else "plain"]
        out = subprocess.run(child, env=env, cwd=PROJECT, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        cells = (row["cpu_ms"], row["system_ms"], row["faults"], row["pss_mb"], row["pss_3s_mb"])
        print(f"| {name} | " + " | ".join(map(str, cells)) + " |", flush=True)
    return 0
