"""Helpers of the chart tests: render the chart with Helm's own engine, once per value set.

helm_python binds the Helm v4 Go SDK, so rendering, schema validation and lint here are what
``helm install`` and ``helm lint`` do, without a helm binary or a cluster.
"""

from __future__ import annotations

import functools
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
CHART_DIR = HELM_DIR / "paddleclas-triton"
CI_DIR = CHART_DIR / "ci"
CI_CASES = sorted(path.name for path in CI_DIR.glob("*-values.yaml"))
DOCKERFILE = HELM_DIR / "image" / "Dockerfile"
IMAGE_CODE_DIR = "/opt/paddleclas"  # where the server image keeps the project's code
RELEASE = "demo"
NAMESPACE = "vision"

Manifest = dict[str, Any]


@functools.cache
def chart() -> helm.Chart:
    """The chart, loaded once (Helm charts are immutable and thread-safe)."""
    return helm.Chart.load(CHART_DIR)


def case_values(case: str) -> dict[str, Any]:
    """The overrides of one ``ci/NN-<case>-values.yaml`` file."""
    loaded = yaml.safe_load((CI_DIR / case).read_text(encoding="utf-8"))
    return loaded or {}


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` would produce."""
    return chart().render(values=values or {}, name=RELEASE, namespace=NAMESPACE)


def manifests(files: dict[str, str]) -> list[Manifest]:
    """Every Kubernetes object in the rendered files (NOTES.txt and empty documents skipped)."""
    objects: list[Manifest] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@functools.cache
def _render_case(case: str) -> tuple[Manifest, ...]:
    return tuple(manifests(render_files(case_values(case))))


def render_case(case: str) -> list[Manifest]:
    """Objects of one ci case, rendered once per session (callers must not mutate them)."""
    return list(_render_case(case))


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """Objects for ad-hoc values."""
    return manifests(render_files(values))


def one(objects: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The single object of ``kind`` whose name ends with ``name_suffix``; fails otherwise."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def pod_spec(objects: list[Manifest]) -> Manifest:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def server_container(objects: list[Manifest]) -> Manifest:
    containers = pod_spec(objects)["containers"]
    return next(c for c in containers if c["name"] == "tritonserver")


def walk(value: Any) -> Iterator[Any]:
    """Every nested value of a manifest, for searches like 'no hostPath anywhere'."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def init_containers(objects: list[Manifest]) -> list[Manifest]:
    """The server pod's init containers, in the order the kubelet runs them."""
    return list(pod_spec(objects).get("initContainers", []))


def init_container(objects: list[Manifest], name: str) -> Manifest:
    found = [c for c in init_containers(objects) if c["name"] == name]
    assert len(found) == 1, f"expected one init container {name}, found {len(found)}"
    return found[0]


def flags(args: list[str]) -> dict[str, str]:
    """``--flag=value`` arguments as a dict (flags without a value map to "")."""
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


# Every long option of tritonserver 2.73.0 (the production release), from its parser's source: the
# file names the repository, file and commit.
RELEASE_FLAGS_FILE = Path(__file__).resolve().parent / "data" / "tritonserver-2.73.0-flags.txt"
# Flags the chart passes that the local 2.51.0 does not parse (it exits on an unknown flag): the test
# that starts 2.51 with the chart's flags leaves these out, after checking 2.51 really lacks them.
NEWER_RELEASE_ONLY = ("--allow-client-shm", "--http-max-input-size")  # flags 2.51 lacks (tritonserver --help)


def release_flags() -> set[str]:
    """The flag names (without dashes) tritonserver 2.73.0 parses."""
    lines = RELEASE_FLAGS_FILE.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def listed_after(args: list[str], flag: str) -> list[str]:
    """The values of an argparse ``nargs="+"`` flag: the words after it, up to the next flag."""
    if flag not in args:
        return []
    values = []
    for word in args[args.index(flag) + 1 :]:
        if word.startswith("--"):
            break
        values.append(word)
    return values


def dockerfile_code_copies() -> list[tuple[str, str]]:
    """``COPY <sources> /opt/paddleclas/<dir>/`` of the server image, as (project path, image path) pairs.

    A source ending in ``/`` is a directory copied as one; a file lands in the destination directory.
    """
    copies = []
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line) if line.startswith("COPY ") else []
        words = [w for w in words[1:] if not w.startswith("--")]
        if len(words) >= 2 and words[-1].startswith(IMAGE_CODE_DIR + "/"):
            for source in words[:-1]:
                name = "" if source.endswith("/") else source.rsplit("/", 1)[-1]
                copies.append((source.rstrip("/"), words[-1].rstrip("/") + (f"/{name}" if name else "")))
    return copies


def image_code_tree(root: Path) -> Path:
    """``root`` holding the project code as the server image does (under IMAGE_CODE_DIR), nothing else."""
    for source, destination in dockerfile_code_copies():
        target = root / Path(destination).relative_to(IMAGE_CODE_DIR)
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / source, target)
    return root
