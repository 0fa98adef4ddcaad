"""The report of `python -m client evaluate`: accuracy with Wilson intervals, published figures, agreement."""

from __future__ import annotations

from math import sqrt
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
Record = dict


def complete(record: Record) -> bool:
    return "error" not in record and "error" not in record.get("against", {})


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(published: float | None, interval: tuple[float, float]) -> str:
    if published is None:
        return "no published figure"
    low, high = interval
    if low <= published <= high:
        return "consistent"
    side, points = ("above", published - high) if published > high else ("below", low - published)
    return f"published is {100 * points:.2f} points {side} the interval"


def agreement(records: list[Record], key: str = "against") -> dict:
    """The served model against a second source of per-image records (`key`: the --against deployment,
    or the PaddleClas reference), over images both classified."""
    both = [r for r in records if "error" not in r and key in r and "error" not in r[key]]
    top1 = sum(r["class_ids"][0] == r[key]["class_ids"][0] for r in both)
    top5 = sum(set(r["class_ids"]) == set(r[key]["class_ids"]) for r in both)
    largest_dp = 0.0
    for r in both:  # per class id present in both top-5 lists
        theirs = dict(zip(r[key]["class_ids"], r[key]["scores"], strict=True))
        mine = zip(r["class_ids"], r["scores"], strict=True)
        largest_dp = max([largest_dp] + [abs(p - theirs[c]) for c, p in mine if c in theirs])
    flips = [
        {"path": r["path"], "label": r["label"], "top1": r["class_ids"][0], "against": r[key]["class_ids"][0]}
        for r in both
        if r["class_ids"][0] != r[key]["class_ids"][0]
    ]
    return {
        "compared": len(both),
        "against_failed": sum("error" in r.get(key, {}) for r in records),
        "top1": top1 / len(both) if both else None,
        "top5_set": top5 / len(both) if both else None,
        "largest_abs_dp": largest_dp,
        "flips": flips,
    }


def summarise(records: list[Record], published: dict | None, weights: str, run: dict, worst: int = 10) -> dict:
    ok = [r for r in records if "error" not in r]
    n = len(ok)
    hits = {
        "top1": sum(r["class_ids"][0] == r["label"] for r in ok),
        "top5": sum(r["label"] in r["class_ids"][:5] for r in ok),
    }
    per_class: dict[int, list[int]] = {}
    for r in ok:
        tally = per_class.setdefault(r["label"], [0, 0])
        tally[0] += 1
        tally[1] += r["class_ids"][0] == r["label"]
    ranked = sorted(per_class.items(), key=lambda item: (item[1][1] / item[1][0], -item[1][0], item[0]))
    report = {
        "count": len(records),
        "classified": n,
        "failed": len(records) - n,
        "failures": [{"path": r["path"], "error": r["error"]} for r in records if "error" in r],
        "weights": weights,
        "random_weights": weights.startswith("RANDOM WEIGHTS"),
        "published": published,
        "worst_classes": [{"class_id": c, "images": t[0], "top1": t[1] / t[0]} for c, t in ranked[:worst]],
        "throughput_images_per_s": run["images"] / run["seconds"] if run["seconds"] > 0 else None,
        "run": run,
    }
    for key, k in hits.items():
        interval = wilson(k, n)
        report[key] = k / n if n else None
        report[f"{key}_ci95"] = list(interval)
        figure = published.get(key) if published else None
        report[f"{key}_verdict"] = verdict(figure, interval) if n else "nothing classified"
    if any("against" in r for r in records):
        report["agreement"] = agreement(records)
    if any("reference" in r for r in records):
        report["reference_agreement"] = agreement(records, "reference")
    return report


def markdown(report: dict, model: str, names: list[str]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f} %"

    lines = [f"## Evaluation of {model}", ""]
    if report["random_weights"]:
        lines += [
            f"> **{model} serves {report['weights']}.** So the accuracy and verdicts below mean nothing:",
            "> export real PaddleClas weights (README.md, Evaluate) to compare with the published figures.",
            "",
        ]
    published = report["published"] or {}
    lines += ["| | measured | 95 % Wilson interval | published | verdict |", "|---|---|---|---|---|"]
    for key in ("top1", "top5"):
        low, high = report[f"{key}_ci95"]
        cells = [
            key.replace("top", "top-"),
            f"{pct(report[key])} of {report['classified']}",
            f"{pct(low)} - {pct(high)}",
        ]
        cells += [pct(published.get(key)), report[f"{key}_verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    rate, run = report["throughput_images_per_s"], report["run"]
    totals = f"{report['count']} images: {report['classified']} classified, {report['failed']} failed."
    if rate:
        totals += f" Throughput {rate:.1f} images/s ({run['images']} images in {run['seconds']:.1f} s this run)."
    lines += [
        "",
        totals,
        "",
        "### Worst classes (top-1)",
        "",
        "| class | name | images | top-1 |",
        "|---|---|---|---|",
    ]
    for c in report["worst_classes"]:
        lines.append(f"| {c['class_id']} | {names[c['class_id']]} | {c['images']} | {pct(c['top1'])} |")
    sections = (("agreement", "the --against deployment"), ("reference_agreement", "PaddleClas (--reference)"))
    for key, title in sections:
        if key not in report:
            continue
        a = report[key]
        lines += [
            "",
            f"### Agreement with {title}",
            "",
            f"{a['compared']} images compared ({a['against_failed']} failed there): "
            f"top-1 agreement {pct(a['top1'])}, top-5 set agreement {pct(a['top5_set'])}, "
            f"largest |dp| over the shared top-5 classes {a['largest_abs_dp']:.2e}, {len(a['flips'])} top-1 flips.",
        ]
        for f in a["flips"][:20]:
            lines.append(f"- {f['path']}: class {f['top1']} here, {f['against']} there (label {f['label']})")
    if report["failures"]:
        lines += ["", "### Failed images", ""] + [f"- {f['path']}: {f['error']}" for f in report["failures"]]
    return "\n".join(lines)
