"""Every PromQL expression the project ships, evaluated by a real Prometheus scraping the real server under load.

Prometheus 2.42 (Debian's package, unpacked by `make setup`) scrapes the session tritonserver every
second with the namespace and pod labels a cluster's ServiceMonitor adds (tests/support/prometheus.py).
Each test starts its own Prometheus, so the one-minute windows of the adapter's rule hold only that
test's traffic. The HPA's metric is prometheus-adapter's metricsQuery filled in as the adapter fills
it; the dashboard's panels are filled in as Grafana fills them.

On this 2-core machine a load saturates a chosen step when the other steps are cheap for it:
48-megapixel photographs make the preprocess step the bottleneck (decoding one costs a core about a
second, NextViT-S's network 80 ms per image), single small images to ViT-B make its network the
bottleneck (220 ms per image, a millisecond of preprocessing). Clients send again at once, refused
or not, so the steps stay saturated.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

import catalog
from client import failures
from model_repository import configs, monitoring
from model_repository.server import TritonServer
from tests.support import images
from tests.support.prometheus import (
    NAMESPACE,
    POD,
    SCRAPE_INTERVAL_S,
    Prometheus,
    adapter_query,
    grafana_query,
    grafana_rate_interval,
    scraping,
)

PROJECT = Path(__file__).resolve().parents[2]
ADAPTER_VALUES = PROJECT / "helm" / "monitoring" / "prometheus-adapter-values.yaml"
DASHBOARD = PROJECT / "helm" / "paddleclas-triton" / "files" / "grafana-dashboard.json"
CHART_VALUES = PROJECT / "helm" / "paddleclas-triton" / "values.yaml"
GPU_ONLY = ("nv_gpu_",)  # NVML metrics: tritonserver reports them only where it sees a GPU
PREPROCESS_BOUND, NETWORK_BOUND = "NextViT_small_224", "ViT_base_patch16_224"
LOAD_SECONDS = 10


def adapter_rule() -> dict:
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))
    metric = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))["autoscaling"]["metricName"]
    return next(rule for rule in values["rules"]["custom"] if rule["name"]["as"] == metric)


def hpa_target() -> float:
    """The chart's default autoscaling.targetAverageValue as a number (a Kubernetes quantity: "500m" is 0.5)."""
    quantity = str(yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))["autoscaling"]["targetAverageValue"])
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def signal(prometheus: Prometheus) -> float:
    """The HPA's metric for the test pod: the shipped metricsQuery as prometheus-adapter sends it."""
    values = prometheus.values(adapter_query(adapter_rule()["metricsQuery"], NAMESPACE, [POD]), "pod")
    assert set(values) == {POD}, values
    return values[POD]


def pod_matchers() -> str:
    return f'namespace="{NAMESPACE}",pod="{POD}"'


def busiest_steps(prometheus: Prometheus) -> dict[str, float]:
    """Each step's term of the signal (monitoring.step_ratios, the adapter's window), by model."""
    return prometheus.values(monitoring.step_ratios(pod_matchers(), "pod", monitoring.ADAPTER_WINDOW), "model")


def most_queued(prometheus: Prometheus, model: str) -> float:
    expr = f'max_over_time({monitoring.PENDING}{{{pod_matchers()},model="{model}"}}[1m])'
    return prometheus.values(expr, "model")[model]


def queue_size(server: TritonServer, model: str) -> int:
    config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config(model).config
    return config.dynamic_batching.default_queue_policy.max_queue_size


def hammer(server: TritonServer, model: str, payload: bytes, clients: int, seconds: float) -> Counter:
    """`clients` closed loops sending `payload` (one image per request) without pause for `seconds`: outcomes."""
    stop, outcomes, lock = time.monotonic() + seconds, Counter(), threading.Lock()

    def loop() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        while time.monotonic() < stop:
            tensor = grpcclient.InferInput(configs.IMAGE_INPUT, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
            try:
                client.infer(model, [tensor], client_timeout=15)
                outcome = "ok"
            except InferenceServerException as error:
                outcome = next((words for words in failures.QUEUE_REJECTIONS if words in error.message()), "other")
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def settle() -> None:
    """Two more scrapes, so the last answers are in the samples the queries read."""
    time.sleep(2.5 * SCRAPE_INTERVAL_S)


@cache
def camera_photo() -> bytes:
    """A real photograph at 8000x6000 (48 megapixels, under the 120-megapixel limit), JPEG."""
    return images.jpeg(images.sized(8000, 6000))


@pytest.fixture
def prometheus(triton_server: TritonServer, tmp_path: Path):
    with scraping(triton_server, tmp_path / "prometheus") as running:
        running.wait_for_samples(2)  # rate() needs two
        yield running


def test_the_signal_is_zero_idle_and_rises_when_preprocess_saturates(
    triton_server: TritonServer, prometheus: Prometheus
) -> None:
    camera_photo()  # encoded before the clock of the load starts
    entry = catalog.get(PREPROCESS_BOUND)
    preprocess, network = configs.preprocess_name(entry), configs.network_name(entry)
    idle = signal(prometheus)
    assert idle < 0.01  # 0 unless the last test's abandoned work was still finishing
    outcomes = hammer(triton_server, entry.triton_name, camera_photo(), clients=8, seconds=LOAD_SECONDS)
    settle()
    value, steps = signal(prometheus), busiest_steps(prometheus)
    print(f"preprocess saturated: signal {value:.3f}, outcomes {dict(outcomes)}, steps {steps}")
    # The preprocess step is the one queueing: its queue was full and the network's never was.
    assert most_queued(prometheus, preprocess) == queue_size(triton_server, preprocess)
    assert most_queued(prometheus, network) < queue_size(triton_server, network)
    # Refused: a full queue at the door, or a queued request past the step's timeout (configs.queue_policy).
    assert sum(outcomes[words] for words in failures.QUEUE_REJECTIONS) > outcomes["ok"] > 0, outcomes
    # A refusing step's admitted requests wait little (one per instance may wait): its own ratio
    # stays low, and the refused share is what carries the signal past the HPA's target.
    assert value > max(hpa_target(), idle)


def test_the_signal_rises_when_the_network_saturates(triton_server: TritonServer, prometheus: Prometheus) -> None:
    entry = catalog.get(NETWORK_BOUND)
    network = configs.network_name(entry)
    small = images.jpeg(images.sized(64, 48))
    outcomes = hammer(triton_server, entry.triton_name, small, clients=8, seconds=LOAD_SECONDS)
    settle()
    value, steps = signal(prometheus), busiest_steps(prometheus)
    print(f"network saturated: signal {value:.3f}, outcomes {dict(outcomes)}, steps {steps}")
    assert most_queued(prometheus, network) == queue_size(triton_server, network)
    assert max(steps, key=steps.get) == network, steps
    assert outcomes["ok"] > 0, outcomes
    assert value > hpa_target()
    # The HPA of a deployment with several pods asks for all of them at once (pod=~"a|b"): same answer.
    several = adapter_query(adapter_rule()["metricsQuery"], NAMESPACE, [POD, "paddleclas-triton-1"])
    assert prometheus.values(several, "pod").keys() == {POD}


def failures_counted(server: TritonServer, model: str) -> float:
    """`model`'s nv_inference_request_failure, all reasons, read from the server's metrics page."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    prefix = f'{monitoring.FAILURE}{{model="{model}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def test_broken_images_alone_do_not_scale_out(triton_server: TritonServer, prometheus: Prometheus) -> None:
    """Failures a client causes (here truncated JPEGs from one client) fail without queueing: no refused share."""
    entry = catalog.get(PREPROCESS_BOUND)
    whole = images.jpeg(images.sized(64, 48))
    before = failures_counted(triton_server, entry.triton_name)
    outcomes = hammer(triton_server, entry.triton_name, whole[: len(whole) // 2], clients=1, seconds=4)
    settle()
    value = signal(prometheus)
    print(f"broken images: signal {value:.3f}, outcomes {dict(outcomes)}")
    assert outcomes["other"] > 100 and outcomes["ok"] == 0, outcomes
    # Triton 2.51 counts each failed ensemble request twice (monitoring.py's refused share reads 2r/(1+r)).
    assert failures_counted(triton_server, entry.triton_name) - before == 2 * outcomes["other"]
    assert value < hpa_target()


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_every_dashboard_panel_returns_data(triton_server: TritonServer, prometheus: Prometheus) -> None:
    """Each panel's query as Grafana sends it (one pod selected, then All) returns series; the GPU panels,
    which a CPU-only server cannot feed, are parsed and evaluated by Prometheus and come back empty here:
    unverified on a GPU (their metric names are Triton's NVML ones, tests/chart/test_chart_server.py)."""
    for name in (PREPROCESS_BOUND, NETWORK_BOUND):
        hammer(triton_server, catalog.get(name).triton_name, images.jpeg(images.sized(500, 375)), 2, 2)
    settle()
    board = dashboard()
    for variable in board["templating"]["list"]:  # label_values(metric{...}, label): Grafana's series lookup
        query = variable.get("query")
        if isinstance(query, dict):
            metric, label = query["query"].removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
            found = prometheus.api("series", **{"match[]": grafana_query(metric, {"namespace": NAMESPACE})})
            assert {series[label] for series in found} == {NAMESPACE if label == "namespace" else POD}, variable
    rate_interval = grafana_rate_interval(interval_s=2)  # the last 15 minutes over a ~450-point-wide panel
    for selected in (POD, ".*"):  # one pod, then the variable's All value
        variables = {"namespace": NAMESPACE, "pod": selected, "__rate_interval": rate_interval}
        for panel in board["panels"]:
            for target in panel["targets"]:
                series = prometheus.query(grafana_query(target["expr"], variables))
                if any(prefix in target["expr"] for prefix in GPU_ONLY):
                    assert series == [], f"{panel['title']}: GPU data on a CPU-only server?"
                else:
                    assert series, f"{panel['title']} returned nothing: {target['expr']}"
