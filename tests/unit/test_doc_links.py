"""The repository's Markdown: every relative link resolves, nothing points outside a clone, within a size budget.

A link is checked against the committed tree: its file must exist and its `#anchor`, if any, must be a
heading of that file as GitHub slugs it (lower case, punctuation dropped, spaces to hyphens).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
BUDGET_BYTES = 150_000


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [PROJECT / name for name in listed if (PROJECT / name).exists()]


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", title).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(match["title"]) for match in HEADING.finditer(text)}


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [match["target"] for match in LINK.finditer(text)]


def resolves(path: Path, target: str) -> bool:
    """The link's file exists inside the repository and, for a Markdown file, holds the anchor."""
    name, _, anchor = target.partition("#")
    linked = (path.parent / name).resolve() if name else path
    if not linked.exists() or PROJECT not in [linked, *linked.parents]:
        return False
    return not anchor or linked.suffix != ".md" or anchor in anchors(linked)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        if not resolves(path, target):
            broken.append(target)
    assert broken == [], f"{path.relative_to(PROJECT)}: broken links {broken}"


def test_no_path_outside_the_repository_or_issue_number() -> None:
    found = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        for pattern in (r"\.\./shared", r"\b[Ii]ssue \d+\b"):
            found += [f"{path.relative_to(PROJECT)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert found == []


def test_markdown_stays_within_its_budget() -> None:
    total = sum(path.stat().st_size for path in markdown_files())
    assert total <= BUDGET_BYTES, f"{total:,} bytes of Markdown, budget {BUDGET_BYTES:,}"


def test_slug_follows_github() -> None:
    assert slug("7. TensorRT plans (optional)") == "7-tensorrt-plans-optional"
    assert slug("Stalls: Triton 2.51 does not prefetch") == "stalls-triton-251-does-not-prefetch"
    assert slug("The normalization prefix (`normalization.py`)") == "the-normalization-prefix-normalizationpy"
