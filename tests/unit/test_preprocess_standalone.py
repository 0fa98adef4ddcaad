"""`preprocess` installs on its own: a clean virtual environment, its declared dependencies only, the same crops.

The package's own pyproject (preprocess/pyproject.toml) must pin exactly what requirements/ pins
for the server, since bit-exactness depends on those builds. The install test makes a fresh venv
with `python -m venv`, installs the package with pip from the indexes pip is configured with here,
checks that nothing but the package and its declared dependencies arrived, runs the preprocessing
there on the sample photographs (exact and fast decode, both families) and compares the crops byte
for byte with this environment's. About 25-50 s on the 2-core reference machine (venv, wheels of
numpy, OpenCV and Pillow from the local index, hatchling to build), so it runs in `make test`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import tomllib

import catalog
from catalog.resolve import preprocessor as preprocessor_for
from preprocess import Preprocessor
from tests.support import images
from tests.support.deployment import SERVED_MODELS

PROJECT = Path(__file__).resolve().parents[2]
PACKAGE = PROJECT / "preprocess"
SERVER_REQUIREMENTS = PROJECT / "requirements" / "server.txt"
ALWAYS_THERE = {"pip", "setuptools"}  # what `python -m venv` itself installs

# Run inside the clean venv: every crop, as JSON-safe bytes, plus where the package came from.
SCRIPT = """
import base64, json, sys
import cv2
from preprocess import Preprocessor
cv2.setNumThreads(1)
jobs = json.load(sys.stdin)
out = {"file": __import__("preprocess").__file__, "crops": []}
for job in jobs:
    prep = Preprocessor(job["resize_short"], job["crop"], job["resize"], decode_mode=job["mode"])
    out["crops"].append(base64.b64encode(prep.crop_encoded(base64.b64decode(job["data"])).tobytes()).decode())
print(json.dumps(out))
"""


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def declared() -> dict[str, str]:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"])


def test_declares_only_numpy_opencv_pillow_pinned_as_the_server() -> None:
    dependencies = declared()
    assert set(dependencies) == {"numpy", "opencv-python-headless", "pillow"}
    server = _pins(SERVER_REQUIREMENTS.read_text().splitlines())
    assert dependencies == {name: server[name] for name in dependencies}


def test_package_imports_nothing_outside_its_declared_dependencies() -> None:
    """Static check of every module: the standard library, numpy, cv2, PIL and itself, nothing else."""
    import ast

    allowed = {"numpy", "cv2", "PIL", "preprocess"} | set(sys.stdlib_module_names)
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            assert {name.split(".")[0] for name in names} <= allowed, f"{path.name} imports {names}"


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("standalone") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    python = root / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(PACKAGE)],
        check=True,
        cwd=root.parent,
        timeout=600,
    )
    return python


def test_clean_venv_holds_only_the_package_and_its_dependencies(clean_venv: Path) -> None:
    listed = subprocess.run(
        [str(clean_venv), "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    )
    installed = {row["name"].lower(): row["version"] for row in json.loads(listed.stdout)}
    assert set(installed) - ALWAYS_THERE == {"paddleclas-preprocess", *declared()}
    assert all(installed[name] == version for name, version in declared().items())


def test_standalone_crops_equal_the_served_ones(clean_venv: Path, sample_photos: list[Path]) -> None:
    files = [path.read_bytes() for path in sample_photos]
    files.append(images.jpeg(images.sized(4000, 3000, "coffee.png")))  # reduced in fast mode
    jobs, expected = [], []
    for name in SERVED_MODELS:
        exact = preprocessor_for(catalog.get(name))
        for mode in ("exact", "fast"):
            prep = Preprocessor(exact.resize_short, exact.crop, exact.resize, decode_mode=mode)
            for data in files:
                job = {"resize_short": prep.resize_short, "crop": prep.crop, "resize": prep.resize, "mode": mode}
                jobs.append(job | {"data": base64.b64encode(data).decode()})
                expected.append(prep.crop_encoded(data))
    result = subprocess.run(
        [str(clean_venv), "-I", "-c", SCRIPT],
        input=json.dumps(jobs),
        check=True,
        capture_output=True,
        text=True,
        cwd=clean_venv.parent.parent,  # not the project: the import must come from the venv
        timeout=300,
    )
    out = json.loads(result.stdout)
    assert Path(out["file"]).is_relative_to(clean_venv.parent.parent), out["file"]
    for want, got in zip(expected, out["crops"], strict=True):
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(got), np.uint8).reshape(want.shape), want)
