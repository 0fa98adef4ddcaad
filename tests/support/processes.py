"""The processes below a pid: what the launcher and its tritonserver leave running (model_repository/procfs.py)."""

from __future__ import annotations

from model_repository import procfs


def descendants(root: int) -> dict[int, str]:
    """pid -> command of every process below `root`."""
    return {process.pid: process.command for process in procfs.descendants(root)[1:]}
