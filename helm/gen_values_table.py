"""Generate the values table of helm/README.md from the chart's values.yaml.

A key is documented by a comment block right above it that starts with ``# --``; the table lists
every documented key with its default. Generating the table (and checking it in tests) keeps the
README from drifting away from the values, the usual fate of hand-written chart docs.

    python helm/gen_values_table.py          # rewrite the table in helm/README.md
    python helm/gen_values_table.py --check  # exit 1 if the README table is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

HELM_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HELM_DIR.parent))  # run as a script: the project root holds docs/blocks.py
from docs import blocks  # noqa: E402

VALUES = HELM_DIR / "paddleclas-triton" / "values.yaml"
README = HELM_DIR / "README.md"
BLOCK = "values-table"  # docs/blocks.py: the block of README.md this table fills
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(\s|$)")
DOC_START = re.compile(r"^(?P<indent> *)# -- (?P<text>.*)$")
DOC_MORE = re.compile(r"^(?P<indent> *)#(?: (?P<text>.*))?$")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key with a ``# --`` block right above it."""
    rows: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    doc: list[str] | None = None
    doc_indent = -1
    for line in text.splitlines():
        start, more, key = DOC_START.match(line), DOC_MORE.match(line), KEY.match(line)
        if start:
            doc, doc_indent = [start["text"]], len(start["indent"])
        elif more and doc is not None and len(more["indent"]) == doc_indent:
            doc.append(more["text"] or "")
        elif key:
            indent = len(key["indent"])
            stack = [(level, name) for level, name in stack if level < indent]
            stack.append((indent, key["key"]))
            if doc is not None and doc_indent == indent:
                rows.append((".".join(name for _, name in stack), " ".join(doc).strip()))
            doc = None
        elif line.strip():
            doc = None
    return rows


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every scalar, list or empty map in the values."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def undocumented(text: str) -> list[str]:
    """Leaves with neither their own ``# --`` block nor a documented parent."""
    documented = {key for key, _ in documented_keys(text)}
    values = yaml.safe_load(text)
    return [leaf for leaf in leaves(values) if not any(leaf == key or leaf.startswith(key + ".") for key in documented)]


def table(text: str) -> str:
    values = yaml.safe_load(text)
    lines = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for key, description in documented_keys(text):
        default = json.dumps(lookup(values, key), separators=(", ", ": "))
        cell = description.replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(lines)


def with_table(readme: str, generated: str) -> str:
    """The README with the values-table block replaced."""
    return blocks.replace(readme, BLOCK, generated)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the README table, or with --check report drift and missing docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift instead of writing")
    args = parser.parse_args(argv)
    text = VALUES.read_text(encoding="utf-8")
    missing = undocumented(text)
    if missing:
        print("values without a '# --' comment:", ", ".join(missing), file=sys.stderr)
        return 1
    if blocks.update(README, BLOCK, table(text), check=args.check) and args.check:
        print(f"{README} is stale: run make docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
