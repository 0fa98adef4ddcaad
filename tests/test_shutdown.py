"""`python -m model_repository.server` (what `make serve` runs) stops cleanly on SIGINT and on SIGTERM.

The launcher forwards the signal to tritonserver and reaps it; it must exit within tritonserver's
exit timeout plus 10 s and leave no tritonserver or Python backend stub behind (issue 12).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_repository.server import PROJECT, TritonServer, free_port, is_ready

pytestmark = pytest.mark.server

EXIT_TIMEOUT_S = TritonServer.exit_timeout_secs  # the launcher's --exit-timeout-secs


def descendants(root: int) -> dict[int, str]:
    """pid -> command of every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_launcher_stops_within_the_exit_timeout_and_leaves_nothing(
    exported_repository: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    http_port = free_port()
    command = [sys.executable, "-m", "model_repository.server", "--repository", str(exported_repository)]
    command += ["--models", "NextViT_small_224", "--cores", "2", "--no-warmup", "--http-port", str(http_port)]
    command += ["--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    log = (tmp_path / "launcher.log").open("wb")
    process = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"127.0.0.1:{http_port}", process)
        children = descendants(process.pid)
        assert any("tritonserver" in c for c in children.values()), children
        assert any("triton_python_backend_stub" in c for c in children.values()), children
        start = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=EXIT_TIMEOUT_S + 10)
        stopped_s = time.monotonic() - start
        left: list[str] = []
        for _ in range(20):  # orphans are reaped by init; give it a moment
            left = [f"{pid} {command}" for pid, command in children.items() if running(pid)]
            if not left:
                break
            time.sleep(0.1)
        assert not left, f"left behind after {stopped_s:.1f} s: {left}"
        assert code == 0, (tmp_path / "launcher.log").read_text(errors="replace")[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
