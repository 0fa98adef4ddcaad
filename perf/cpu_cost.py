"""CPU time per served image: what a node's cores pay for each image, whatever else shares the machine.

A closed loop of perf_analyzer on the cores the server uses measures the server, the load generator and
the frontend competing; CPU time does not depend on who else runs. So: tritonserver on one core, the load
generator (`open_loop`: gRPC requests at a fixed rate below saturation) on another, and the CPU
seconds of tritonserver and its step processes, read from /proc before and after a steady window,
divided by the images the server answered.

The network is a stand-in (perf/standin.py: the network's tensors, almost no work), moved to the
generator's core and counted apart: on a GPU node that work is the GPU's, and the portable network would
cap the rate at a few images a second, where no request shares a step's execution with another as they
do at a GPU node's rate. Requests carry 1 image (an interactive client) or 8 (a batch client).

A tier is a way of serving the same model (exact, fast decode, client-side crops, or any TritonServer
setting given on the command line, e.g. a resize tier: `--tier NAME=OPTION=VALUE`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import catalog
from catalog.resolve import preprocessor
from model_repository import configs, procfs
from model_repository.server import TritonServer
from perf import standin, triton_stats
from perf.input_data import IMAGE_INPUT

PROBE_RATE = 2.0  # images/s of the short probe that sizes the measured rate
PROBE_S = 8.0
DRAIN_S = 300.0  # the longest wait for a window's last answers
SERVER_LOAD = 0.5  # the measured rate keeps the server's core about half busy ...
NETWORK_LOAD = 0.6  # ... and the generator's core, which also runs the network, below saturation
WINDOW_IMAGES, MIN_WINDOW_S, MAX_WINDOW_S = 150, 15.0, 45.0  # a window long enough for 150 images, within bounds
QUICK_S = 4.0  # --quick: probe and window, an end-to-end check only
IMAGES_PER_REQUEST = (1, 8)  # an interactive client's request, and a batch client's (the drills', the peer's)


@dataclass(frozen=True)
class Tier:
    """One way of serving a model: TritonServer options, and whether clients send crops (`<model>_crop`)."""

    name: str
    server: dict[str, object] = field(default_factory=dict)
    crops: bool = False


TIERS = {
    "exact": Tier("exact"),
    "fast-decode": Tier("fast-decode", {"fast_decode": True}),
    "near-exact": Tier("near-exact", {"resize_tier": "near-exact"}),  # NextViT's resize on pillow-simd
    "client-crops": Tier("client-crops", crops=True),
}


def parse_tier(text: str) -> Tier:
    """A tier by name (TIERS), or NAME=OPTION=VALUE[,OPTION=VALUE]: TritonServer options, values as JSON or text."""
    if "=" not in text:
        if text not in TIERS:
            raise ValueError(f"unknown tier {text!r}: one of {', '.join(TIERS)}, or NAME=OPTION=VALUE[,...]")
        return TIERS[text]
    name, _, options = text.partition("=")
    server: dict[str, object] = {}
    for item in options.split(","):
        option, _, value = item.partition("=")
        if option not in TritonServer.__dataclass_fields__:
            raise ValueError(f"tier {name!r}: {option!r} is not a TritonServer option")
        try:
            server[option] = json.loads(value)
        except json.JSONDecodeError:
            server[option] = value
    return Tier(name, server)


@dataclass(frozen=True)
class Cores:
    """Where the server runs and where the load (generator, network) runs; None: unpinned."""

    server: int | None
    load: int | None

    @classmethod
    def split(cls) -> Cores:
        """The highest usable core for the server, the lowest for the load; unpinned on a one-core machine."""
        usable = sorted(os.sched_getaffinity(0))
        return cls(usable[-1], usable[0]) if len(usable) >= 2 else cls(None, None)


def pin(pid: int, core: int) -> None:
    """Every thread of `pid` onto `core` (threads it starts later inherit it); threads that end meanwhile skipped."""
    for task in (procfs.PROC / str(pid) / "task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except (ProcessLookupError, PermissionError):
            continue


@contextmanager
def pinned_start(core: int | None) -> Iterator[None]:
    """Processes started inside run on `core` (affinity is inherited); this process's own mask comes back after."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of `pid`, in ns precision (/proc/PID/task/TID/schedstat, first field)."""
    total = 0
    for task in (procfs.PROC / str(pid) / "task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def tick_seconds(pid: int) -> float:
    """utime + stime of `pid` (every thread, ended ones too), in clock ticks: the coarse cross-check."""
    try:
        stat = (procfs.PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    utime, stime = stat[stat.rindex(")") + 2 :].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def processes(server: TritonServer) -> dict[str, list[int]]:
    """The server's processes by role: tritonserver itself, the Python steps, the networks."""
    assert server.process is not None
    roles: dict[str, list[int]] = {"tritonserver": [server.process.pid], "steps": [], "network": []}
    for process in procfs.descendants(server.process.pid)[1:]:
        network = configs.NETWORK_SUFFIX + "/" in process.command
        roles["network" if network else "steps"].append(process.pid)
    return roles


def sample(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far per role, and utime + stime of the served roles (tritonserver and steps)."""
    totals = {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()}
    served_pids = roles["tritonserver"] + roles["steps"]
    return totals | {"ticks": sum(tick_seconds(pid) for pid in served_pids), "wall": time.monotonic()}


def requests(entry: catalog.ModelEntry, jpegs: list[bytes], crops: bool, images: int = 1) -> tuple[str, list[list]]:
    """The model a tier's clients call and one request per photograph, of `images` images from it on: the
    JPEGs, or their client-side crops."""
    import tritonclient.grpc as grpcclient

    groups = [[jpegs[(start + k) % len(jpegs)] for k in range(images)] for start in range(len(jpegs))]
    made = []
    if not crops:
        for group in groups:
            tensor = grpcclient.InferInput(IMAGE_INPUT, [len(group), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[data] for data in group], dtype=object))
            made.append([tensor])
        return entry.triton_name, made
    crop = preprocessor(entry)
    for group in groups:
        pixels = np.stack([np.ascontiguousarray(crop.crop_encoded(data), dtype=np.uint8) for data in group])
        tensor = grpcclient.InferInput(configs.NETWORK_INPUT, list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        made.append([tensor])
    return configs.crop_ensemble_name(entry), made


def open_loop(client, model: str, inputs: list[list], rate: float, seconds: float) -> int:
    """`rate` requests/s at uniform intervals for `seconds`, never waiting for an answer to send the next (an
    open loop: arrivals do not slow down with the server); returns once every answer is in, their number."""
    answers: list[object] = []
    total, start = max(1, round(rate * seconds)), time.monotonic()
    for index in range(total):
        time.sleep(max(0.0, start + index / rate - time.monotonic()))
        client.async_infer(model, inputs[index % len(inputs)], lambda result, error: answers.append(error))
    deadline = time.monotonic() + DRAIN_S
    while len(answers) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = [error for error in answers if error is not None]
    if failed or len(answers) < total:
        first = f" (first: {failed[0]})" if failed else ""
        raise RuntimeError(f"{model}: {len(failed)} of {total} requests failed{first}, {len(answers)} answered")
    return total


def window(server: TritonServer, model: str, inputs: list[list], rate: float, seconds: float) -> dict:
    """CPU seconds per role and images answered over one open-loop run of `rate` requests/s; CPU ms per image."""
    import tritonclient.grpc as grpcclient

    headers, roles = server.admin_headers("grpc"), processes(server)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        before, counts = sample(roles), triton_stats.snapshot(client, headers)
        open_loop(client, model, inputs, rate, seconds)
        after = sample(roles)
        answered = triton_stats.difference(counts, triton_stats.snapshot(client, headers))
    images = answered[model].inferences
    spent = {role: after[role] - before[role] for role in after}
    served = spent["tritonserver"] + spent["steps"]
    return {
        "rate": rate,
        "images": images,
        "seconds": round(spent.pop("wall"), 2),
        "cpu_s": {role: round(value, 4) for role, value in spent.items()},
        "served_ms": 1000 * served / max(images, 1),
        "ticks_ms": 1000 * spent["ticks"] / max(images, 1),
        "network_ms": 1000 * spent["network"] / max(images, 1),
    }


def measured_rate(probe: dict) -> float:
    """The image rate that keeps the server's core SERVER_LOAD busy and the load core below saturation."""
    limits = [SERVER_LOAD * 1000 / max(probe["served_ms"], 0.01)]
    if probe["network_ms"] > 0:
        limits.append(NETWORK_LOAD * 1000 / probe["network_ms"])
    return round(max(1.0, min(limits)), 1)


def point(
    server: TritonServer,
    entry: catalog.ModelEntry,
    tier: Tier,
    jpegs: list[bytes],
    floor: float,
    images: int = 1,
    quick: bool = False,
) -> dict:
    """One model, tier, size and request size: a short probe, then the measured window at the rate it allows.

    `floor`: CPU seconds per second tritonserver and the steps use idle; `net_ms` leaves that out.
    """
    model, inputs = requests(entry, jpegs, tier.crops, images)
    probe = window(server, model, inputs, PROBE_RATE / images, QUICK_S if quick else PROBE_S)
    image_rate = measured_rate(probe)
    seconds = QUICK_S if quick else min(MAX_WINDOW_S, max(MIN_WINDOW_S, WINDOW_IMAGES / image_rate))
    measured = window(server, model, inputs, image_rate / images, seconds)
    measured["net_ms"] = measured["served_ms"] - 1000 * floor * measured["seconds"] / max(measured["images"], 1)
    return measured | {"images_per_request": images, "probe": probe}


def idle(server: TritonServer, seconds: float = 5.0) -> dict[str, float]:
    """CPU seconds per second the server's roles use with no load: the floor every window pays."""
    roles = processes(server)
    before = sample(roles)
    time.sleep(seconds)
    after = sample(roles)
    wall = after["wall"] - before["wall"]
    return {role: round((after[role] - before[role]) / wall, 5) for role in roles}


def measure(
    repository: Path,
    models: list[str],
    tiers: list[Tier],
    jpegs: dict[tuple[int, int], list[bytes]],
    out: Path,
    quick: bool = False,
    progress: Callable[[str], None] = print,
) -> dict:
    """Every model x tier x size x request size, one server per tier (both models) on the stand-in network,
    pinned as Cores.split() says."""
    cores, rows, idles = Cores.split(), [], {}
    out.mkdir(parents=True, exist_ok=True)
    served = standin.standin_repository(repository, out / "standin_repository")
    sizes = IMAGES_PER_REQUEST[:1] if quick else IMAGES_PER_REQUEST
    for tier in tiers:
        options = {"queue_policies": False, **({"cores": 1} if cores.server is not None else {}), **tier.server}
        with ExitStack() as stack:
            with pinned_start(cores.server):  # tritonserver and every step start on the server's core
                log = out / f"tritonserver-{tier.name}.log"
                started = stack.enter_context(TritonServer.on_free_ports(served, log, models=list(models), **options))
            if cores.load is not None:
                for pid in processes(started)["network"]:
                    pin(pid, cores.load)
            idles[tier.name] = idle(started)
            floor = idles[tier.name]["tritonserver"] + idles[tier.name]["steps"]
            with pinned_start(cores.load):
                for name in models:
                    entry = catalog.get(name)
                    for (width, height), photos in jpegs.items():
                        for images in sizes:
                            size = f"{width}x{height}"
                            where = {"model": name, "tier": tier.name, "jpeg": size, "images_per_request": images}
                            label = f"  {tier.name} {name} {width}x{height} x{images}"
                            try:
                                row = point(started, entry, tier, photos, floor, images, quick)
                            except RuntimeError as err:  # failed requests: recorded, and the other points still run
                                rows.append(where | {"error": str(err)})
                                progress(f"{label}: {err}")
                                continue
                            rows.append(where | row)
                            progress(f"{label}: {row['net_ms']:.2f} CPU ms per image")
    placement = {"server_core": cores.server, "load_core": cores.load, "network_core": cores.load}
    described = {tier.name: tier.server | {"crops": tier.crops} for tier in tiers}
    return {"cores": placement, "network": "stand-in", "tiers": described, "idle": idles, "rows": rows}
