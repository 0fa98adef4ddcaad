"""Every failure `python -m export` reports to a person: one family, so the command catches exactly it.

Each message says what failed and, where it is known, what to do; the command prints it on one
`error:` line and leaves the repository as it was. Anything outside the family is a bug and keeps its
traceback. export/trt_plans.py keeps its own PlanError: it runs alone in the TensorRT image, where
this module is not, and export/tensorrt.py turns it into TensorrtError.
"""

from __future__ import annotations

import errno


class ExportError(Exception):
    """Base of the export's failures; the message is meant for people."""


class SourceError(ExportError):
    """A given weights file, inference model or directory is missing or holds no usable model."""


class WeightsMismatchError(SourceError):
    """A weights file that does not fit the architecture; the message names the first tensor."""


class DownloadError(ExportError):
    """A download that could not be completed or checked; the message says what to do next."""


class FoldError(ExportError):
    """The folded network does not compute what the unfolded one did; nothing is exported."""


class ExportCheckError(ExportError):
    """The converted graph is not what the repository needs; nothing is written."""


class ParityError(ExportError):
    """ONNX Runtime disagrees with Paddle Inference beyond the tolerance."""


class Fp16Error(ExportError):
    """The FP16 network breaks the precision layout or disagrees with FP32 beyond the acceptance rule."""


class MemoryEstimateError(ExportError):
    """The graph has a tensor whose size shape inference left open, or a construct the walk does not model."""


class TensorrtError(ExportError):
    """A TensorRT plan or ONNX Runtime TensorRT config cannot be made here (trtexec, GPU, versions)."""


class ReferenceNetworkError(ExportError):
    """The reference network of `evaluate --reference` cannot be found or rebuilt."""


class StorageError(ExportError):
    """The machine's files failed the export (disk full, permissions): not the model's fault."""


def storage_error(err: OSError) -> StorageError:
    """`err` as one actionable line, its notes (e.g. the converter log's path) kept."""
    where = f" while writing {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        text = f"disk full{where}: free some space and run again"
    else:
        text = f"{err.strerror or err}{f': {err.filename}' if err.filename else ''}"
    wrapped = StorageError(text)
    for note in getattr(err, "__notes__", []):
        wrapped.add_note(note)
    return wrapped
