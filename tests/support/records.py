"""Export records for stand-in network files, for tests that install a repository without exporting."""

from __future__ import annotations

import json

from catalog import ModelEntry
from model_repository import configs
from model_repository.paths import NETWORK_FIGURES


def placeholder_record(entry: ModelEntry, note: str = "placeholder") -> dict:
    """The weights note, and the model's memory estimate as the chart's file holds it (install derives the
    production network's gpu_mem_limit from it; a record without one is refused for production)."""
    line = json.loads(NETWORK_FIGURES.read_text("utf-8"))["models"][entry.triton_name]
    memory = {
        "batch": configs.GPU_MAX_BATCH_SIZE,
        "weights_bytes": line["weightsMiB"] << 20,
        "activations_bytes": line["activationsMiB"] << 20,
    }
    return {"weights_note": note, "memory": memory}
