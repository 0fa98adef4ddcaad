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
from typing import TYPE_CHECKING, Literal

from catalog import ModelEntry
from export.errors import SourceError, storage_error
from model_repository import install
from model_repository.configs import Variant

if TYPE_CHECKING:  # fold imports Paddle, which only the export's own steps load
    from export.fold import FoldReport

SourceKind = Literal["random", "pdparams", "inference"]
# The numbered lines an export prints ("[NAME 3/7 +12.0s] ..."), in order. Progress checks every
# step it is told against its place here, so the count can never drift from the code.
STEPS = (
    "paddle network",  # built from the catalog with the given weights, or the inference model read
    "counts",  # parameters and FLOPs as PaddleClas counts them
    "deployment form",  # NextViT's BatchNorms folded (merge_bn), or nothing to fold
    "paddle program",  # paddle.jit.save, or the inference program as found
    "onnx",  # paddle2onnx and onnxsim
    "parity",  # ONNX Runtime against Paddle Inference
    "install",  # atomic install into the repository
)
VERSIONED_PACKAGES = (
    "paddlepaddle",
    "paddleclas",
    "paddle2onnx",
    "onnx",
    "onnxsim",
    "onnxruntime",
    "onnxconverter-common",  # the FP16 network (export/fp16.py)
)


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

    @classmethod
    def from_record(cls, facts: dict) -> Source:
        """The source an export record's `source` (as_dict) describes: the reference rebuilds from it."""
        path = facts.get("path")
        return cls(facts["kind"], Path(path) if path else None, int(facts.get("seed") or 0))

    def as_dict(self) -> dict[str, object]:
        facts: dict[str, object] = {"kind": self.kind, "path": str(self.path) if self.path else None, "seed": self.seed}
        if self.path is not None and self.path.is_file():
            from export.download import file_sha256

            facts |= {"bytes": self.path.stat().st_size, "sha256": file_sha256(self.path)}
        return facts | self.origin


class Progress:
    """Numbered step lines with elapsed time: exports take from seconds to minutes."""

    def __init__(self, name: str, steps: tuple[str, ...] = STEPS, quiet: bool = False) -> None:
        self.name, self.steps, self.done, self.start, self.quiet = name, steps, 0, time.monotonic(), quiet

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def step(self, step: str, message: str) -> None:
        """Print `message` as the next step, which must be `step` (a name of STEPS, in order)."""
        expected = self.steps[self.done] if self.done < len(self.steps) else "nothing"
        if step != expected:
            raise RuntimeError(f"export step {step!r} reported where {expected!r} comes (pipeline.STEPS)")
        self.done += 1
        if not self.quiet:
            print(f"[{self.name} {self.done}/{len(self.steps)} +{self.elapsed:5.1f}s] {message}", flush=True)


def _peak_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux reports KiB


def inference_program(path: Path, work: Path) -> Path:
    """The program of an inference model: a directory as given, or a `<Name>_infer.tar` unpacked into `work`."""
    from export import download, network

    if path.is_file():
        return network.find_program(download.unpack_inference(path, work / "unpacked"))
    return network.find_program(path)


def _measure_architecture(entry: ModelEntry, backbone: object | None) -> dict[str, object]:
    """PaddleClas-style parameter and FLOP counts, on the unfolded network (see export.measure)."""
    from export import measure, network

    basis = "exported network"
    if backbone is None:  # an inference model: count the catalog architecture it was built from
        backbone, basis = network.build_backbone(entry), "catalog architecture"
    figures = measure.count_parameters(backbone)
    return figures | {"flops_paddleclas": measure.paddleclas_flops(backbone, entry.input_size), "basis": basis}


@dataclass(frozen=True)
class PaddleSide:
    """What the Paddle half of an export hands to the conversion."""

    program: Path  # the Paddle inference program paddle2onnx converts
    measured: dict[str, object]  # PaddleClas-style parameter and FLOP counts
    folded: FoldReport | None  # merge_bn's check, None when nothing was folded


def paddle_side(
    entry: ModelEntry, source: Source, work: Path, log: Path, progress: Progress | None = None, count: bool = True
) -> PaddleSide:
    """Steps "paddle network" to "paddle program": the Paddle program, PaddleClas-style counts, merge_bn's check.

    The one way a source becomes the Paddle program: the export converts it, and `evaluate --reference`
    rebuilds it from an export record (export/reference.py) without the counts (`count=False`).
    """
    from catalog.resolve import photo_batch
    from export import convert, fold, network

    progress = progress or Progress(entry.name, quiet=True)
    progress.step("paddle network", f"preparing the Paddle network from {source.describe()}")
    classifier = None
    with convert.output_to(log):
        if source.kind == "inference":
            assert source.path is not None
            program = inference_program(source.path, work)
        else:
            weights = source.path if source.kind == "pdparams" else None
            if weights is not None and not weights.is_file():
                raise SourceError(f"the weights file {weights} is not there")
            classifier = network.build(entry, weights=weights, seed=source.seed if weights is None else None)
    progress.step("counts", "counting parameters and FLOPs as PaddleClas does (paddle.flops, batch 1)")
    measured: dict[str, object] = {}
    if count:
        with convert.output_to(log):
            measured = _measure_architecture(entry, classifier.backbone if classifier else None)
    if classifier is None:
        progress.step(
            "deployment form", "inference model converted as given (PaddleClas's exporter does not fold BatchNorms)"
        )
        progress.step("paddle program", f"using {program.name} as found in {program.parent}")
        return PaddleSide(program, measured, None)
    folded = None
    if fold.can_fold(classifier):
        with convert.output_to(log):
            folded = fold.fold(classifier, photo_batch(entry))
        progress.step("deployment form", folded.summary())
    else:
        progress.step("deployment form", f"no BatchNorm to fold: {entry.family} normalises with LayerNorm")
    progress.step("paddle program", "saving the Paddle inference model (paddle.jit.save)")
    (work / "paddle").mkdir(parents=True, exist_ok=True)
    with convert.output_to(log):
        program = network.save_inference_model(classifier, entry, work / "paddle")
    return PaddleSide(program, measured, folded)


def export_model(entry: ModelEntry, source: Source, repository: Path, variant: Variant) -> dict:
    """Export `entry` from `source` into `repository`; returns the export record."""
    from export import convert, parity
    from export.memory import estimate

    progress = Progress(entry.name)
    repository.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=repository.parent) as tmp:
        work = Path(tmp)
        log = work / "export.log"
        try:
            side = paddle_side(entry, source, work, log, progress)
            program, measured, folded = side.program, side.measured, side.folded
            progress.step("onnx", f"converting {program.name} to ONNX (paddle2onnx opset {convert.OPSET}, onnxsim)")
            onnx_path = work / "model.onnx"
            facts = convert.convert(program, entry, onnx_path, log)
            measured["macs_onnx"] = facts.pop("macs")
            progress.step("parity", "checking ONNX Runtime against Paddle Inference on sample photographs")
            with convert.output_to(log):
                report, reference = parity.check(entry, program, onnx_path, install.warmup_jpeg())
                memory = estimate(onnx_path).as_record()
            fp16 = _fp16_network(entry, onnx_path) if variant == "production" else None
            record = {
                "model": entry.name,
                "weights_note": source.describe(),
                "source": source.as_dict(),
                "measured": measured,
                "merge_bn": folded.as_dict() if folded else None,
                "onnx": {"sha256": _sha256(onnx_path), "bytes": onnx_path.stat().st_size, **facts},
                "parity": report.as_dict(),
                "reference": reference,  # the smoke photograph's answer: the helm test compares the served one
                "memory": memory,
                "fp16": fp16,
                "versions": {package: version(package) for package in VERSIONED_PACKAGES},
                "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "duration_s": round(progress.elapsed, 1),
                "process_peak_rss_mb": _peak_rss_mb(),
            }
            install.install(entry, onnx_path, record, repository, variant)
            fp16_note = f"; {fp16_summary(fp16)}" if fp16 else ""
            progress.step(
                "install", f"{report.summary()}{fp16_note}; installed {entry.triton_name} ({variant}) into {repository}"
            )
        except Exception as err:
            with contextlib.suppress(OSError), log.open("a") as sink:
                traceback.print_exc(file=sink)
            kept = _keep_log(log, repository.parent / "export-logs" / f"{entry.name}.log")
            if kept:
                err.add_note(f"converter log: {kept}")
            if isinstance(err, OSError):  # the machine's (disk full, permissions): one line, the log kept
                raise storage_error(err) from err
            raise
    return record


def _fp16_network(entry: ModelEntry, onnx_path: Path) -> dict:
    """The production variant's FP16 network, written beside model.onnx and checked (export/fp16.py)."""
    from catalog.resolve import photo_crops
    from export import fp16

    return fp16.write(onnx_path, onnx_path.with_name(fp16.FP16_FILE), photo_crops(entry))


def fp16_summary(record: dict) -> str:
    photos = record["photographs"]
    return (
        f"FP16 network: max |p_fp16 - p_fp32| = {photos['max_abs_diff']:.2e} (limit {photos['atol']:.0e}), "
        f"top-1 agreement {photos['top1_agreement']:.0%}"
    )


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
