"""PNG plots of one results.json: what people look at first, so each answers one question.

throughput.png  does Triton beat the in-process baselines, and at which concurrency?
latency.png     what do p50/p95/p99 cost as concurrency grows?
time_split.png  where does a request's time go inside the ensemble (queueing vs compute)?
engines.png     ONNX Runtime against Paddle Inference on the same tensors.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STEP_COLOURS = {"preprocess": "#4c72b0", "network": "#dd8452", "postprocess": "#55a868"}


def _axes(count: int, title: str, height: float = 3.6):
    fig, axes = plt.subplots(1, count, figsize=(max(6.4, 4.8 * count), height), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _concurrency_axis(ax, name: str, ylabel: str, legend_size: int = 8, legend_loc: str = "best") -> None:
    """Title, labels and legend shared by every per-model panel drawn against concurrency."""
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size, loc=legend_loc)


def throughput(models: dict, path: Path) -> Path:
    fig, axes = _axes(len(models), "Throughput against concurrency (images/s, higher is better)")
    for ax, (name, data) in zip(axes, models.items(), strict=True):
        points = data.get("points", [])
        xs = [p["concurrency"] for p in points]
        ax.plot(xs, [p["throughput"] for p in points], "o-", label="Triton (gRPC)")
        base = data.get("baselines", {})
        if "pipeline_naive" in base:
            ax.axhline(base["pipeline_naive"]["throughput"], color="grey", ls="--", label="in-process naive")
        if "pipeline_best" in base:
            ax.axhline(base["pipeline_best"]["throughput"], color="black", ls=":", label="in-process best")
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        _concurrency_axis(ax, name, "images/s", legend_loc="lower right")
    return _save(fig, path)


def latency(models: dict, path: Path) -> Path:
    fig, axes = _axes(len(models), "Request latency percentiles (ms, lower is better)")
    for ax, (name, data) in zip(axes, models.items(), strict=True):
        points = data.get("points", [])
        xs = [p["concurrency"] for p in points]
        for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
            ax.plot(xs, [p[key] for p in points], style, label=f"Triton {key[:3]}")
        naive = data.get("baselines", {}).get("pipeline_naive")
        if naive:
            ax.plot([1], [naive["p50_ms"]], "kx", markersize=9, label="in-process p50 (naive)")
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        _concurrency_axis(ax, name, "ms")
    return _save(fig, path)


def time_split(models: dict, path: Path) -> Path:
    fig, axes = _axes(len(models), "Time per request in each ensemble step (hatched: queued)")
    for ax, (name, data) in zip(axes, models.items(), strict=True):
        points = data.get("points", [])
        xs = list(range(len(points)))
        bottoms = [0.0] * len(points)
        for step, colour in STEP_COLOURS.items():
            for part, hatch in (("compute_ms", None), ("queue_ms", "//")):
                values = [next((s[part] for s in p["split"] if s["step"] == step), 0.0) for p in points]
                legend = f"{step} {'compute' if hatch is None else 'queue'}"
                ax.bar(xs, values, bottom=bottoms, color=colour, hatch=hatch, alpha=0.9, label=legend)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        ax.set_xticks(xs, [str(p["concurrency"]) for p in points])
        _concurrency_axis(ax, name, "ms per request", legend_size=7)
    return _save(fig, path)


def engines(models: dict, path: Path) -> Path:
    fig, axes = _axes(len(models), "Network alone on the same tensors (images/s, higher is better)")
    for ax, (name, data) in zip(axes, models.items(), strict=True):
        network = data.get("baselines", {}).get("network", {})
        batches = sorted({r["batch"] for rows in network.values() for r in rows})
        width = 0.38
        for offset, (engine, label) in enumerate((("onnxruntime", "ONNX Runtime"), ("paddle", "Paddle Inference"))):
            rows = {r["batch"]: r["throughput"] for r in network.get(engine, [])}
            xs = [i + (offset - 0.5) * width for i in range(len(batches))]
            ax.bar(xs, [rows.get(b, 0.0) for b in batches], width, label=label)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("images/s")
        ax.legend(fontsize=8)
    return _save(fig, path)


def draw_all(results: dict, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    models = results.get("models", {})
    return {
        "throughput": throughput(models, directory / "throughput.png"),
        "latency": latency(models, directory / "latency.png"),
        "time_split": time_split(models, directory / "time_split.png"),
        "engines": engines(models, directory / "engines.png"),
    }
