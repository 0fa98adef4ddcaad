"""Baselines measured in the same run as Triton, on the same machine and cores.

(a) the in-process pipeline, naive (one image at a time, batch 1, ONNX Runtime's default
threads) and best (sweep over sessions side by side, intra-op threads per session, batch size);
(b) Paddle Inference with oneDNN and (c) ONNX Runtime alone, on the same preprocessed
photographs at batch 1 and 8, with as many threads as the machine has cores.
Each configuration is a `python -m perf.inprocess` child process (see that module for why).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import catalog
from model_repository import configs
from model_repository.install import EXPORT_RECORD
from perf.machine import ForeignCpu, usable_cores, wait_for_quiet
from perf.profiles import Profile

PROJECT = Path(__file__).resolve().parent.parent


class BaselineError(RuntimeError):
    """An in-process measurement failed; the message carries the child's output."""


def child_once(args: list[str], log: Path, timeout_s: float) -> object:
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "perf.inprocess", *args]
    with log.open("a") as err:
        err.write("$ " + " ".join(cmd) + "\n")
        err.flush()
        foreign = ForeignCpu()
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout_s)
    other = foreign.stop()
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BaselineError(f"{' '.join(args[:1])} failed (exit {result.returncode}); see {log}")
    measured = json.loads(lines[-1])
    for row in measured if isinstance(measured, list) else [measured]:
        row["other_cpu_percent"] = other
    return measured


def child(args: list[str], log: Path, quiet_percent: float | None = None, timeout_s: float = 3600.0) -> object:
    """Run `python -m perf.inprocess ARGS` (its last stdout line is JSON).

    With `quiet_percent`, a measurement during which other processes used more than that share
    of the machine is repeated (up to 3 times) after they calm down, as perf_analyzer points are.
    """
    measured = child_once(args, log, timeout_s)
    for _ in range(3):
        rows = measured if isinstance(measured, list) else [measured]
        worst = max((r.get("other_cpu_percent") or 0.0 for r in rows), default=0.0)
        if quiet_percent is None or worst <= quiet_percent:
            break
        print(f"  other processes used {worst:.0f} % of the machine; waiting, then measuring again", flush=True)
        wait_for_quiet(quiet_percent, 600.0)
        measured = child_once(args, log, timeout_s)
    return measured


def export_record(repository: Path, entry: catalog.ModelEntry) -> dict:
    return json.loads((repository / configs.network_name(entry) / EXPORT_RECORD).read_text())


def onnx_path(repository: Path, entry: catalog.ModelEntry) -> Path:
    return repository / configs.network_name(entry) / "1" / "model.onnx"


def find_program(directory: Path) -> Path:
    """A Paddle inference program in `directory` (Paddle 3's .json or Paddle 2's .pdmodel).

    export.network.find_program says the same, but importing it imports paddle, which this
    driver process must not do (paddle reconfigures logging and its threads would linger).
    """
    for name in ("inference.json", "inference.pdmodel"):
        if (directory / name).is_file() and (directory / "inference.pdiparams").is_file():
            return directory / name
    raise FileNotFoundError(f"no Paddle inference program in {directory}")


def paddle_program(entry: catalog.ModelEntry, record: dict, cache: Path, log: Path) -> Path:
    """The exported model as a Paddle inference program (same weights), built once and cached."""
    source = record.get("source", {})
    if source.get("kind") == "inference":
        return find_program(Path(source["path"]))
    # The builder's code is part of the key: it decides the weights a seed turns into.
    builder = hashlib.sha256((PROJECT / "export" / "network.py").read_bytes()).hexdigest()
    key = json.dumps({"source": source, "paddle": version("paddlepaddle"), "builder": builder}, sort_keys=True)
    directory = cache / f"{entry.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    try:
        return find_program(directory)
    except FileNotFoundError:
        pass
    args = ["paddle-model", "--model", entry.name, "--source", json.dumps(source), "--out", str(directory)]
    result = child(args, log)
    assert isinstance(result, dict)
    return Path(result["program"])


def pipeline(
    entry: catalog.ModelEntry,
    onnx: Path,
    log: Path,
    profile: Profile,
    sessions: int,
    threads: int,
    batch: int,
    images: int,
):
    args = ["pipeline", "--model", entry.name, "--onnx", str(onnx), "--sessions", str(sessions)]
    args += ["--threads", str(threads), "--batch", str(batch), "--images", str(images)]
    return child(args, log, profile.windows.quiet_percent)


def network(engine: str, entry: catalog.ModelEntry, path: Path, profile: Profile, threads: int, log: Path):
    args = ["network", "--engine", engine, "--model", entry.name, "--path", str(path), "--threads", str(threads)]
    args += ["--seconds", str(profile.network_seconds), "--batches", *map(str, profile.network_batches)]
    return child(args, log, profile.windows.quiet_percent)


def pipelines(
    entry: catalog.ModelEntry,
    repository: Path,
    profile: Profile,
    work: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """The in-process pipeline, naive and the sweep over sessions x threads x batch (best of it)."""
    log = work / f"{entry.triton_name}_baselines.log"
    onnx = onnx_path(repository, entry)
    cores = usable_cores()
    naive = pipeline(entry, onnx, log, profile, sessions=1, threads=0, batch=1, images=profile.naive_images)
    assert isinstance(naive, dict)
    progress(f"  {entry.name} in-process naive: {naive['throughput']:.2f} images/s, p50 {naive['p50_ms']:.1f} ms")
    rate = float(naive["throughput"])
    sweep = []
    for sessions in profile.sweep_sessions or range(1, cores + 1):
        for threads in profile.sweep_threads or sorted({1, cores}):
            for batch in profile.sweep_batches:
                images = profile.images_for(rate, sessions, batch)
                sweep.append(pipeline(entry, onnx, log, profile, sessions, threads, batch, images))
                last = sweep[-1]
                progress(
                    f"  {entry.name} in-process {sessions} session(s) x {threads} thread(s), batch {batch}: "
                    f"{last['throughput']:.2f} images/s"
                )
    best = max(sweep, key=lambda r: r["throughput"])
    return {"pipeline_naive": naive, "pipeline_sweep": sweep, "pipeline_best": best}


def measure(
    entry: catalog.ModelEntry,
    repository: Path,
    profile: Profile,
    work: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Every baseline of one model; `repository` holds its exported model.onnx and export record."""
    measured = pipelines(entry, repository, profile, work, progress)
    log = work / f"{entry.triton_name}_baselines.log"
    cores = usable_cores()
    engines = {}
    engines["onnxruntime"] = network("onnxruntime", entry, onnx_path(repository, entry), profile, cores, log)
    program = paddle_program(entry, export_record(repository, entry), work.parent / "paddle", log)
    engines["paddle"] = network("paddle", entry, program, profile, cores, log)
    for name, rows in engines.items():
        text = ", ".join(f"batch {r['batch']}: {r['ms_per_batch']:.0f} ms" for r in rows)
        progress(f"  {entry.name} network alone, {name} ({cores} threads): {text}")
    return measured | {"network": engines}
