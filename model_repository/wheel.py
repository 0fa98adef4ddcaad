"""The tritonserver 2.51.0 the nvidia-pytriton wheel carries, made runnable from this checkout.

The wheel ships the server, its cache implementations, the Python backend and one backend stub per
Python version; the server expects the stub inside the backend directory, so that directory is
assembled (symlinks) under build/. The local server is the only user: the production image has all
of it at Triton's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

from model_repository.paths import PROJECT

BACKENDS_DIR = PROJECT / "build" / "triton_backends"


class ServerError(RuntimeError):
    """The server could not start or did not become ready; the message carries its log tail."""


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError:
        raise ServerError("nvidia-pytriton is not installed (it carries tritonserver): run `make setup`") from None
    return Path(pytriton.__file__).parent / "tritonserver"


def server_binary() -> Path:
    return _pytriton_dir() / "bin" / "tritonserver"


def cache_directory() -> Path:
    """The wheel's cache implementations (local/libtritoncache_local.so); the NGC image has them at the default."""
    return _pytriton_dir() / "caches"


def backend_directory() -> Path:
    """build/triton_backends/python: the wheel's Python backend plus the stub for this Python."""
    source = _pytriton_dir()
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"the nvidia-pytriton wheel has no Python backend stub for Python {sys.version.split()[0]}")
    python_dir = BACKENDS_DIR / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": source / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": source / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    for name, target in links.items():
        link = python_dir / name
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(target)
    return BACKENDS_DIR


def check_numpy() -> None:
    """The 2.51 Python backend stub is built for numpy 1: under numpy 2 every tensor arrives corrupt."""
    from importlib.metadata import version

    numpy_version = version("numpy")
    if int(numpy_version.split(".")[0]) >= 2:
        raise ServerError(
            f"numpy {numpy_version} is installed, but tritonserver 2.51's Python backend stub needs numpy 1.x "
            "(under numpy 2 it silently corrupts tensors): run `make setup` to restore the pinned versions"
        )
