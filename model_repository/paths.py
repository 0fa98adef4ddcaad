"""Where this checkout keeps its build outputs; standard library only, so the image's commands can import it."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = PROJECT / "build" / "model_repository" / "portable"  # what `make export` fills
# Per-model graph figures (weights, activations), written by `python -m export memory --chart`: the chart's
# GPU check and the pod memory formula (model_repository/memory.py) read them.
NETWORK_FIGURES = PROJECT / "helm" / "paddleclas-triton" / "files" / "network-memory.json"
