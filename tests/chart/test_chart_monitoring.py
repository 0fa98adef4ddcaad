"""The shipped autoscaling query and dashboard panel are exactly what model_repository/monitoring.py renders.

One source: the expression is written once, from configs' step names; these files carry copies a
cluster reads (prometheus-adapter's values, the Grafana dashboard), held here to the rendering.
Their behaviour under load is tests/server/test_prometheus.py's.
"""

from __future__ import annotations

import json

import yaml
from chart_helpers import CHART_DIR, HELM_DIR

from model_repository import configs, monitoring

ADAPTER_VALUES = HELM_DIR / "monitoring" / "prometheus-adapter-values.yaml"
DASHBOARD = CHART_DIR / "files" / "grafana-dashboard.json"


def adapter_rule() -> dict:
    metric = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))["autoscaling"]["metricName"]
    rules = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]["custom"]
    (rule,) = [rule for rule in rules if rule["name"]["as"] == metric]
    return rule


def test_the_adapter_rule_is_the_rendered_signal() -> None:
    assert adapter_rule()["metricsQuery"] == monitoring.adapter_metrics_query()


def test_the_dashboard_shows_the_same_signal() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs.count(monitoring.dashboard_signal()) == 1


def test_every_step_selector_uses_configs_pattern() -> None:
    """No shipped expression filters models by a hand-written pattern (the old one matched only networks)."""
    pattern = configs.step_name_pattern()
    texts = [ADAPTER_VALUES.read_text(encoding="utf-8"), DASHBOARD.read_text(encoding="utf-8")]
    for text in texts:
        for found in (line for line in text.splitlines() if "model=~" in line or "model!~" in line):
            assert f'~\\"{pattern}\\"' in found or f'~"{pattern}"' in found, found
