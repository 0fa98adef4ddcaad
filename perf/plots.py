"""PNG plots of one results.json: what people look at first, so each answers one question.

throughput.png  how many images/s, and from which concurrency on does more load add nothing?
latency.png     what do p50/p95/p99 cost as concurrency grows?
time_split.png  where does a request's time go inside the ensemble (queueing vs compute)?
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STEP_COLOURS = {"preprocess": "#4c72b0", "network": "#dd8452", "postprocess": "#55a868"}


def _panels(models: dict, title: str):
    """One panel per model, titled, concurrency on x."""
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.4, 4.8 * len(models)), 3.6), squeeze=False)
    fig.suptitle(title, fontsize=10)
    for ax, name in zip(axes[0], models, strict=True):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("concurrent requests")
    return fig, zip(axes[0], models.values(), strict=True)


def save(fig, path: Path, dpi: int = 90) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def throughput(models: dict, path: Path) -> Path:
    fig, panels = _panels(models, "Throughput against concurrency (images/s, higher is better)")
    for ax, data in panels:
        xs = [p["concurrency"] for p in data["points"]]
        ax.plot(xs, [p["throughput"] for p in data["points"]], "o-", label="Triton (gRPC)")
        ax.set(xticks=xs, ylabel="images/s", ylim=(0, None))
        ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def latency(models: dict, path: Path) -> Path:
    fig, panels = _panels(models, "Request latency percentiles (ms, lower is better)")
    for ax, data in panels:
        xs = [p["concurrency"] for p in data["points"]]
        for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
            ax.plot(xs, [p[key] for p in data["points"]], style, label=f"Triton {key[:3]}")
        ax.set(xticks=xs, ylabel="ms", ylim=(0, None))
        ax.legend(fontsize=8)
    return save(fig, path)


def time_split(models: dict, path: Path) -> Path:
    fig, panels = _panels(models, "Time per request in each ensemble step (hatched: queued)")
    for ax, data in panels:
        points = data["points"]
        bottoms = [0.0] * len(points)
        for step, colour in STEP_COLOURS.items():
            for part, hatch in (("compute_ms", None), ("queue_ms", "//")):
                values = [next((s[part] for s in p["split"] if s["step"] == step), 0.0) for p in points]
                label = f"{step} {'compute' if hatch is None else 'queue'}"
                ax.bar(range(len(points)), values, bottom=bottoms, color=colour, hatch=hatch, alpha=0.9, label=label)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        ax.set_xticks(range(len(points)), [str(p["concurrency"]) for p in points])
        ax.set_ylabel("ms per request")
        ax.legend(fontsize=7)
    return save(fig, path)


def draw_all(results: dict, directory: Path) -> dict[str, Path]:
    models = results["models"]
    return {
        plot.__name__: plot(models, directory / f"{plot.__name__}.png") for plot in (throughput, latency, time_split)
    }
