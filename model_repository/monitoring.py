"""The autoscaling signal's PromQL, rendered once for every place that ships it.

The HPA's metric (prometheus-adapter's rule in helm/monitoring/prometheus-adapter-values.yaml) and
the dashboard panel that shows it (helm/paddleclas-triton/files/grafana-dashboard.json) are the same
expression with different label matchers, grouping and window; tests/chart/test_chart_monitoring.py
checks that both files hold exactly what `scaling_signal` renders, and tests/server/test_prometheus.py
evaluates it with a real Prometheus against the real server under load.

The signal, per pod: the busiest step's queue/compute ratio plus the share of requests the pod
failed while a step's queue held requests (which models are steps: configs.step_name_pattern).

Why a maximum of per-step ratios and not one ratio of sums: the steps' costs differ by orders of
magnitude (a preprocess decode of a small photo costs milliseconds, a CPU network hundreds of
milliseconds per image), so in a ratio of sums the expensive step's compute hides a cheap step's
queue. Whichever step is the bottleneck, its own ratio rises, and the maximum shows it. A step's
compute is floored at one busy instance, so a nearly idle step's few milliseconds of wait cannot
dominate. The ensembles are left out: Triton reports their steps' time again under their names.

Why refusals enter, and how: a saturated step's queue is bounded (configs.queue_policy: one request
per preprocess instance) and refuses the excess at once, so the requests it admits barely wait
(measured: a preprocess step refusing 99 % of requests read a ratio below 0.04). The overload is in
the refusals. Triton (2.51, core r24.10, and core's main alike) refuses a full queue at enqueue
(src/scheduler_utils.cc, "Exceeds maximum queue size"), before the step counts anything, so the
refusal appears only as a failure of the ensemble, with reason OTHER: the reason a broken image
also gets (measured on 2.51: each failed ensemble request is counted twice, so a refused share r
reads 2r / (1 + r)). Counting failures only while some step's queue held a request for at least half
the window (QUEUE_HELD) keeps a client sending broken files from scaling a pod out: they fail without
waiting.
Measured figures: helm/README.md, "Autoscaling and monitoring".
"""

from __future__ import annotations

from model_repository import configs

QUEUE = "nv_inference_queue_duration_us"  # cumulative microseconds requests waited in a model's queue
COMPUTE = "nv_inference_compute_infer_duration_us"  # cumulative microseconds of execution, per request
SUCCESS, FAILURE = "nv_inference_request_success", "nv_inference_request_failure"
PENDING = "nv_inference_pending_request_count"  # gauge: requests in a model's queue now
# A step's compute is counted as at least one busy instance (1 s per s): a step using less than that is
# not the bottleneck, and a few milliseconds of wait at a nearly idle step must not read as a ratio of 6
# (measured: 2 postprocess requests in a minute read 6.5 with a floor of 1 us/s).
ONE_BUSY_INSTANCE_US_PER_S = 1_000_000
# Failures count as refusals only while some step's queue held a request at least half of the window
# on average: a saturated step's queue stays full (it refuses because it is), while requests of a client
# whose files fail pass through the queue in an instant. Any request seen in the queue was not enough:
# one client sending broken JPEGs back to back was caught queued at some scrape and read 1.0.
QUEUE_HELD = 0.5
NO_TRAFFIC = "1e-9"  # the floor of a request rate, so an idle pod's refused share is 0, not NaN

ADAPTER_MATCHERS, ADAPTER_GROUP_BY, ADAPTER_WINDOW = "<<.LabelMatchers>>", "<<.GroupBy>>", "1m"
DASHBOARD_MATCHERS, DASHBOARD_GROUP_BY, DASHBOARD_WINDOW = (
    'namespace="$namespace", pod=~"$pod"',
    "pod",
    "$__rate_interval",
)


def selector(metric: str, matchers: str, steps: bool) -> str:
    """`metric` of the steps (`steps=False`: of the ensembles), narrowed by the adapter's or dashboard's `matchers`."""
    operator = "=~" if steps else "!~"
    return f'{metric}{{{matchers}, model{operator}"{configs.step_name_pattern()}"}}'


def _rate(metric: str, matchers: str, by: str, window: str, steps: bool = True) -> str:
    return f"sum by ({by}) (rate({selector(metric, matchers, steps)}[{window}]))"


def step_ratios(matchers: str, group_by: str, window: str) -> str:
    """Each step's queue/compute ratio, one series per (`group_by`, model): what the signal takes the maximum of."""
    by = f"{group_by}, model"
    queue, compute = _rate(QUEUE, matchers, by, window), _rate(COMPUTE, matchers, by, window)
    return f"{queue} / clamp_min({compute}, {ONE_BUSY_INSTANCE_US_PER_S})"


def scaling_signal(matchers: str, group_by: str, window: str) -> str:
    """Per `group_by` value (the pod): the busiest step's queue/compute ratio plus the refused share of requests.

    busiest step   max over steps of rate(queue) / max(rate(compute), one busy instance)
    refused share  ensemble failures / (failures + successes), counted only while a step's queue
                   held a request at least half the window on average (QUEUE_HELD: a full queue is
                   what refuses; broken images fail without waiting and add nothing)
    """
    busiest = f"max by ({group_by}) ({step_ratios(matchers, group_by, window)})"
    failed = _rate(FAILURE, matchers, group_by, window, steps=False)
    answered = f"{failed} + {_rate(SUCCESS, matchers, group_by, window, steps=False)}"
    held = f"avg_over_time({selector(PENDING, matchers, True)}[{window}])"
    queued = f"max by ({group_by}) ({held}) >= bool {QUEUE_HELD}"
    return f"{busiest} + {failed} / clamp_min({answered}, {NO_TRAFFIC}) * ({queued})"


def adapter_metrics_query() -> str:
    """prometheus-adapter's metricsQuery: its template fields, one minute of samples."""
    return scaling_signal(ADAPTER_MATCHERS, ADAPTER_GROUP_BY, ADAPTER_WINDOW)


def dashboard_signal() -> str:
    """The dashboard panel's expression: the dashboard's variables, Grafana's rate interval."""
    return scaling_signal(DASHBOARD_MATCHERS, DASHBOARD_GROUP_BY, DASHBOARD_WINDOW)
