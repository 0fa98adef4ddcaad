"""Run the real tritonserver 2.51.0 binary (from the nvidia-pytriton wheel) on a model repository.

python -m model_repository.server [--repository DIR] [--models NAME ...] [--cores auto|N]
    [--preprocess-instances N ...] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]

The wheel ships the server, the Python backend and one backend stub per Python version; the
server expects the stub inside the backend directory, so we assemble that directory (symlinks)
under build/. Same flags as production: strict readiness, no dynamic model loading. The server
reads a serving copy of the repository rendered at start (model_repository/layout.py): only the
selected models, every step sized for the cores this machine lets the server use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from model_repository import configs, layout

PROJECT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TritonServer:
    """A tritonserver process; use as a context manager so it is always stopped."""

    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_path: Path | None = None
    exit_timeout_secs: int = 10
    models: list[str] | None = None  # catalog names to serve; None: every installed model
    cores: int | None = None  # None: the usable cores (cgroup-aware)
    layout: configs.Layout | None = None  # None: configs.Layout.for_cores(cores)
    warmup: bool = True  # False skips model_warmup: a faster start, and "ready" no longer means warm
    process: subprocess.Popen | None = field(default=None, init=False)
    serving: dict | None = field(default=None, init=False)  # what layout.render wrote
    _serving_dir: Path | None = field(default=None, init=False)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def served_models(self) -> list[str]:
        """Ensembles (public entry points) the running server serves."""
        return list(self.serving["models"]) if self.serving else []

    def command(self) -> list[str]:
        assert self._serving_dir is not None, "start() renders the serving copy first"
        return [
            str(server_binary()),
            f"--model-repository={self._serving_dir}",
            f"--backend-directory={backend_directory()}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--strict-readiness=true",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout_secs}",
        ]

    def environment(self) -> dict[str, str]:
        """Make the backend stub's embedded Python this environment's Python.

        The stub starts Python in isolated mode (PYTHONPATH is ignored) and takes sys.executable
        from PATH; with this venv's bin/ first it finds the venv's pyvenv.cfg, so model.py imports
        numpy, OpenCV and ONNX Runtime from here. LD_LIBRARY_PATH gives it this interpreter's own
        libpython rather than the system's, so library and standard library versions match.
        """
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir and Path(libdir, sysconfig.get_config_var("LDLIBRARY") or "").exists():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
        return env

    def _render(self) -> None:
        cores, resolved = layout.resolve(self.cores)
        resolved = self.layout or resolved
        BACKENDS_DIR.parent.mkdir(parents=True, exist_ok=True)
        self._serving_dir = Path(tempfile.mkdtemp(prefix="serving-", dir=BACKENDS_DIR.parent))
        try:
            self.serving = layout.render(self.repository, self._serving_dir, self.models, resolved, cores, self.warmup)
        except Exception as err:
            self._remove_serving_copy()
            raise ServerError(str(err)) from err

    def _remove_serving_copy(self) -> None:
        if self._serving_dir is not None:
            shutil.rmtree(self._serving_dir, ignore_errors=True)
            self._serving_dir = None

    def start(self) -> None:
        check_numpy()
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} does not exist: export a model first (make export)")
        self._render()
        log = self.log_path.open("wb") if self.log_path else None
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT if log else None
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}{self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise ServerError(f"tritonserver not ready after {timeout:.0f}s{self._log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout_secs + 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._remove_serving_copy()

    def _log_tail(self, lines: int = 25) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=PROJECT / "build" / "model_repository" / "portable")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    layout.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cores, resolved = layout.layout_from_arguments(args)
    except ValueError as err:
        parser.error(str(err))
    server = TritonServer(
        args.repository,
        args.http_port,
        args.grpc_port,
        args.metrics_port,
        models=args.models,
        cores=cores,
        layout=resolved,
        warmup=args.warmup,
    )

    # A signal only forwards itself to tritonserver; the main thread waits for the exit and cleans
    # up. (Waiting inside the handler too would deadlock on the lock the main thread's wait holds.)
    # A shell's background job starts with SIGINT ignored, and supervisors stop with SIGTERM.
    def forward(signum: int, _frame: object) -> None:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    try:
        server.start()
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    assert server.process is not None and server.serving is not None
    addresses = f"HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}"
    print(
        f"serving {', '.join(server.served_models)} on {server.serving['cores']} cores: "
        f"{json.dumps(server.serving['layout'])}",
        flush=True,
    )
    print(f"tritonserver: {addresses} (Ctrl-C stops)", flush=True)
    try:
        return server.process.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
