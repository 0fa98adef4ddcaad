"""How many cores this process may really use: standard library only.

Imported by the launcher and the layout renderer (model_repository/layout.py) to size the steps,
and copied beside the portable network's model.py, which sizes its ONNX Runtime thread pool with it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """The container's CPU limit in cores (cgroup v2 `cpu.max`, or v1 CFS quota), None if unlimited.

    A Kubernetes CPU limit is a CFS quota: the process still sees every core of the node in its
    affinity mask, so sizing by the mask would oversubscribe the pod's share.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(root: Path = CGROUP) -> int:
    """Cores this process may really use: its affinity mask, capped by the container's CPU limit."""
    cores = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    return cores if limit is None else max(1, min(cores, math.ceil(limit)))
