"""Markdown report and plots from the raw results of `make perf` (and `make load`, `make perf-tune`).

    python -m perf report [--out build/perf] [--publish]

Reads build/perf/results.json (plus load/load.json and tuning/tuning.json when present), writes
build/perf/report.md and build/perf/plots/*.png. --publish copies them to docs/performance.md and
docs/img/perf_*.png; a hand-written block between the ANALYSIS markers of the existing
docs/performance.md is kept, so re-publishing a new run never loses the interpretation (which
must then be checked against the new numbers).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from perf import goals, plots

PROJECT = Path(__file__).resolve().parent.parent
DOCS = PROJECT / "docs"
ANALYSIS_START = "<!-- ANALYSIS START: hand-written, kept by `python -m perf report --publish` -->"
ANALYSIS_END = "<!-- ANALYSIS END -->"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} %"


def _stability(point: dict) -> str:
    if not point.get("window_ms"):
        return "n/a"
    text = f"±{point['stability_percent']} % of {point['window_ms'] / 1000:g} s"
    attempts = point.get("attempts", 1)
    return text + (f", attempt {attempts}" if attempts > 1 else "")


def other_cpu_values(results: dict) -> list[float]:
    """Every measurement's share of the machine taken by processes outside the run."""
    values = []
    for data in results.get("models", {}).values():
        values += [p.get("other_cpu_percent") for p in data.get("points", [])]
        base = data.get("baselines", {})
        values += [
            r.get("other_cpu_percent") for r in [base.get("pipeline_naive") or {}, *base.get("pipeline_sweep", [])]
        ]
        values += [r.get("other_cpu_percent") for rows in base.get("network", {}).values() for r in rows]
    return [v for v in values if v is not None]


def machine_section(results: dict) -> list[str]:
    m = results.get("machine", {})
    load_start, load_end = m.get("load_average"), results.get("load_average_end")
    versions = m.get("versions", {})
    server_versions = {d.get("server_version") for d in results.get("models", {}).values()} - {None}
    rows = [
        ["CPU", m.get("cpu_model")],
        ["cores usable / logical", f"{m.get('usable_cores')} / {m.get('logical_cpus')}"],
        ["memory", f"{m.get('memory_gib')} GiB"],
        ["OS, kernel", f"{m.get('os')}, {m.get('kernel')}"],
        ["Python", m.get("python")],
        ["load average (1/5/15 min) at start", " / ".join(_f(x, 2) for x in load_start) if load_start else "n/a"],
        ["load average at end", " / ".join(_f(x, 2) for x in load_end) if load_end else "n/a"],
        ["Triton server", ", ".join(sorted(server_versions)) or "n/a"],
    ]
    rows += [[name, v] for name, v in versions.items()]
    return ["## Machine and versions", "", *_table(["", ""], rows)]


def goals_section(results: dict) -> list[str]:
    rows = []
    for g in goals.evaluate_all(results):
        value = "n/a" if g.value is None else (f"{g.value:+.1f} ms" if "ms" in g.target else f"{g.value:.2f}x")
        verdict = "n/a" if g.met is None else ("met" if g.met else "**missed**")
        rows.append([g.model, g.goal, value, g.target, verdict, g.detail])
    other = other_cpu_values(results)
    quiet = (
        f"Processes outside this run used at most {max(other):.0f} % of the machine during any one measurement "
        f"(median {sorted(other)[len(other) // 2]:.0f} %; column `other CPU` below)."
        if other
        else "The share of the machine used by other processes was not recorded in this run."
    )
    return [
        "## Goals: ratios from this run",
        "",
        f"Every ratio compares two measurements from this one run on this one machine. {quiet}",
        "",
        *_table(["model", "goal", "measured", "target", "verdict", "from"], rows),
    ]


def _threads(configured: str | None) -> str:
    """The network's intra_op_threads parameter; "0" means the usable cores shared by the instances."""
    return "auto" if configured == "0" else str(configured)


def _layout_text(layout: dict) -> str:
    parts = []
    for step, cfg in layout.items():
        text = f"{step}: {cfg['instances']} instance(s)"
        if cfg.get("intra_op_threads"):
            text += f" x {_threads(cfg['intra_op_threads'])} thread(s)"
        if cfg.get("intra_op_spinning") == "0":
            text += " (idle threads block, no spinning)"
        batching = cfg.get("dynamic_batching")
        if batching is not None:
            text += f", dynamic batching (queue delay {batching['max_queue_delay_us']} us"
            if batching["preferred_batch_size"]:
                text += f", preferred {batching['preferred_batch_size']}"
            text += ")"
        parts.append(text)
    return "; ".join(parts)


def _compact_layout(layout: dict) -> str:
    """preprocess instances; network instances x threads; network batching: one short cell."""
    pre, net = layout.get("preprocess", {}), layout.get("network", {})
    text = f"pre {pre.get('instances')}; net {net.get('instances')}x{_threads(net.get('intra_op_threads'))}"
    text += " no spin" if net.get("intra_op_spinning") == "0" else ""
    batching = net.get("dynamic_batching") or {}
    text += f"; delay {batching.get('max_queue_delay_us')} us"
    if batching.get("preferred_batch_size"):
        text += f", preferred {'/'.join(map(str, batching['preferred_batch_size']))}"
    return text


def sweep_section(results: dict) -> list[str]:
    lines = [
        "## Triton end to end: perf_analyzer over gRPC",
        "",
        "Encoded photograph in (one per request, cycling through the sample photographs), top-5 out. "
        "Latencies are client-side, per request, in ms, over the requests of the three stable windows "
        "perf_analyzer reports (`requests`); `stable` is the spread those windows met (perf_analyzer's "
        "`--stability-percentage`; the looser fallback is used only when the machine was too noisy for "
        "the strict one). `other CPU`: share of the machine used by processes outside this run during the "
        "point; a point above 10 % is discarded and measured again once they calm down (`attempt`). "
        "`failed` is the server's failure count for the whole point.",
        "",
    ]
    for model, data in results.get("models", {}).items():
        lines += [f"### {model}", "", f"Served layout: {_layout_text(data.get('layout', {}))}.", ""]
        rows = [
            [
                p["concurrency"],
                p["requests"],
                _f(p["throughput"], 2),
                _f(p["p50_ms"]),
                _f(p["p95_ms"]),
                _f(p["p99_ms"]),
                _f(p["server_queue_ms"]),
                _f(p["server_compute_ms"]),
                _stability(p),
                _pct(p.get("other_cpu_percent")),
                int(p["failed_requests"]),
            ]
            for p in data.get("points", [])
        ]
        header = ["concurrency", "requests", "images/s", "p50", "p95", "p99", "server queue", "server compute"]
        lines += _table([*header, "stable", "other CPU", "failed"], rows)
    return lines


def split_section(results: dict) -> list[str]:
    lines = [
        "## Where the time goes (Triton per-model statistics)",
        "",
        "Mean ms per request in each step, queued + compute; `batch` is the network's mean executed batch size.",
        "",
    ]
    for model, data in results.get("models", {}).items():
        rows = []
        for p in data.get("points", []):
            steps = {s["step"]: s for s in p["split"]}
            row: list[object] = [p["concurrency"]]
            for name in ("preprocess", "network", "postprocess"):
                s = steps.get(name)
                row.append(f"{_f(s['queue_ms'])} + {_f(s['compute_ms'])}" if s else "n/a")
            network = steps.get("network")
            row.append(_f(network["mean_batch"], 2) if network else "n/a")
            rows.append(row)
        lines += [f"### {model}", "", *_table(["concurrency", "preprocess", "network", "postprocess", "batch"], rows)]
    return lines


def baselines_section(results: dict) -> list[str]:
    lines = [
        "## Baselines, same run, same machine",
        "",
        "In-process pipeline: the project's own decode -> preprocess -> ONNX Runtime -> top-k, no server. "
        "Naive: one image at a time, batch 1, ONNX Runtime's default threads. "
        "Sweep: sessions side by side (threads of one process) x intra-op threads per session x batch size.",
        "",
    ]
    for model, data in results.get("models", {}).items():
        base = data.get("baselines", {})
        naive, best = base.get("pipeline_naive"), base.get("pipeline_best")
        if not naive:
            continue
        rows = [
            [
                "naive",
                "1",
                "default",
                "1",
                naive["images"],
                _f(naive["throughput"], 2),
                _f(naive["p50_ms"]),
                _pct(naive.get("other_cpu_percent")),
            ]
        ]
        for r in base.get("pipeline_sweep", []):
            marker = " **(best)**" if r == best else ""
            rows.append(
                [
                    "sweep" + marker,
                    r["sessions"],
                    r["threads"],
                    r["batch"],
                    r["images"],
                    _f(r["throughput"], 2),
                    _f(r["p50_ms"]),
                    _pct(r.get("other_cpu_percent")),
                ]
            )
        header = ["configuration", "sessions", "threads", "batch", "images", "images/s", "p50 ms per call", "other CPU"]
        lines += [f"### {model}: in-process pipeline", "", *_table(header, rows)]
        net_rows = [
            [
                "ONNX Runtime" if r["engine"] == "onnxruntime" else "Paddle Inference (oneDNN)",
                r["batch"],
                r["threads"],
                r["iterations"],
                _f(r["ms_per_batch"]),
                _f(r["throughput"], 2),
                _pct(r.get("other_cpu_percent")),
            ]
            for rows_ in base.get("network", {}).values()
            for r in rows_
        ]
        header = ["engine", "batch", "threads", "iterations", "ms per batch (median)", "images/s", "other CPU"]
        lines += [f"### {model}: network alone, same preprocessed photographs", "", *_table(header, net_rows)]
    return lines


def load_section(load: dict) -> list[str]:
    lines = [
        "## Load test: Locust, step load over gRPC",
        "",
        f"Model `{load['model']}` at `{load['url']}`; {load['users_per_step']} users added every "
        f"{load['step_seconds']} s, {load['steps']} steps. Command: `{load['command']}`.",
        "",
        f"Requests: {load['requests']}, failures: {load['failures']}.",
        "",
    ]
    rows = [
        [s["users"], s["requests"], _f(s["rps"], 2), _f(s["p50_ms"], 0), _f(s["p95_ms"], 0), s["failures"]]
        for s in load.get("per_step", [])
    ]
    lines += _table(["users", "requests", "requests/s", "p50 ms", "p95 ms", "failures"], rows)
    if load.get("failures_by_cause"):
        lines += ["Failures by cause:", ""]
        lines += _table(["cause", "count"], [[c["error"], c["occurrences"]] for c in load["failures_by_cause"]])
    return lines


def _goal_cell(goal: goals.Goal | None) -> str:
    if goal is None or goal.value is None:
        return "n/a"
    value = f"{goal.value:+.1f} ms" if "ms" in goal.target else f"{goal.value:.2f}x"
    return value if goal.met else f"**{value}**"


def tuning_section(tuning: dict) -> list[str]:
    lines = [
        "## Tuning: candidate layouts, measured in one run",
        "",
        "Each candidate is the same exported models with one change to the instance/thread/batching "
        f"layout, served by a fresh local tritonserver and swept at concurrency {tuning['concurrencies']}. "
        "The in-process pipeline (naive and the best of its sweep) was measured at the start of the same "
        "run, so each candidate is judged against the goals; a missed goal is in bold. "
        f"Command: `{tuning['command']}`; {tuning['started_at']}; load average (1 min) "
        f"{_f((tuning.get('load_average_start') or [None])[0], 2)} at start, "
        f"{_f((tuning.get('load_average_end') or [None])[0], 2)} at end.",
        "",
    ]
    judged = (
        "Triton vs naive in-process",
        "Triton vs best in-process",
        "p50 at concurrency 1, Triton minus in-process",
    )
    rows = []
    for c in tuning.get("candidates", []):
        for model, m in c["models"].items():
            base = tuning.get("baselines", {}).get(model, {})
            by_name = {g.goal: g for g in goals.evaluate(model, {"points": m["points"], "baselines": base})}
            rows.append(
                [
                    c["layout"]["name"],
                    model,
                    f"{_f(m['best_throughput'], 2)} (c{m['best_concurrency']})",
                    *(_goal_cell(by_name.get(name)) for name in judged),
                    _f(m["c1_p50_ms"]),
                    _pct(max((p.get("other_cpu_percent") or 0.0 for p in m["points"]), default=None)),
                    _compact_layout(m["layout"]),
                ]
            )
    header = [
        "candidate",
        "model",
        "best images/s",
        "vs naive (>= 1.10x)",
        "vs best in-process (>= 0.95x)",
        "p50 at 1 minus in-process (<= 5 ms)",
        "p50 ms at 1",
        "other CPU (max)",
        "served layout",
    ]
    lines += _table(header, rows)
    for model, base in tuning.get("baselines", {}).items():
        naive, best = base["pipeline_naive"], base["pipeline_best"]
        lines.append(
            f"In-process {model}: naive {naive['throughput']:.2f} images/s, p50 {naive['p50_ms']:.1f} ms; best "
            f"{best['throughput']:.2f} images/s ({best['sessions']} session(s) x {best['threads']} thread(s), "
            f"batch {best['batch']})."
        )
    return [*lines, ""]


def render(results: dict, load: dict | None, tuning: dict | None, plot_paths: dict[str, str]) -> str:
    m = results.get("machine", {})
    lines = [
        "# Performance report",
        "",
        f"Measured {results.get('started_at')} ({results.get('duration_s')} s, profile `{results.get('profile')}`) "
        f"on {m.get('cpu_model')} with {m.get('usable_cores')} cores, against "
        f"{'a local tritonserver' if results.get('target', {}).get('local_server') else 'the server at'} "
        f"`{results.get('target', {}).get('url')}`.",
        "",
        f"Command: `{results.get('command')}` (see [perf/README.md](../perf/README.md) to rerun it).",
        "",
        "Models carry seeded random weights: speed does not depend on weight values.",
        "",
    ]
    lines += goals_section(results)
    lines += [f"![throughput]({plot_paths['throughput']})", "", f"![latency]({plot_paths['latency']})", ""]
    lines += sweep_section(results)
    lines += split_section(results)
    lines += [f"![time split]({plot_paths['time_split']})", ""]
    lines += baselines_section(results)
    lines += [f"![engines]({plot_paths['engines']})", ""]
    if tuning:
        lines += tuning_section(tuning)
    if load:
        lines += load_section(load)
    lines += machine_section(results)
    return "\n".join(lines).rstrip() + "\n"


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def kept_analysis(existing: Path) -> str | None:
    if not existing.is_file():
        return None
    text = existing.read_text()
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text[text.index(ANALYSIS_START) : text.index(ANALYSIS_END) + len(ANALYSIS_END)]
    return None


def with_analysis(report: str, analysis: str | None) -> str:
    """Insert the hand-written analysis after the goals table (before the first plot)."""
    if not analysis:
        return report
    marker = "![throughput]"
    index = report.index(marker)
    return report[:index] + analysis + "\n\n" + report[index:]


def write(out: Path, publish: bool = False) -> Path:
    results = _read(out / "results.json")
    if results is None:
        raise FileNotFoundError(f"{out / 'results.json'} does not exist: run `make perf` first")
    load, tuning = _read(out / "load" / "load.json"), _read(out / "tuning" / "tuning.json")
    drawn = plots.draw_all(results, out / "plots")
    report = out / "report.md"
    report.write_text(render(results, load, tuning, {k: f"plots/{p.name}" for k, p in drawn.items()}))
    if publish:
        images = DOCS / "img"
        images.mkdir(parents=True, exist_ok=True)
        for path in drawn.values():
            shutil.copyfile(path, images / f"perf_{path.name}")
        target = DOCS / "performance.md"
        text = render(results, load, tuning, {k: f"img/perf_{p.name}" for k, p in drawn.items()})
        target.write_text(with_analysis(text, kept_analysis(target)))
        return target
    return report
