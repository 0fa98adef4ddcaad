"""The chart's estimate of each catalog network's TensorRT plan build, in seconds (unverified on a GPU).

Helm templates cannot read the catalog, so the chart carries this generated file,
helm/paddleclas-triton/files/trt-build-seconds.json: {ensemble name: seconds}, from
model_repository/configs.py (trt_build_seconds). The chart sums it over the served models for the
Deployment's progressDeadlineSeconds and the install timeout NOTES.txt prints. `make docs` writes it;
tests/chart/test_trt_plan_cache.py fails while it is stale.

    python helm/gen_trt_build_seconds.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELM_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HELM_DIR.parent))  # run as a script from the checkout

import catalog  # noqa: E402
from model_repository import configs  # noqa: E402

OUTPUT = HELM_DIR / "paddleclas-triton" / "files" / "trt-build-seconds.json"


def render() -> str:
    """Every catalog network's estimate, keyed by its ensemble name (what `models` may name, lower-cased)."""
    estimates = {entry.triton_name: configs.trt_build_seconds(entry) for entry in catalog.CATALOG.values()}
    return json.dumps(dict(sorted(estimates.items())), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        stale = not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text
        if stale:
            print(f"stale: {OUTPUT}; run `make docs`", file=sys.stderr)
        return int(stale)
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
