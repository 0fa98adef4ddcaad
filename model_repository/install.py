"""Write what export produced into a model repository, and remove it, all or nothing.

The installed repository holds data, never configs: each network directory its ONNX files, its
export record (export.json) and its warmup crop; each shared step directory the data its code needs
(the warmup photograph in the step's form, the labels). Configs and step code are rendered from this
checkout when a server starts (model_repository/layout.py), so nothing installed goes stale.

Everything is built in a staging directory beside the repository (same filesystem), then each
directory replaces its old version by rename; if any rename fails, the renames done so far are
undone and the repository is exactly as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import catalog
from catalog import ModelEntry
from catalog.reference import imagenet_labels, sample_photo_paths
from model_repository import configs

EXPORT_RECORD = "export.json"
# `python -m export NAME --ort-trt` records its choice here, beside the network's export record.
ORT_TENSORRT_RECORD = "ort_tensorrt.json"
# The production export's FP16 network beside model.onnx (export/fp16.py; the name is trt_plans.ONNX_FILES's).
FP16_NETWORK = "model.fp16.onnx"
LABELS_FILE = "labels.txt"
WARMUP_PHOTO = "chelsea.png"  # one of catalog.reference.SAMPLE_PHOTOS: a real photograph, 451x300
WARMUP_JPEG_QUALITY = 90

Files = dict[str, Path | str | bytes]


def model_dirs(entry: ModelEntry) -> list[str]:
    """Every directory `entry` is served from: its own models, then the steps it shares."""
    return configs.own_models(entry) + configs.shared_steps(entry)


def _write_files(root: Path, folder: str, contents: Files) -> None:
    """root/folder/<name> for each item: ONNX files linked or copied, text and bytes written."""
    for name, content in contents.items():
        target = root / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            _link_or_copy(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, "utf-8")


def _link_or_copy(source: Path, target: Path) -> None:
    # Network files reach 1.2 GB: a hard link costs nothing when source and target share a disk,
    # and the exported file is never modified in place (a new export writes a new file).
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# --- warmup data: a real photograph, as each step receives it -----------------------------------


def _warmup_photo() -> Path:
    (path,) = [p for p in sample_photo_paths() if p.name == WARMUP_PHOTO]
    return path


def warmup_jpeg() -> bytes:
    """The server's warmup JPEG: also the smoke photograph (client/data/chelsea.jpg) whose answer export records."""
    import cv2

    from preprocess import decode

    rgb = decode(_warmup_photo().read_bytes())
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, WARMUP_JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode the warmup photograph")
    return encoded.tobytes()


def _warmup_frame() -> np.ndarray:
    from preprocess import decode

    rgb = decode(_warmup_photo().read_bytes())
    if rgb.shape != configs.WARMUP_PIXELS_SHAPE:
        raise RuntimeError(
            f"warmup photograph is {rgb.shape}, configs.WARMUP_PIXELS_SHAPE says {configs.WARMUP_PIXELS_SHAPE}"
        )
    return rgb


def _warmup_crop(entry: ModelEntry) -> bytes:
    from catalog.resolve import preprocessor

    crop = preprocessor(entry).pixels(_warmup_frame())
    return np.ascontiguousarray(crop).tobytes()


def bytes_element(data: bytes) -> bytes:
    """One BYTES (TYPE_STRING) element in Triton's serialized form: length (uint32 LE), then the bytes.

    The form of warmup files and of perf_analyzer's b64 input data alike.
    """
    return struct.pack("<I", len(data)) + data


# --- staging ------------------------------------------------------------------------------------


def _shared_step_data(name: str) -> Files:
    """What a shared step's code reads besides its config: its warmup input, or the labels."""
    kind = configs.step_kind(name)
    if kind in configs.DECODING_KINDS:
        return {f"warmup/{configs.WARMUP_IMAGE_FILE}": bytes_element(warmup_jpeg())}
    if kind == "pixels_preprocess":
        return {f"warmup/{configs.WARMUP_PIXELS_FILE}": _warmup_frame().tobytes()}
    return {f"1/{LABELS_FILE}": _labels()}


def _labels() -> str:
    return "\n".join(imagenet_labels()) + "\n"


def gpu_mem_limit(record: dict) -> int:
    """The production network's arena cap from its export record's memory estimate (export/memory.py)."""
    memory = record.get("memory")
    if not memory or memory.get("batch") != configs.GPU_MAX_BATCH_SIZE:
        raise ValueError(
            f"the export record of {record.get('model', '?')} has no memory estimate at batch "
            f"{configs.GPU_MAX_BATCH_SIZE}: record it with python -m export memory --repository DIR"
        )
    return configs.ort_gpu_mem_limit(memory["weights_bytes"], memory["activations_bytes"])


def stage(entry: ModelEntry, onnx_path: Path, record: dict, variant: configs.Variant, staging: Path) -> None:
    """`entry`'s network directory and every shared step it calls, under `staging`.

    The configs they will be served with are rendered once here too, so an export that could not be
    served (a production record without its memory estimate, say) fails before anything is installed.
    """
    limit = gpu_mem_limit(record) if variant == "production" else None
    note, reference = record.get("weights_note", "unknown"), record.get("reference")
    configs.to_pbtxt(configs.network_config(entry, variant, gpu_mem_limit=limit))
    ensembles = (
        configs.ensemble_config,
        configs.interactive_ensemble_config,
        configs.pixels_ensemble_config,
        configs.crop_ensemble_config,
    )
    for ensemble in ensembles:
        configs.to_pbtxt(ensemble(entry, note, reference, variant))
    network_files: Files = {"model.onnx": onnx_path}
    fp16 = onnx_path.with_name(FP16_NETWORK)  # the production export writes it beside model.onnx (export/fp16.py)
    if variant == "production" and fp16.is_file():
        network_files[FP16_NETWORK] = fp16
    network = staging / configs.network_name(entry)
    _write_files(network, "1", network_files)
    _write_files(network, "warmup", {configs.WARMUP_CROP_FILE: _warmup_crop(entry)})
    (network / EXPORT_RECORD).write_text(json.dumps(record | {"variant": variant}, indent=2) + "\n")
    for name in configs.shared_steps(entry):
        if not (staging / name).exists():
            (staging / name / "1").mkdir(parents=True)
            _write_files(staging / name, "", _shared_step_data(name))


@contextlib.contextmanager
def staging_dir(repository: Path) -> Iterator[Path]:
    """A temporary directory on the repository's filesystem, removed afterwards whatever happens."""
    repository.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{repository.name}.staging-", dir=repository.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def swap_in(staged: Path, repository: Path, names: list[str]) -> None:
    """Replace repository/<name> by staged/<name> for every name, or change nothing."""
    repository.mkdir(parents=True, exist_ok=True)
    backups = staged / ".previous"
    backups.mkdir()
    done: list[str] = []
    try:
        for name in names:
            if (repository / name).exists():
                (repository / name).rename(backups / name)
            (staged / name).rename(repository / name)
            done.append(name)
    except BaseException:
        for name in reversed(names):
            if name in done:
                (repository / name).rename(staged / name)
            if (backups / name).exists():
                (backups / name).rename(repository / name)
        raise


def install(entry: ModelEntry, onnx_path: Path, record: dict, repository: Path, variant: configs.Variant) -> None:
    """Write `entry`'s network into `repository`, with the shared steps' data it lacks."""
    with staging_dir(repository) as staging:
        stage(entry, onnx_path, record, variant, staging)
        missing = [name for name in configs.shared_steps(entry) if not (repository / name).is_dir()]
        swap_in(staging, repository, [configs.network_name(entry), *missing])


def read_record(network_dir: Path) -> dict:
    """A network's export record (export.json)."""
    return json.loads((network_dir / EXPORT_RECORD).read_text("utf-8"))


def installed_variant(network_dir: Path, record: dict | None = None) -> configs.Variant:
    """The variant the record names; a record from before it did: portable when the network has its model.py."""
    variant = (record if record is not None else read_record(network_dir)).get("variant")
    if variant in configs.VARIANTS:
        return variant
    return "portable" if (network_dir / "1" / "model.py").is_file() else "production"


def read_ort_tensorrt(network_dir: Path) -> configs.OrtTensorrt | None:
    """The --ort-trt choice recorded for a production network, or None."""
    path = network_dir / ORT_TENSORRT_RECORD
    return configs.OrtTensorrt(**json.loads(path.read_text("utf-8"))) if path.is_file() else None


def write_ort_tensorrt(network_dir: Path, choice: configs.OrtTensorrt | None) -> None:
    """Record (or, with None, forget) the --ort-trt choice; a new file renamed into place."""
    path = network_dir / ORT_TENSORRT_RECORD
    if choice is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(dataclasses.asdict(choice), indent=2) + "\n", "utf-8")
    os.replace(temporary, path)


# --- what is installed, and removing it ---------------------------------------------------------


def installed_models(repository: Path) -> list[str]:
    """Ensemble names in a repository (directories whose network has an export record)."""
    if not repository.is_dir():
        return []
    return sorted(p.parent.name.removesuffix("_network") for p in repository.glob(f"*_network/{EXPORT_RECORD}"))


def referenced_models(models: list[str]) -> list[str]:
    """The directories that serving `models` (ensemble names) needs: their own models and every step they call."""
    return sorted({name for model in models for name in model_dirs(catalog.get(model))})


def remove(entry: ModelEntry, repository: Path) -> list[str]:
    """Remove `entry`'s own models, and the shared steps no other installed model uses; returns what went."""
    if entry.triton_name not in installed_models(repository):
        raise FileNotFoundError(f"{entry.triton_name} is not installed in {repository}")
    still_used = set(referenced_models([name for name in installed_models(repository) if name != entry.triton_name]))
    going = [name for name in model_dirs(entry) if name not in still_used and (repository / name).exists()]
    with staging_dir(repository) as trash:
        done: list[str] = []
        try:
            for name in going:
                (repository / name).rename(trash / name)
                done.append(name)
        except BaseException:
            for name in reversed(done):
                (trash / name).rename(repository / name)
            raise
    return going
