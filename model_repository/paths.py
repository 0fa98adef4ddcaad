"""Where this checkout keeps its build outputs; standard library only, so the image's commands can import it."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_REPOSITORY = PROJECT / "build" / "model_repository" / "portable"  # what `make export` fills
