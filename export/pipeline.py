"""One export, end to end: source -> Paddle network -> deployment form -> ONNX -> parity -> repository.

All intermediate files live in a temporary directory; the repository changes only in the final
step, atomically (model_repository.install). Any failure before that leaves it untouched, and the
converter's log of a failed run is kept beside the repository (export-logs/NAME.log).
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from catalog import ModelEntry
from model_repository import install
from model_repository.configs import Variant

SourceKind = Literal["random", "pdparams", "inference"]
STEPS = 7
VERSIONED_PACKAGES = ("paddlepaddle", "paddleclas", "paddle2onnx", "onnx", "onnxsim", "onnxruntime")


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path | None = None  # .pdparams file, or inference-model directory or .tar archive
    seed: int = 0
    origin: dict[str, object] = field(default_factory=dict)  # e.g. the URL a download came from

    def describe(self) -> str:
        if self.kind == "random":
            return f"RANDOM WEIGHTS (seed {self.seed}): not a trained classifier, labels are meaningless"
        return f"{'weights' if self.kind == 'pdparams' else 'inference model'} {self.path}"

    def as_dict(self) -> dict[str, object]:
        facts: dict[str, object] = {"kind": self.kind, "path": str(self.path) if self.path else None, "seed": self.seed}
        if self.path is not None and self.path.is_file():
            from export.download import file_sha256

            facts |= {"bytes": self.path.stat().st_size, "sha256": file_sha256(self.path)}
        return facts | self.origin


class Progress:
    """Numbered step lines with elapsed time: exports take from seconds to minutes."""

    def __init__(self, name: str, steps: int) -> None:
        self.name, self.steps, self.done, self.start = name, steps, 0, time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def step(self, message: str) -> None:
        self.done += 1
        print(f"[{self.name} {self.done}/{self.steps} +{self.elapsed:5.1f}s] {message}", flush=True)


def _peak_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB


def _program_from_directory(source: Source, work: Path) -> Path:
    """The program of an inference-model source: a directory as given, or a tarball unpacked into `work`."""
    from export import download, network

    assert source.path is not None
    if source.path.is_file():
        return network.find_program(download.unpack_inference(source.path, work / "unpacked"))
    return network.find_program(source.path)


def _measure_architecture(entry: ModelEntry, backbone: object | None) -> dict[str, object]:
    """PaddleClas-style parameter and FLOP counts, on the unfolded network (see export.measure)."""
    from export import measure, network

    basis = "exported network"
    if backbone is None:  # an inference model: count the catalog architecture it was built from
        backbone, basis = network.build_backbone(entry), "catalog architecture"
    figures = measure.count_parameters(backbone)
    return figures | {"flops_paddleclas": measure.paddleclas_flops(backbone, entry.input_size), "basis": basis}


def _paddle_side(entry: ModelEntry, source: Source, work: Path, log: Path, progress: Progress) -> tuple:
    """Steps 1-4: the Paddle inference program, PaddleClas-style counts, and the merge_bn check (or None)."""
    from catalog.resolve import photo_batch
    from export import convert, fold, network

    progress.step(f"preparing the Paddle network from {source.describe()}")
    classifier = None
    with convert.output_to(log):
        if source.kind == "inference":
            program = _program_from_directory(source, work)
        else:
            weights = source.path if source.kind == "pdparams" else None
            classifier = network.build(entry, weights=weights, seed=source.seed if weights is None else None)
    progress.step("counting parameters and FLOPs as PaddleClas does (paddle.flops, batch 1)")
    with convert.output_to(log):
        measured = _measure_architecture(entry, classifier.backbone if classifier else None)
    if classifier is None:
        progress.step("inference model converted as given (PaddleClas's exporter does not fold BatchNorms)")
        progress.step(f"using {program.name} as found in {program.parent}")
        return program, measured, None
    folded = None
    if fold.can_fold(classifier):
        with convert.output_to(log):
            folded = fold.fold(classifier, photo_batch(entry))
        progress.step(folded.summary())
    else:
        progress.step(f"no BatchNorm to fold: {entry.family} normalises with LayerNorm")
    progress.step("saving the Paddle inference model (paddle.jit.save)")
    with convert.output_to(log):
        program = network.save_inference_model(classifier, entry, work / "paddle")
    return program, measured, folded


def export_model(entry: ModelEntry, source: Source, repository: Path, variant: Variant) -> dict:
    """Export `entry` from `source` into `repository`; returns the export record."""
    from export import convert, parity

    progress = Progress(entry.name, STEPS)
    repository.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=repository.parent) as tmp:
        work = Path(tmp)
        (work / "paddle").mkdir()
        log = work / "export.log"
        try:
            program, measured, folded = _paddle_side(entry, source, work, log, progress)
            progress.step(f"converting {program.name} to ONNX (paddle2onnx opset {convert.OPSET}, onnxsim)")
            onnx_path = work / "model.onnx"
            facts = convert.convert(program, entry, onnx_path, log)
            measured["macs_onnx"] = facts.pop("macs")
            progress.step("checking ONNX Runtime against Paddle Inference on sample photographs")
            with convert.output_to(log):
                report = parity.check(entry, program, onnx_path)
            record = {
                "model": entry.name,
                "weights_note": source.describe(),
                "source": source.as_dict(),
                "measured": measured,
                "merge_bn": folded.as_dict() if folded else None,
                "onnx": {"sha256": _sha256(onnx_path), "bytes": onnx_path.stat().st_size, **facts},
                "parity": report.as_dict(),
                "versions": {package: version(package) for package in VERSIONED_PACKAGES},
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "duration_s": round(progress.elapsed, 1),
                "process_peak_rss_mb": _peak_rss_mb(),
            }
            install.install(entry, onnx_path, record, repository, variant)
            progress.step(f"{report.summary()}; installed {entry.triton_name} ({variant}) into {repository}")
        except Exception as err:
            with contextlib.suppress(OSError), log.open("a") as sink:
                traceback.print_exc(file=sink)
            kept = _keep_log(log, repository.parent / "export-logs" / f"{entry.name}.log")
            if kept:
                err.add_note(f"converter log: {kept}")
            raise
    return record


def _sha256(path: Path) -> str:
    from export.download import file_sha256

    return file_sha256(path)


def _keep_log(log: Path, destination: Path) -> Path | None:
    """Copy a failed run's log out of the temporary directory (best effort: the disk may be full)."""
    if not log.is_file() or log.stat().st_size == 0:
        return None
    with contextlib.suppress(OSError):
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, destination)
        return destination
    return None
