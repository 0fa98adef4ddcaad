"""The issue's goals as ratios of numbers from one results.json (never across runs).

Each goal compares two measurements taken minutes apart on the same machine, so machine speed
cancels out; an absolute number from another day would not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Goal:
    model: str
    goal: str
    value: float | None
    target: str
    met: bool | None  # None: not measurable from this run
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def best_point(points: list[dict]) -> dict:
    return max(points, key=lambda p: p["throughput"])


def _network(baselines: dict, engine: str, batch: int) -> dict | None:
    rows = baselines.get("network", {}).get(engine, [])
    return next((r for r in rows if r["batch"] == batch), None)


def _ratio(model: str, goal: str, numerator: float, denominator: float, minimum: float, detail: str) -> Goal:
    value = numerator / denominator
    return Goal(model, goal, value, f">= {minimum:.2f}x", value >= minimum, detail)


def evaluate(model: str, data: dict) -> list[Goal]:
    points, base = data.get("points", []), data.get("baselines", {})
    goals: list[Goal] = []
    naive, best_in = base.get("pipeline_naive"), base.get("pipeline_best")
    if points and naive:
        best = best_point(points)
        detail = (
            f"Triton {best['throughput']:.2f} images/s (concurrency {best['concurrency']}) / "
            f"naive in-process {naive['throughput']:.2f} images/s"
        )
        goals.append(_ratio(model, "Triton vs naive in-process", best["throughput"], naive["throughput"], 1.1, detail))
    if points and best_in:
        best = best_point(points)
        detail = (
            f"Triton {best['throughput']:.2f} / best in-process {best_in['throughput']:.2f} images/s "
            f"({best_in['sessions']} session(s) x {best_in['threads']} thread(s), batch {best_in['batch']})"
        )
        goals.append(
            _ratio(model, "Triton vs best in-process", best["throughput"], best_in["throughput"], 0.95, detail)
        )
    for batch in (1, 8):
        ort, paddle = _network(base, "onnxruntime", batch), _network(base, "paddle", batch)
        if ort and paddle:
            detail = (
                f"ONNX Runtime {ort['ms_per_batch']:.0f} ms vs Paddle Inference {paddle['ms_per_batch']:.0f} ms "
                f"per batch ({ort['threads']} threads)"
            )
            name = f"ONNX Runtime vs Paddle Inference, batch {batch}"
            goals.append(_ratio(model, name, ort["throughput"], paddle["throughput"], 1.15, detail))
    first = next((p for p in points if p["concurrency"] == 1), None)
    if first and naive:
        gap = first["p50_ms"] - naive["p50_ms"]
        detail = f"Triton p50 {first['p50_ms']:.1f} ms at concurrency 1 vs in-process p50 {naive['p50_ms']:.1f} ms"
        goals.append(Goal(model, "p50 at concurrency 1, Triton minus in-process", gap, "<= 5 ms", gap <= 5.0, detail))
    return goals


def evaluate_all(results: dict) -> list[Goal]:
    return [goal for model, data in results.get("models", {}).items() for goal in evaluate(model, data)]
