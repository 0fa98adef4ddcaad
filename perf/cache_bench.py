"""Benchmark: Triton's response cache on the public ensemble, a hit against a miss, and memory per answer.

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

import io
import os
import statistics
import time
from functools import partial
from pathlib import Path

import tritonclient.grpc as grpcclient
from PIL import Image

import catalog
from catalog.reference import sample_photo_paths
from model_repository import procfs
from model_repository.server import TritonServer
from perf import machine, serving, study, triton_stats
from perf.input_data import image_tensor

DOC = study.DOCS / "operations.md"
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
    tensor = image_tensor(grpcclient, data)
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
    util = triton_stats.gauge(triton_stats.scrape(server.metrics_url, timeout=10), "nv_cache_util")
    if util is None:
        raise RuntimeError("the server exposes no nv_cache_util (is the response cache on?)")
    return util


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p10": ordered[len(ordered) // 10],
        "p90": ordered[(len(ordered) * 9) // 10],
        "n": len(ordered),
    }


def run(model: str, repository: Path, out: Path, count: int, cache_mib: int) -> dict:
    entry = catalog.get(model)
    serving.ensure_exported(repository, [entry])
    images = distinct_images(count)
    out.mkdir(parents=True, exist_ok=True)
    facts, cache_bytes = machine.facts(), cache_mib << 20
    server = TritonServer.on_free_ports(
        repository, out / "tritonserver.log", models=[entry.name], response_cache_bytes=cache_bytes
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
            "hit_lookup": (after["hit_ns"] - before["hit_ns"]) / max(1, served_hits) / 1000,
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
    from perf.plots import plt, save

    fig, ax = plt.subplots(figsize=(7, 2.6))
    raw = result["raw_ms"]
    ax.boxplot([raw["hit"], raw["miss"]], orientation="horizontal", widths=0.5)
    ax.set_yticks([1, 2], ["hit", "miss"])
    ax.set_xscale("log")
    ax.set_xlabel("client latency per request, ms (gRPC, log scale)")
    ax.set_title(f"{result['model']}: response cache hit vs miss, {result['images']} images each")
    return save(fig, path, dpi=110)


def table(result: dict) -> str:
    miss, hit = result["client_ms"]["miss"], result["client_ms"]["hit"]
    facts, rss = result["machine"], result["server_rss_kib"]
    lines = [
        f"`{result['command']}` on {facts['cpu_model']}, {facts['usable_cores']} usable cores "
        f"({', '.join(facts['cpu_flags']) or 'no AVX'}), load average {facts['load_average'][0]:.2f} at the start and "
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
    parser = study.arguments("perf cache", __doc__, study.PROJECT / "build" / "perf" / "cache")
    parser.add_argument("--images", type=int, default=120, help="distinct images (each a miss, then a hit)")
    parser.add_argument("--cache-mib", type=int, default=64)
    parser.add_argument("--publish", action="store_true", help="rewrite the cache-bench block of docs/operations.md")
    parser.add_argument("--report-only", action="store_true", help="redraw from the last run's cache.json")
    args = parser.parse_args(argv)
    measure = partial(run, args.model, args.repository, args.out, args.images, args.cache_mib)
    result = study.raw_data(args.out / "cache.json", args.report_only, measure)
    text = table(result)
    print(text)
    if args.publish:
        plot(result, study.DOCS / "img" / "cache_latency.png")
        study.publish(DOC, {"cache-bench": text + "\n\n![cache hit vs miss](img/cache_latency.png)"})
        print(f"wrote the cache-bench block of {DOC}")
    return 0
