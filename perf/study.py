"""What every benchmark script shares: its command line, its raw data, markdown tables, publishing into docs/.

A benchmark keeps its raw data under build/ and renders its tables from that file alone, so
`--report-only` redraws them later exactly as the run did; `--publish` rewrites only the doc's
generated blocks (docs/blocks.py), never the reading written around them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from docs import blocks

PROJECT = Path(__file__).resolve().parent.parent
DOCS = PROJECT / "docs"
REPOSITORY = PROJECT / "build" / "model_repository" / "portable"
DEFAULT_MODEL = "NextViT_small_224"


def arguments(module: str, doc: str, out: Path, model: bool = True) -> argparse.ArgumentParser:
    """`python -m <module>` (e.g. "perf capacity") described by the first paragraph of `doc`, with --model,
    --repository and --out."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    if model:
        parser.add_argument("--model", default=DEFAULT_MODEL, help="catalog name")
    parser.add_argument("--repository", type=Path, default=REPOSITORY)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line of this run as people retype it (`argv` None: this process's own arguments)."""
    return shlex.join(["python", "-m", *module.split(), *(sys.argv[1:] if argv is None else argv)])


def raw_data(path: Path, report_only: bool, measure: Callable[[], dict]) -> dict:
    """The last run's raw data with `report_only`; else a new measurement, saved at `path` before anything is drawn."""
    if report_only:
        return json.loads(path.read_text())
    result = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table's lines and the blank line that ends it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def publish(doc: Path, texts: dict[str, str], images: dict[Path, str] | None = None) -> Path:
    """Each of `texts` into its block of `doc`, and each of `images` copied to docs/img/ under its new name."""
    for name, text in texts.items():
        blocks.update(doc, name, text)
    for source, name in (images or {}).items():
        (DOCS / "img").mkdir(exist_ok=True)
        shutil.copyfile(source, DOCS / "img" / name)
    return doc
