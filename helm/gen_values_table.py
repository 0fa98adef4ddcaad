"""The values table of helm/README.md, made from the chart's values.yaml.

A key is documented by a comment block right above it that starts with ``# --``; the table lists every
documented key with its default, and the comment stays beside the value. Generating the table keeps the
README from drifting away from the values, the usual fate of hand-written chart docs. `make docs`
(docs/blocks.py) writes it into the README's `values-table` block, and its drift check fails CI while the
block is stale; tests/chart/test_chart_docs.py fails on a key without a comment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

HELM_DIR = Path(__file__).resolve().parent
VALUES = HELM_DIR / "paddleclas-triton" / "values.yaml"
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
    """Each documented key and its default, one row per top-level key (its sub-keys in one cell, to keep the
    README short). The description stays the comment above the key in values.yaml (what `helm show values`
    prints), so the README restates none of it."""
    values = yaml.safe_load(text)
    groups: dict[str, list[str]] = {}
    for key, _ in documented_keys(text):
        default = json.dumps(lookup(values, key), separators=(", ", ": ")).replace("|", "\\|")
        top, _, rest = key.partition(".")
        groups.setdefault(top, []).append(f"`{rest}: {default}`" if rest else f"`{default}`")
    lines = ["| Key | Default (sub-key: default) |", "| --- | --- |"]
    lines += [f"| `{top}` | {', '.join(cells)} |" for top, cells in groups.items()]
    return "\n".join(lines)
