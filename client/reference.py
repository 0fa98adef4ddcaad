"""`evaluate --reference`: PaddleClas's own deployment path, run by the export package in a process of its own.

The client imports neither Paddle nor the export code: `python -m export reference build|run`
(export/reference.py) rebuilds the served network exactly as the export built it and runs PaddleClas's
operators and Paddle Inference. This module starts those two commands with the interpreter running the
client, passes their progress lines on to stderr, and reads the records they write. The program is
built first, into a temporary directory that lives as long as the evaluation, so a missing export
record stops the run before any request.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The checkout this client runs from, which holds the export package beside it.
CHECKOUT = Path(__file__).resolve().parent.parent
Record = dict


class ReferenceUnavailableError(RuntimeError):
    """The reference could not be built or run; the message is the export's own."""


def _export_reference(args: list[str]) -> None:
    """`python -m export reference ARGS`, its output passed on to stderr; ReferenceUnavailableError when it fails."""
    path = os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "export", "reference", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": path}
    ) as process:
        assert process.stdout is not None
        last = ""
        for line in process.stdout:
            if line.startswith("error: "):
                last = line.removeprefix("error: ").strip()
            else:
                print(line, end="", file=sys.stderr, flush=True)
                last = line.strip() or last
    if process.returncode != 0:
        raise ReferenceUnavailableError(
            last or f"python -m export reference exited with {process.returncode} (it needs Paddle and PaddleClas)"
        )


@contextlib.contextmanager
def reference_program(model: str, paddle_model: Path | None, repository: Path | None) -> Iterator[Path]:
    """The Paddle program: --paddle-model's, or rebuilt from --repository's export record; temporary files go."""
    with tempfile.TemporaryDirectory(prefix="evaluate-reference-") as tmp:
        out = Path(tmp) / "program"
        where = ["--paddle-model", str(paddle_model)] if paddle_model else ["--repository", str(repository)]
        _export_reference(["build", "--model", model, *where, "--work", tmp, "--out", str(out)])
        yield Path(out.read_text("utf-8"))


def reference_records(
    model: str, program: Path, paths: list[Path], batch_size: int = 8, progress_every: int = 500
) -> list[Record]:
    """Each image's top-5 by PaddleClas's operators and Paddle Inference, or {"error": ...}, in `paths` order."""
    with tempfile.TemporaryDirectory(prefix="evaluate-reference-") as tmp:
        listed, out = Path(tmp) / "paths.txt", Path(tmp) / "records.json"
        listed.write_text("".join(f"{path.resolve()}\n" for path in paths), "utf-8")
        files = ["--program", str(program), "--paths", str(listed), "--out", str(out)]
        _export_reference(
            ["run", "--model", model, *files, "--batch-size", str(batch_size), "--progress", str(progress_every)]
        )
        return json.loads(out.read_text("utf-8"))
