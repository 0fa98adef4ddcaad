"""Benchmark: Triton's response cache on the public ensemble, a hit against a miss, and memory per answer.

python -m perf.cache_bench [--model NextViT_small_224] [--repository DIR] [--out build/perf/cache]
    [--images 120] [--cache-mib 64] [--publish] [--report-only]

One local server (the launcher's, `--response-cache-bytes`) serves the model. Distinct images are
made from the sample photographs (a different 1-pixel-smaller crop each, re-encoded as PNG, so no
two share bytes or pixels). Each image is sent twice in a row, a miss then a hit, and the pairs are
interleaved, so drift of the shared machine touches both alike. Client-side latency over gRPC, and
the server's own cache_hit / cache_miss times from the statistics API. Memory per answer: the
cache's own utilization gauge (nv_cache_util x size) after N distinct answers, and the server's
resident memory before and after them. `--publish` rewrites the `cache-bench` block of
docs/operations.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image

import catalog
from catalog.reference import sample_photo_paths
from docs.blocks import update
from model_repository import configs, procfs
from model_repository.server import PROJECT, TritonServer, free_port
from perf import machine
from perf.serving import ensure_exported

DOC = PROJECT / "docs" / "operations.md"
METRICS_WAIT_S = 2.5  # Triton refreshes the cache gauges every 2 s (--metrics-interval-ms 2000)


def distinct_images(count: int) -> list[bytes]:
    """`count` PNG files of real photographs, each a different crop (1 px smaller per step), so all differ."""
    photos = [Image.open(path).convert("RGB") for path in sample_photo_paths()]
    images = []
    for index in range(count):
        photo = photos[index % len(photos)]
        shrink = 1 + index // len(photos)
        crop = photo.crop((0, 0, photo.width - shrink, photo.height - shrink))
        buffer = io.BytesIO()
        crop.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def infer_ms(client: grpcclient.InferenceServerClient, model: str, data: bytes) -> float:
    tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object))
    start = time.perf_counter()
    client.infer(model, [tensor], client_timeout=60)
    return (time.perf_counter() - start) * 1000


def cache_stats(client: grpcclient.InferenceServerClient, server: TritonServer, model: str) -> dict[str, int]:
    stats = client.get_inference_statistics(model, headers=server.admin_headers("grpc"), as_json=True)
    inference = stats["model_stats"][0]["inference_stats"]
    return {
        f"{kind}_{field}": int(inference[f"cache_{kind}"].get(field, 0))
        for kind in ("hit", "miss")
        for field in ("count", "ns")
    }


def cache_util(server: TritonServer) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nv_cache_util "):
                return float(line.split()[1])
    raise RuntimeError("the server exposes no nv_cache_util (is the response cache on?)")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p10": ordered[len(ordered) // 10],
        "p90": ordered[(len(ordered) * 9) // 10],
        "n": len(ordered),
    }


def run(entry: catalog.ModelEntry, repository: Path, out: Path, count: int, cache_mib: int) -> dict:
    ensure_exported(repository, [entry])
    images = distinct_images(count)
    out.mkdir(parents=True, exist_ok=True)
    facts = machine.facts()
    cache_bytes = cache_mib << 20
    log = out / "tritonserver.log"
    server = TritonServer(
        repository,
        free_port(),
        free_port(),
        free_port(),
        log_path=log,
        models=[entry.name],
        response_cache_bytes=cache_bytes,
    )
    with server, grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert server.process is not None
        infer_ms(client, entry.triton_name, distinct_images(count + 1)[-1])  # one miss before measuring
        time.sleep(METRICS_WAIT_S)
        before = cache_stats(client, server, entry.triton_name)
        util_before, rss_before = cache_util(server), procfs.descendants(server.process.pid)[0].resident_kib
        misses, hits = [], []
        for data in images:  # interleaved: miss, then the hit of the same image
            misses.append(infer_ms(client, entry.triton_name, data))
            hits.append(infer_ms(client, entry.triton_name, data))
        time.sleep(METRICS_WAIT_S)
        after = cache_stats(client, server, entry.triton_name)
        util_after, rss_after = cache_util(server), procfs.descendants(server.process.pid)[0].resident_kib
    stored = after["miss_count"] - before["miss_count"]
    served_hits = after["hit_count"] - before["hit_count"]
    return {
        "model": entry.triton_name,
        "images": count,
        "cache_bytes": cache_bytes,
        "client_ms": {"miss": summary(misses), "hit": summary(hits)},
        "raw_ms": {"miss": misses, "hit": hits},
        "server_us": {
            "miss_lookup_insert": (after["miss_ns"] - before["miss_ns"]) / max(1, stored) / 1000,
            "hit_lookup": (after["hit_ns"] - before["hit_ns"])
            / max(1, after["hit_count"] - before["hit_count"])
            / 1000,
        },
        "counts": {"hits": served_hits, "stored": stored},
        "bytes_per_answer_cache": (util_after - util_before) * cache_bytes / max(1, stored),
        "server_rss_kib": {"before": rss_before, "after": rss_after},
        "machine": facts,
        "load_average_after": list(os.getloadavg()),
        "command": "make bench-cache",
    }


def plot(result: dict, path: Path) -> Path:
    """Every request's latency, miss and hit, on one log axis (docs/img/cache_latency.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6))
    raw = result["raw_ms"]
    ax.boxplot([raw["hit"], raw["miss"]], orientation="horizontal", widths=0.5)
    ax.set_yticks([1, 2], ["hit", "miss"])
    ax.set_xscale("log")
    ax.set_xlabel("client latency per request, ms (gRPC, log scale)")
    ax.set_title(f"{result['model']}: response cache hit vs miss, {result['images']} images each")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    miss, hit = result["client_ms"]["miss"], result["client_ms"]["hit"]
    facts = result["machine"]
    rss = result["server_rss_kib"]
    flags = [f for f in facts["cpu_flags"] if f.startswith(("avx", "amx"))]
    lines = [
        f"`{result['command']}` on {facts['cpu_model']}, {facts['usable_cores']} usable cores "
        f"({', '.join(flags) or 'no AVX'}), load average {facts['load_average'][0]:.2f} at the start and "
        f"{result['load_average_after'][0]:.2f} at the end; {result['model']}, {result['images']} distinct "
        f"PNG photographs, each sent as a miss and then at once as a hit, over gRPC; "
        f"a {result['cache_bytes'] >> 20} MiB local cache.",
        "",
        "| request | median ms | p10 ms | p90 ms | requests |",
        "|---|---|---|---|---|",
        f"| miss (every step runs, then the answer is stored) | {miss['median']:.1f} | {miss['p10']:.1f} | "
        f"{miss['p90']:.1f} | {miss['n']} |",
        f"| hit (the stored answer) | {hit['median']:.2f} | {hit['p10']:.2f} | {hit['p90']:.2f} | {hit['n']} |",
        "",
        f"Hit over miss, medians: {hit['median'] / miss['median']:.3f} ({miss['median'] / hit['median']:.0f}x "
        f"faster). Inside the server a hit's lookup took {result['server_us']['hit_lookup']:.0f} us and a miss's "
        f"lookup and insertion {result['server_us']['miss_lookup_insert']:.0f} us (statistics API, "
        f"{result['counts']['hits']} hits, {result['counts']['stored']} answers stored).",
        "",
        f"Memory per cached answer: {result['bytes_per_answer_cache']:.0f} bytes of the cache "
        f"(`nv_cache_util` x size over the answers stored). The server's resident memory went from "
        f"{rss['before'] / 1024:.1f} to {rss['after'] / 1024:.1f} MiB over the run's "
        f"{2 * result['images']} requests: the whole server's growth (gRPC buffers, the allocator, first "
        "use of larger images), far more than the cache holds, so not a measure of it.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.cache_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="NextViT_small_224")
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--out", type=Path, default=PROJECT / "build" / "perf" / "cache")
    parser.add_argument("--images", type=int, default=120, help="distinct images (each a miss, then a hit)")
    parser.add_argument("--cache-mib", type=int, default=64)
    parser.add_argument("--publish", action="store_true", help="rewrite the cache-bench block of docs/operations.md")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last run's cache.json")
    args = parser.parse_args(argv)
    raw = args.out / "cache.json"
    if args.report_only:
        result = json.loads(raw.read_text())
    else:
        result = run(catalog.get(args.model), args.repository, args.out, args.images, args.cache_mib)
        raw.write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    print(text)
    if args.publish:
        plot(result, PROJECT / "docs" / "img" / "cache_latency.png")
        text += "\n\n![cache hit vs miss](img/cache_latency.png)"
        update(DOC, "cache-bench", text)
        print(f"wrote the cache-bench block of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
