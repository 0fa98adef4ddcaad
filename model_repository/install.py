"""Write one catalog model into a Triton model repository, all or nothing.

Everything is built in a staging directory beside the repository (same filesystem), then each of
the six model directories (two entry points and their steps) replaces its old version by rename.
If any step fails, the renames done so far are undone and the repository is exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from catalog import ModelEntry
from catalog.reference import imagenet_labels
from model_repository import configs

PYTHON_MODELS = Path(__file__).parent / "python_models"
PREPROCESS_PACKAGE = Path(__file__).parent.parent / "preprocess"
EXPORT_RECORD = "export.json"


def model_dirs(entry: ModelEntry) -> list[str]:
    return [
        entry.triton_name,
        configs.pixels_ensemble_name(entry),
        configs.preprocess_name(entry),
        configs.pixels_preprocess_name(entry),
        configs.network_name(entry),
        configs.postprocess_name(entry),
    ]


def _write_model(root: Path, config: configs.ConfigDict, files: dict[str, Path | str]) -> None:
    """root/config.pbtxt plus files in root/1/ (Path values are copied, str values written)."""
    version = root / "1"
    version.mkdir(parents=True)
    (root / "config.pbtxt").write_text(configs.to_pbtxt(config))
    for name, content in files.items():
        target = version / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path) and content.suffix == ".onnx":
            _link_or_copy(content, target)
        elif isinstance(content, Path):
            # Copied, never linked: a link would let later edits of the source tree change
            # repositories that were already installed (and served).
            shutil.copy2(content, target)
        else:
            target.write_text(content, "utf-8")


def _link_or_copy(source: Path, target: Path) -> None:
    # Network files reach 1.2 GB: a hard link costs nothing when source and target share a disk,
    # and the exported file is never modified in place (a new export writes a new file).
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def stage(entry: ModelEntry, onnx_path: Path, record: dict, variant: configs.Variant, staging: Path) -> None:
    """Build the model directories of `entry` (see model_dirs) under `staging`."""
    weights_note = record.get("weights_note", "unknown")
    _write_model(staging / entry.triton_name, configs.ensemble_config(entry, weights_note), {})
    _write_model(staging / configs.pixels_ensemble_name(entry), configs.pixels_ensemble_config(entry, weights_note), {})
    # Both preprocess models run the same model.py and package; their config's input picks the path.
    preprocess_files: dict[str, Path | str] = {"model.py": PYTHON_MODELS / "preprocess.py"}
    for source in sorted(PREPROCESS_PACKAGE.glob("*.py")):
        preprocess_files[f"preprocess/{source.name}"] = source
    _write_model(staging / configs.preprocess_name(entry), configs.preprocess_config(entry), preprocess_files)
    pixels_config = configs.pixels_preprocess_config(entry)
    _write_model(staging / configs.pixels_preprocess_name(entry), pixels_config, preprocess_files)
    network_files: dict[str, Path | str] = {"model.onnx": onnx_path}
    if variant == "portable":
        network_files["model.py"] = PYTHON_MODELS / "onnx_network.py"
    network_dir = staging / configs.network_name(entry)
    _write_model(network_dir, configs.network_config(entry, variant), network_files)
    (network_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    labels = "\n".join(imagenet_labels()) + "\n"
    postprocess_files: dict[str, Path | str] = {"model.py": PYTHON_MODELS / "postprocess.py", "labels.txt": labels}
    _write_model(staging / configs.postprocess_name(entry), configs.postprocess_config(entry), postprocess_files)


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
    """Write `entry` into `repository` (a Triton model repository) for the given variant."""
    with staging_dir(repository) as staging:
        stage(entry, onnx_path, record, variant, staging)
        swap_in(staging, repository, model_dirs(entry))


def installed_models(repository: Path) -> list[str]:
    """Ensemble names in a repository (directories whose network has an export record)."""
    if not repository.is_dir():
        return []
    return sorted(p.parent.name.removesuffix("_network") for p in repository.glob(f"*_network/{EXPORT_RECORD}"))
