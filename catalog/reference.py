"""Reference material that travels with the catalog: ImageNet labels and sample photographs.

Labels are read from the installed paddleclas package (its imagenet1k_label_list.txt), so the
served names are PaddleClas's own, in its order, with no copy kept in this repository.
Photographs are the original files scikit-image ships in its wheel: real camera images
(PNG and JPEG, several sizes and aspect ratios) available offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

NUM_CLASSES = 1000

SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")


def _package_dir(package: str, install_hint: str) -> Path:
    """Locate an installed package without importing it (importing paddleclas takes seconds)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: run `{install_hint}`")
    return Path(next(iter(spec.submodule_search_locations)))


def imagenet_labels() -> list[str]:
    """Class names indexed by class id (names repeat, e.g. 'crane' is 134 and 517: key by id)."""
    path = _package_dir("paddleclas", "make setup") / "ppcls/utils/imagenet1k_label_list.txt"
    labels: list[str] = []
    for expected_id, line in enumerate(path.read_text("utf-8").splitlines()):
        class_id, name = line.split(" ", 1)
        if int(class_id) != expected_id:
            raise ValueError(f"{path}: out of order at line {expected_id + 1}: {line!r}")
        labels.append(name)
    if len(labels) != NUM_CLASSES:
        raise ValueError(f"{path}: {len(labels)} labels, expected {NUM_CLASSES}")
    return labels


def sample_photo_paths() -> list[Path]:
    """Paths of the sample photographs inside the installed scikit-image wheel."""
    data_dir = _package_dir("skimage", "make setup") / "data"
    return [data_dir / name for name in SAMPLE_PHOTOS]
