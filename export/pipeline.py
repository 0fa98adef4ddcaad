"""One export, end to end: source -> Paddle inference model -> ONNX -> parity -> repository.

All intermediate files live in a temporary directory; the repository changes only in the final
step, atomically (model_repository.install). Any failure before that leaves it untouched.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from catalog import ModelEntry
from model_repository import install
from model_repository.configs import Variant

SourceKind = Literal["random", "pdparams", "inference"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path | None = None  # .pdparams file or inference-model directory
    seed: int = 0

    def describe(self) -> str:
        if self.kind == "random":
            return f"RANDOM WEIGHTS (seed {self.seed}): not a trained classifier, labels are meaningless"
        return f"{'weights' if self.kind == 'pdparams' else 'inference model'} {self.path}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Progress:
    """Numbered step lines with elapsed time: exports take from seconds to minutes."""

    def __init__(self, name: str, steps: int) -> None:
        self.name, self.steps, self.done, self.start = name, steps, 0, time.monotonic()

    def step(self, message: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(f"[{self.name} {self.done}/{self.steps} +{elapsed:5.1f}s] {message}", flush=True)


def _inference_model(entry: ModelEntry, source: Source, work: Path) -> Path:
    """The Paddle inference program for `source`, built into `work` unless given as a directory."""
    from export import network

    if source.kind == "inference":
        assert source.path is not None
        return network.find_program(source.path)
    classifier = network.build(entry, weights=source.path, seed=source.seed if source.kind == "random" else None)
    return network.save_inference_model(classifier, entry, work / "paddle")


def export_model(entry: ModelEntry, source: Source, repository: Path, variant: Variant) -> dict:
    """Export `entry` from `source` into `repository`; returns the export record."""
    from export import convert, parity

    progress = Progress(entry.name, 5)
    repository.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=repository.parent) as tmp:
        work = Path(tmp)
        (work / "paddle").mkdir()
        log = work / "convert.log"
        progress.step(f"building the Paddle inference model from {source.describe()}")
        with convert.output_to(log):
            program = _inference_model(entry, source, work)
        progress.step(f"converting {program.name} to ONNX (paddle2onnx opset {convert.OPSET}, onnxsim)")
        onnx_path = work / "model.onnx"
        try:
            facts = convert.convert(program, entry, onnx_path, log)
        except Exception as err:
            raise convert.ExportCheckError(f"{err} (converter log: see above)\n{_tail(log)}") from err
        progress.step("checking ONNX Runtime against Paddle Inference on sample photographs")
        with convert.output_to(log):
            report = parity.check(entry, program, onnx_path)
        progress.step(report.summary())
        record = {
            "model": entry.name,
            "weights_note": source.describe(),
            "source": {"kind": source.kind, "path": str(source.path) if source.path else None, "seed": source.seed},
            "onnx": {"sha256": sha256(onnx_path), "bytes": onnx_path.stat().st_size, **facts},
            "parity": report.as_dict(),
            "versions": {p: version(p) for p in ("paddlepaddle", "paddle2onnx", "onnx", "onnxsim", "onnxruntime")},
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        install.install(entry, onnx_path, record, repository, variant)
        progress.step(f"installed {entry.triton_name} ({variant}) into {repository}")
    return record


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
