"""A real Prometheus (Debian's `prometheus` package, which `make setup` unpacks) scraping a local tritonserver.

`scraping(server)` starts it on a free loopback port with a fresh storage directory and a generated
scrape config: one target, the server's metrics port, scraped every second, with the `namespace`
and `pod` target labels the chart's ServiceMonitor/PodMonitor give every series in a cluster; it is
always stopped. `Prometheus.query` evaluates PromQL through the HTTP API (/api/v1/query).

The two ways the project's expressions reach Prometheus are reproduced here, from their sources:
`adapter_query` fills prometheus-adapter's metricsQuery template as its Build does
(kubernetes-sigs/prometheus-adapter, pkg/naming/metrics_query.go and pkg/client/helpers.go), and
`grafana_query` substitutes the dashboard's variables as Grafana does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from model_repository.server import TritonServer, free_port

# Where `make setup` unpacks Debian's package (apt-get download + dpkg -x: the binary, no service).
UNPACKED = Path(sys.prefix) / "prometheus" / "usr" / "bin" / "prometheus"
SCRAPE_INTERVAL_S = 1
NAMESPACE, POD = "vision", "paddleclas-triton-0"  # the target labels a cluster's scrape would add


def binary() -> Path:
    """The prometheus binary `make setup` unpacked, else one on PATH."""
    found = UNPACKED if UNPACKED.is_file() else shutil.which("prometheus")
    if not found:
        raise FileNotFoundError(f"no prometheus binary at {UNPACKED} or on PATH: run `make setup`")
    return Path(found)


def scrape_config(metrics_port: int) -> str:
    """One job scraping tritonserver's metrics port every second, labelled as the chart's monitors label it."""
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "scrape_configs": [
            {
                "job_name": "tritonserver",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"namespace": NAMESPACE, "pod": POD}}
                ],
            }
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> dict:
        """One call of the HTTP API; a query Prometheus refuses (bad PromQL) raises with its error."""
        address = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"Prometheus refused {params}: {error.read().decode()}") from error
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` evaluates to now: one dict per series, {"metric": labels, "value": [t, "v"]}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def values(self, expr: str, label: str) -> dict[str, float]:
        """`expr`'s series by the value of `label`."""
        return {series["metric"].get(label, ""): float(series["value"][1]) for series in self.query(expr)}

    def wait_for_samples(self, count: int, timeout_s: float = 30.0) -> None:
        """Until the target is up and has been scraped `count` times (rate() needs two samples in its window)."""
        deadline = time.monotonic() + timeout_s
        expr = f"count_over_time(up[5m]) >= {count} and up == 1"
        while time.monotonic() < deadline:
            try:
                if self.query(expr):
                    return
            except (OSError, AssertionError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"Prometheus has not scraped the server {count} times in {timeout_s} s")


@contextmanager
def scraping(server: TritonServer, work_dir: Path) -> Iterator[Prometheus]:
    """A fresh Prometheus scraping `server` (its own storage, so rates start from this moment); always stopped."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "prometheus.yml"
    config.write_text(scrape_config(server.metrics_port), encoding="utf-8")
    port = free_port()
    log = work_dir / "prometheus.log"
    command = [
        str(binary()),
        f"--config.file={config}",
        f"--storage.tsdb.path={work_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus not ready in 30 s:\n" + log.read_text(errors="replace")
            time.sleep(0.2)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def adapter_query(template: str, namespace: str, pods: list[str], group_by: str = "pod") -> str:
    """A metricsQuery as prometheus-adapter builds it for a Pods metric of `pods` in `namespace`.

    metrics_query.go (Build): LabelMatchers is the namespace matcher, then the resource's, joined by
    ","; the resource matcher is `=` for one name and `=~` of the names joined by "|" for several,
    each value Go-quoted (%q, helpers.go); GroupBy is the resource's label. The HPA asks for every
    pod of its target, so a deployment of one pod gets `pod="..."`.
    """
    resource = f"pod={json.dumps(pods[0])}" if len(pods) == 1 else f"pod=~{json.dumps('|'.join(pods))}"
    matchers = f"namespace={json.dumps(namespace)},{resource}"
    return template.replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", group_by)


def grafana_rate_interval(interval_s: float, scrape_interval_s: float = SCRAPE_INTERVAL_S) -> str:
    """$__rate_interval: max($__interval + scrape interval, 4 x scrape interval) (Grafana's Prometheus data
    source, as grafana/grafana pull request 77234 restated it), the data source's scrape interval set to ours."""
    return f"{max(interval_s + scrape_interval_s, 4 * scrape_interval_s):g}s"


def grafana_query(expr: str, variables: dict[str, str]) -> str:
    """A panel's expr with `$name` and `${name}` replaced, longest names first (as Grafana interpolates)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = re.sub(rf"\$(?:{{{re.escape(name)}}}|{re.escape(name)}\b)", lambda _m, n=name: variables[n], expr)
    assert "$" not in expr, f"a variable left in {expr}"
    return expr
