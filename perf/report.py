"""Markdown report and plots from the raw results of `make perf` (and `make load`).

Reads build/perf/results.json (plus load/load.json when present), writes build/perf/report.md and
plots/*.png; --publish writes the perf-report block of docs/performance.md and docs/img/perf_*.png.
"""

from __future__ import annotations

import json
from pathlib import Path

from perf import plots, study
from perf.run import PROFILES


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _stability(point: dict) -> str:
    text = f"±{point['stability_percent']} % of {point['window_ms'] / 1000:g} s"
    return text + (f", attempt {point['attempts']}" if point["attempts"] > 1 else "")


def _layout_text(layout: dict) -> str:
    """The served layout in a sentence: instances, network threads ("0": cores / instances), batching."""
    parts = []
    for step, cfg in layout.items():
        text = f"{step}: {cfg['instances']} instance(s)"
        if cfg.get("intra_op_threads"):
            text += f" x {'auto' if cfg['intra_op_threads'] == '0' else cfg['intra_op_threads']} thread(s)"
        if cfg["max_queue_delay_us"] is not None:
            text += f", dynamic batching (queue delay {cfg['max_queue_delay_us']} us"
            text += f", preferred {cfg['preferred_batch_size']})" if cfg["preferred_batch_size"] else ")"
        parts.append(text)
    return "; ".join(parts)


def sweep_section(results: dict) -> list[str]:
    lines = [
        "## Triton end to end: perf_analyzer over gRPC",
        "",
        "Encoded photograph in (one per request, cycling through the sample photographs), top-5 out. "
        "Client-side latencies per request, in ms, over the three stable windows perf_analyzer reports "
        "(`requests`); `stable`: the spread they met (`--stability-percentage`; the looser fallback only on a "
        "machine too noisy for the strict one). `other CPU`: share of the machine other processes used during "
        "the point; above 10 % the point is measured again (`attempt`). `failed`: the server's failures over "
        "the point.",
        "",
    ]
    header = ["concurrency", "requests", "images/s", "p50", "p95", "p99", "server queue", "server compute"]
    shown = ""
    for model, data in results["models"].items():
        rows = [
            [p["concurrency"], p["requests"], _f(p["throughput"], 2)]
            + [_f(p[key]) for key in ("p50_ms", "p95_ms", "p99_ms", "server_queue_ms", "server_compute_ms")]
            + [_stability(p), f"{p['other_cpu_percent']:.0f} %", p["failed_requests"]]
            for p in data["points"]
        ]
        layout = _layout_text(data["layout"])
        lines += [f"### {model}", "", f"Served layout: {'as above' if layout == shown else layout}.", ""]
        shown = layout
        lines += study.table([*header, "stable", "other CPU", "failed"], rows)
        unswept = [c for c in PROFILES[results["profile"]].concurrencies if c > data["points"][-1]["concurrency"]]
        if unswept:
            lines += [f"Concurrency {unswept[0]}: refused as overload (bounded queues), so the sweep ended.", ""]
    return lines


def split_section(results: dict) -> list[str]:
    lines = [
        "## Where the time goes (Triton per-model statistics)",
        "",
        "Mean ms per request in each step, queued + compute; `batch` is the network's mean executed batch size.",
        "",
    ]
    for model, data in results["models"].items():
        rows = []
        for p in data["points"]:
            steps = {s["step"]: s for s in p["split"]}
            cells = [
                f"{_f(s['queue_ms'])} + {_f(s['compute_ms'])}" if s else "n/a"
                for s in map(steps.get, plots.STEP_COLOURS)
            ]
            rows.append([p["concurrency"], *cells, _f(steps.get("network", {}).get("mean_batch"), 2)])
        lines += [f"### {model}", "", *study.table(["concurrency", *plots.STEP_COLOURS, "batch"], rows)]
    return lines


def load_section(load: dict) -> list[str]:
    lines = [
        "## Load test: Locust, step load over gRPC",
        "",
        f"Model `{load['model']}` at `{load['url']}`; {load['step_users']} users added every "
        f"{load['step_seconds']} s, {load['steps']} steps. Command: `{load['command']}`.",
        "",
        f"Requests: {load['requests']}, failures: {load['failures']}.",
        "",
    ]
    rows = [
        [s["users"], s["requests"], _f(s["rps"], 2), _f(s["p50_ms"], 0), _f(s["p95_ms"], 0), s["failures"]]
        for s in load["per_step"]
    ]
    lines += study.table(["users", "requests", "requests/s", "p50 ms", "p95 ms", "failures"], rows)
    if load["failures_by_cause"]:
        causes = [[c["error"], c["occurrences"]] for c in load["failures_by_cause"]]
        lines += ["Failures by cause:", "", *study.table(["cause", "count"], causes)]
    return lines


def peer_rows(results: dict) -> list[list[object]]:
    """Per model: Triton's best images/s in the sweep, the PaddleClas deploy path's, and Triton / PaddleClas."""
    rows = []
    for model, peer in results.get("peer", {}).items():
        best = max(results["models"][model]["points"], key=lambda p: p["throughput"])
        ratio = best["throughput"] / peer["images_per_s"]
        rows.append(
            [
                model,
                f"{_f(best['throughput'], 2)} (concurrency {best['concurrency']})",
                f"{_f(peer['images_per_s'], 2)} ({peer['images']} images)",
                f"**{ratio:.2f}**",
                f"{peer['other_cpu_percent']:.0f} %",
            ]
        )
    return rows


def peer_section(results: dict) -> list[str]:
    """Triton against what a PaddleClas user runs instead, from this one run; nothing when perf measured a URL."""
    if "peer" not in results:
        return []
    from perf.peer import BATCH, SOURCE

    threads = next(iter(results["peer"].values()))["threads"]
    header = ["model", "Triton, best images/s", "PaddleClas deploy path, images/s", "Triton / PaddleClas", "other CPU"]
    return [
        "## Beside Triton: PaddleClas's own deploy path",
        "",
        f"What a PaddleClas user runs instead, in process on the same cores and photographs after the server stopped: "
        f"{SOURCE}; its preprocessing operators and Paddle Inference (`create_predictor`, {threads} CPU threads, "
        f"MKL-DNN) on the Paddle inference program the served network was converted from, {BATCH} images per call.",
        "",
        *study.table(header, peer_rows(results)),
    ]


def machine_section(results: dict) -> list[str]:
    m = results["machine"]
    servers = sorted({d["server_version"] for d in results["models"].values() if d.get("server_version")})
    rows = [
        ["CPU", m["cpu_model"]],
        ["CPU flags", ", ".join(m.get("cpu_flags") or []) or "not recorded"],
        ["cores usable / logical", f"{m['usable_cores']} / {m['logical_cpus']}"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS, kernel", f"{m['os']}, {m['kernel']}"],
        ["Python", m["python"]],
        ["load average (1/5/15 min) at start", " / ".join(_f(x, 2) for x in m["load_average"])],
        ["load average at end", " / ".join(_f(x, 2) for x in results["load_average_end"])],
        ["Triton server", ", ".join(servers) or "n/a"],
        *([name, v] for name, v in m["versions"].items()),
    ]
    return ["## Machine and versions", "", *study.table(["", ""], rows)]


def render(results: dict, load: dict | None, plots_drawn: dict[str, Path], image_prefix: str) -> str:
    m, target = results["machine"], results["target"]
    lines = [
        f"Measured {results['started_at']} ({results['duration_s']} s, profile `{results['profile']}`) "
        f"on {m['cpu_model']} with {m['usable_cores']} cores, against "
        f"{'a local tritonserver' if target['local_server'] else 'the server at'} `{target['url']}`.",
        "",
        f"Command: `{results['command']}` (see [perf/README.md](../perf/README.md) to rerun it).",
        "",
        "Models carry seeded random weights: speed does not depend on weight values.",
        "",
        f"![throughput]({image_prefix}{plots_drawn['throughput'].name})",
        "",
        f"![latency]({image_prefix}{plots_drawn['latency'].name})",
        "",
        *sweep_section(results),
        *peer_section(results),
        *split_section(results),
        f"![time split]({image_prefix}{plots_drawn['time_split'].name})",
        "",
        *(load_section(load) if load else []),
        *machine_section(results),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write(out: Path, publish: bool = False) -> Path:
    if not (out / "results.json").is_file():
        raise FileNotFoundError(f"{out / 'results.json'} does not exist: run `make perf` first")
    results = json.loads((out / "results.json").read_text())
    load = json.loads((out / "load" / "load.json").read_text()) if (out / "load" / "load.json").is_file() else None
    drawn = plots.draw_all(results, out / "plots")
    report = out / "report.md"
    report.write_text("# Performance report\n\n" + render(results, load, drawn, "plots/"))
    if not publish:
        return report
    text = render(results, load, drawn, "img/perf_")
    images = {path: f"perf_{path.name}" for path in drawn.values()}
    return study.publish(study.DOCS / "performance.md", {"perf-report": text}, images)
