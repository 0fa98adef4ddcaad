"""The repository a local perf run serves: built from the exported models and the current configs.

An exported repository keeps the config.pbtxt files of the day it was exported; a perf run must
measure what model_repository/configs.py says now. So the run stages its own copy with the
project's own installer (model.onnx hard-linked, configs regenerated), optionally with a
different instance/thread/batching layout for tuning, under build/perf/. The source repository
is never written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import catalog
from model_repository import configs, install


@dataclass(frozen=True)
class Layout:
    """Tuning levers; None keeps configs.py's value."""

    name: str = "configs.py"
    preprocess_instances: int | None = None
    network_instances: int | None = None
    network_threads: int | None = None
    network_spinning: bool | None = None
    queue_delay_us: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def serving_layout(self) -> configs.Layout:
        """The instance counts of this candidate as the launcher's layout (which sizes the served copy)."""
        from model_repository.cores import usable_cores

        layout = configs.Layout.for_cores(usable_cores())
        chosen = {
            "preprocess_instances": self.preprocess_instances,
            "pixels_preprocess_instances": self.preprocess_instances,
            "network_cpu_instances": self.network_instances,
            "network_cpu_threads": self.network_threads
            if self.network_threads is not None
            else (0 if self.network_instances is not None else None),
        }
        return replace(layout, **{key: value for key, value in chosen.items() if value is not None})

    def apply(self, model_root: Path, entry: catalog.ModelEntry) -> None:
        """Rewrite the staged preprocess and network configs of `entry` under `model_root`."""
        # The pixels entry point's preprocess follows the encoded one.
        for name in (configs.preprocess_name(entry), configs.pixels_preprocess_name(entry)):
            preprocess = model_root / name / "config.pbtxt"
            if not preprocess.is_file():
                continue
            config = configs.parse_pbtxt(preprocess.read_text())
            if self.preprocess_instances is not None:
                config.instance_group[0].count = self.preprocess_instances
            preprocess.write_text(_render(config))
        network = model_root / configs.network_name(entry) / "config.pbtxt"
        config = configs.parse_pbtxt(network.read_text())
        if self.network_instances is not None:
            config.instance_group[0].count = self.network_instances
        if self.network_threads is not None:
            config.parameters["intra_op_threads"].string_value = str(self.network_threads)
        if self.network_spinning is not None:
            config.parameters["intra_op_spinning"].string_value = str(int(self.network_spinning))
        if self.queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = self.queue_delay_us
        if self.preferred_batch_sizes is not None:
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.extend(self.preferred_batch_sizes)
        network.write_text(_render(config))


def _render(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def has_export(repository: Path, entry: catalog.ModelEntry) -> bool:
    return (repository / configs.network_name(entry) / install.EXPORT_RECORD).is_file()


def ensure_exported(repository: Path, entries: list[catalog.ModelEntry], progress=print) -> None:
    """Export (seeded random weights, portable) the models `repository` lacks, as `make export` does."""
    missing = [entry.name for entry in entries if not has_export(repository, entry)]
    if not missing:
        return
    progress(f"exporting {', '.join(missing)} into {repository} (random weights; 25-45 s per model)")
    cmd = [sys.executable, "-m", "export", *missing, "--random-weights", "--repository", str(repository)]
    subprocess.run(cmd, check=True)


def derive(source: Path, dest: Path, entries: list[catalog.ModelEntry], layout: Layout | None = None) -> Path:
    """Stage `entries` from `source` into a fresh `dest` with current configs (and `layout`)."""
    staging = dest.parent / f".{dest.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for entry in entries:
            network_dir = source / configs.network_name(entry)
            record = json.loads((network_dir / install.EXPORT_RECORD).read_text())
            install.stage(entry, network_dir / "1" / "model.onnx", record, "portable", staging)
            if layout is not None:
                layout.apply(staging, entry)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def served_layout(client, ensemble: str) -> dict[str, object]:
    """What the server actually runs for an ensemble's steps: instances, threads, batching."""
    from perf.triton_stats import ensemble_steps

    layout: dict[str, object] = {}
    for model in ensemble_steps(client, ensemble):
        config = client.get_model_config(model, as_json=True)["config"]
        groups = config.get("instance_group", [])
        batching = config.get("dynamic_batching")
        layout[configs.step_kind(model)] = {
            "backend": config.get("backend") or config.get("platform"),
            "instances": sum(int(g.get("count", 1)) for g in groups),
            "kind": groups[0].get("kind") if groups else None,
            "intra_op_threads": config.get("parameters", {}).get("intra_op_threads", {}).get("string_value"),
            "intra_op_spinning": config.get("parameters", {}).get("intra_op_spinning", {}).get("string_value"),
            "dynamic_batching": None
            if batching is None
            else {
                "max_queue_delay_us": int(batching.get("max_queue_delay_microseconds", 0) or 0),
                "preferred_batch_size": [int(x) for x in batching.get("preferred_batch_size", [])],
            },
            "max_batch_size": int(config.get("max_batch_size", 0)),
        }
    return layout
