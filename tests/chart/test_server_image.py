"""The server image installs what the model code imports, pinned as tested, on the right base.

No container engine runs here, so the Dockerfile is read, not built: it must install exactly
requirements/server.txt, and every third-party module the server-side Python code imports must come
from a distribution pinned there. "Server-side" starts at the files that import
triton_python_backend_utils and follows their imports of the project's own packages.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
from functools import cache
from pathlib import Path

import yaml
from chart_helpers import CHART_DIR, HELM_DIR, REPO

DOCKERFILE = HELM_DIR / "image" / "Dockerfile"
DOCKERIGNORE = HELM_DIR / "image" / "Dockerfile.dockerignore"
SERVER_REQUIREMENTS = REPO / "requirements" / "server.txt"
SOURCE_ROOTS = [REPO / "model_repository", REPO / "preprocess"]
BUILT_REPOSITORY = REPO / "build" / "model_repository"
BACKEND_PROVIDED = {"triton_python_backend_utils"}
BASE_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


def normalize(name: str) -> str:
    """PEP 503 form, so "Pillow", "pillow" and "opencv_python_headless" compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements() -> dict[str, str]:
    """Distribution -> version of requirements/server.txt (every line must pin with ==)."""
    pins = {}
    for line in SERVER_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9][^\s;]*)", line)
        assert match, f"requirements/server.txt: {line!r} is not pinned with =="
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def local_modules(directory: Path) -> dict[str, list[Path]]:
    """Modules and packages importable from ``directory``: name -> their Python files."""
    found: dict[str, list[Path]] = {}
    for child in directory.iterdir():
        if child.suffix == ".py":
            found[child.stem] = [child]
        elif child.is_dir() and (child / "__init__.py").is_file():
            found[child.name] = sorted(child.rglob("*.py"))
    return found


def server_side_files(roots: list[Path]) -> set[Path]:
    """Files importing triton_python_backend_utils, plus the local code they pull in."""
    candidates = [p for root in roots if root.is_dir() for p in root.rglob("*.py")]
    pending = [p for p in candidates if imported_modules(p) & BACKEND_PROVIDED]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        # A model file ships as model.py, so its own name never resolves to itself.
        siblings = {n: f for n, f in local_modules(path.parent).items() if f != [path]}
        local = {**local_modules(REPO), **siblings}
        for name in imported_modules(path):
            pending.extend(local.get(name, []))
    return seen


def third_party_imports(files: set[Path]) -> dict[str, set[Path]]:
    """Module name -> files importing it, without stdlib, backend-provided or local modules."""
    found: dict[str, set[Path]] = {}
    for path in files:
        local = set(local_modules(REPO)) | set(local_modules(path.parent))
        for name in imported_modules(path) - BACKEND_PROVIDED - local:
            if name not in sys.stdlib_module_names and name != "__future__":
                found.setdefault(name, set()).add(path)
    return found


@cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    """Installed distribution providing ``module`` (cv2 -> opencv-python-headless); else its name."""
    candidates = _distributions().get(module, [module])
    pinned = pinned_requirements()
    return next((normalize(c) for c in candidates if normalize(c) in pinned), normalize(candidates[0]))


def missing_from_image(files: set[Path]) -> dict[str, str]:
    """Imported module -> distribution, for modules the image would not have."""
    pinned = pinned_requirements()
    return {
        module: distribution_of(module)
        for module in third_party_imports(files)
        if distribution_of(module) not in pinned
    }


def test_model_code_imports_only_what_the_image_installs() -> None:
    files = server_side_files(SOURCE_ROOTS)
    if BUILT_REPOSITORY.is_dir():  # what the export actually wrote, when it has been built
        files |= server_side_files([BUILT_REPOSITORY])
    assert files, "no server-side model code found (nothing imports triton_python_backend_utils)"
    assert missing_from_image(files) == {}
    # The known model code really is covered (the walk found the shipped packages).
    imported = set(third_party_imports(files))
    assert {"numpy", "cv2"} <= imported, imported


def test_the_check_catches_an_unlisted_import(tmp_path: Path) -> None:
    """Someone adds ``import scipy`` to a model: the check must name it."""
    model = tmp_path / "model.py"
    model.write_text("import numpy\nimport scipy.ndimage\nimport triton_python_backend_utils\n", encoding="utf-8")
    assert missing_from_image({model}) == {"scipy": "scipy"}
    helper = tmp_path / "helper.py"
    helper.write_text("def f():\n    import sklearn\n", encoding="utf-8")
    model.write_text("import helper\nimport triton_python_backend_utils\n", encoding="utf-8")
    assert missing_from_image(server_side_files([tmp_path])) == {"sklearn": "scikit-learn"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_installs_exactly_server_requirements() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", f"{BASE_IMAGE} AS server")
    copies = [shlex.split(args) for keyword, args in instructions if keyword == "COPY"]
    requirement_copy = [c for c in copies if c[0] == "requirements/server.txt"]
    assert len(requirement_copy) == 1, "COPY requirements/server.txt exactly once"
    target = requirement_copy[0][1]
    pip_runs = [args for keyword, args in instructions if keyword == "RUN" and "pip" in args]
    assert len(pip_runs) == 1, pip_runs
    words = shlex.split(pip_runs[0])
    assert words[:4] == ["python3", "-m", "pip", "install"], words
    options = words[4:]
    positional = [
        w for i, w in enumerate(options) if not w.startswith("-") and options[i - 1] not in ("--requirement", "-r")
    ]
    assert positional == [], f"packages installed outside server.txt: {positional}"
    assert f"--requirement={target}" in options or (
        "--requirement" in options and options[options.index("--requirement") + 1] == target
    )


def test_image_runs_as_the_chart_user() -> None:
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    run_as = yaml.safe_load((CHART_DIR / "values.yaml").read_text("utf-8"))["podSecurityContext"]
    assert users == [f"{run_as['runAsUser']}:{run_as['runAsGroup']}"]


def test_build_context_keeps_what_the_dockerfile_copies() -> None:
    """Dockerfile.dockerignore starts from nothing; each COPY source must be let back in."""
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text("utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            assert words[0].rstrip("/") in allowed, words[0]


def test_companion_images_are_the_same_release() -> None:
    """The SDK image (helm test) and the TensorRT image (plans) share the server's yy.mm."""
    release = re.search(r":(\d\d\.\d\d)-py3$", BASE_IMAGE).group(1)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text("utf-8"))
    assert values["tests"]["image"]["tag"] == f"{release}-py3-sdk"
    assert values["trtPlans"]["image"]["tag"] == f"{release}-py3"
