"""`python -m model_repository serve` (what `make serve` runs) stops cleanly on SIGINT and on SIGTERM.

The launcher forwards the signal to tritonserver and reaps it; it must exit within tritonserver's
exit timeout plus 10 s and leave no tritonserver or Python backend stub behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from model_repository.health import is_ready
from model_repository.paths import PROJECT
from model_repository.serve import STEP_DIED_EXIT, serve_command
from model_repository.server import Ports, TritonServer
from tests.support.processes import descendants

# Each test starts `make serve`'s launcher itself (no server fixture): marked here.
pytestmark = pytest.mark.server

EXIT_TIMEOUT_S = TritonServer.exit_timeout_secs  # the launcher's --exit-timeout-secs


def running(pid: int) -> bool:
    """True unless the process is gone or a zombie waiting for its parent."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def wait_ready(http_url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the launcher exited with {process.returncode} before ready"
        if is_ready(http_url):
            return
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout:.0f} s")


def start_launcher(repository: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`python -m model_repository serve` (what make serve runs) on free ports, ready, and its HTTP address."""
    ports = Ports.free()
    command = serve_command(repository, ports, "--models", "NextViT_small_224", "--cores", "2", "--no-warmup")
    process = subprocess.Popen(command, cwd=PROJECT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(f"127.0.0.1:{ports.http}", process)
    return process, f"127.0.0.1:{ports.http}"


def assert_nothing_left(children: dict[int, str], stopped_s: float) -> None:
    left: list[str] = []
    for _ in range(20):  # orphans are reaped by init; give it a moment
        left = [f"{pid} {command}" for pid, command in children.items() if running(pid)]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"left behind after {stopped_s:.1f} s: {left}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_launcher_stops_within_the_exit_timeout_and_leaves_nothing(
    exported_repository: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    process, _ = start_launcher(exported_repository, tmp_path / "launcher.log")
    try:
        children = descendants(process.pid)
        assert any("tritonserver" in c for c in children.values()), children
        assert any("triton_python_backend_stub" in c for c in children.values()), children
        start = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=EXIT_TIMEOUT_S + 10)
        assert_nothing_left(children, time.monotonic() - start)
        assert code == 0, (tmp_path / "launcher.log").read_text(errors="replace")[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_dead_python_step_stops_the_launcher_loudly(exported_repository: Path, tmp_path: Path) -> None:
    """2.51 neither restarts a killed stub nor reports unready (test_overload.py); the launcher must notice."""
    log = tmp_path / "launcher.log"
    process, http_url = start_launcher(exported_repository, log)
    try:
        children = descendants(process.pid)
        time.sleep(2)  # the watch counts the steps once it has seen the server ready
        (victim,) = [pid for pid, command in children.items() if "postprocess/1/model.py" in command]
        start = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        code = process.wait(timeout=EXIT_TIMEOUT_S + 15)
        assert_nothing_left(children, time.monotonic() - start)
        output = log.read_text(errors="replace")
        assert code == STEP_DIED_EXIT, output[-2000:]
        # On 2 cores: 2 preprocess, 1 interactive preprocess, 1 PIXELS, 1 top-k, 1 network, 1 interactive network.
        assert "1 of 7 Python step processes died" in output and "neither restarts them" in output
        assert not is_ready(http_url)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
