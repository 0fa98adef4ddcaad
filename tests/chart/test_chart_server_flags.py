"""The chart's tritonserver arguments: the launcher's definition, and every flag one 2.73.0 parses.

model_repository/flags.py server_arguments defines the command line once; the chart writes it with
Helm templating, so every case is rendered and compared with that function for the same values.
The local server is 2.51.0, so a flag only 2.73 knows (or one it dropped) would show only in the
cluster, as a server that exits at start. The list of 2.73.0's flags is read from its command-line
parser's source (data/tritonserver-2.73.0-flags.txt names the file and commit).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from chart_helpers import (
    CHART_DIR,
    RELEASE,
    case_values,
    pod_spec,
    release_flags,
    render,
    render_case,
    server_container,
)

from model_repository.flags import ServerSettings, Tracing, server_arguments, termination_grace_seconds
from model_repository.gateway import UPSTREAM_GRPC_PORT, UPSTREAM_HTTP_PORT
from preprocess.decoding import DEFAULT_MAX_REQUEST_BYTES

MIB = 1 << 20


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's values: `overrides` merged into `defaults` key by key (lists and scalars replaced)."""
    out = copy.deepcopy(defaults)
    for key, value in overrides.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else copy.deepcopy(value)
    return out


def chart_values(overrides: dict[str, Any]) -> dict[str, Any]:
    return merged(yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8")), overrides)


def chart_tracing(values: dict[str, Any]) -> Tracing | None:
    """The tracing the values ask for; resource attributes are the chart's own defaults under the given ones."""
    tracing = values["tracing"]
    if not tracing["mode"]:
        return None
    if tracing["mode"] == "triton":  # the pod's only writable place is /tmp
        return Tracing("triton", tracing["rate"], tracing["count"], "/tmp/trace.json", tracing["logFrequency"])
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    defaults = {
        "service.name": values["fullnameOverride"] or f"{RELEASE}-{chart['name']}",
        "service.namespace": "vision",
        "service.version": str(values["image"]["tag"] or chart["appVersion"]),
        "helm.release": RELEASE,
        "paddleclas.models": ",".join(name.lower() for name in values["models"]) or "all",
    }
    resource = defaults | tracing["resource"]
    return Tracing(
        tracing["mode"],
        tracing["rate"],
        tracing["count"],
        url=tracing["otlpUrl"],
        resource=tuple(sorted(resource.items())),
    )


def chart_settings(values: dict[str, Any]) -> ServerSettings:
    """The launcher's settings for what a chart install with `values` asks of tritonserver (Helm's defaults merged)."""
    server, repository, gpu = values["server"], values["modelRepository"], values["mode"] == "gpu"
    rendered = repository["source"] != "objectStorage"
    variant = repository.get("variant") or ("production" if gpu else "portable")
    location = "/repository/models" if rendered else f"{repository['objectStorage']['url'].rstrip('/')}/{variant}"
    gateway = values["gateway"]["enabled"]
    return ServerSettings(
        model_repository=location,
        inference_address="127.0.0.1" if gateway else None,
        http_port=UPSTREAM_HTTP_PORT if gateway else 8000,
        grpc_port=UPSTREAM_GRPC_PORT if gateway else 8001,
        admin_key="$(TRITON_ADMIN_KEY)",  # expanded by the kubelet from the key's Secret
        exit_timeout_secs=server["exitTimeoutSeconds"],
        http=server["httpEnabled"],
        restricted_groups=tuple(values["security"]["restrictedApis"]),
        http_max_input_size=DEFAULT_MAX_REQUEST_BYTES,
        allow_client_shm=server["allowClientShm"],
        gpu=gpu,
        log_verbose=server["logVerbose"],
        pinned_memory_pool_bytes=server["pinnedMemoryPoolMiB"] * MIB,
        tracing=chart_tracing(values),
        response_cache_bytes=values["responseCache"]["sizeMiB"] * MIB if values["responseCache"]["enabled"] else 0,
        extra=tuple(server["extraArgs"]),
    )


def test_the_chart_passes_the_launchers_arguments(ci_case: str) -> None:
    """Every argument, in order: the chart is model_repository/flags.py server_arguments in Helm templating."""
    rendered = server_container(render_case(ci_case))["args"]
    assert rendered == server_arguments(chart_settings(chart_values(case_values(ci_case))))


def test_the_comparison_sees_a_changed_value() -> None:
    values = {"server": {"exitTimeoutSeconds": 7, "httpEnabled": False, "extraArgs": ["--log-info=false"]}}
    rendered = server_container(render(values))["args"]
    assert rendered == server_arguments(chart_settings(chart_values(values)))
    assert rendered != server_arguments(chart_settings(chart_values({})))


def test_the_grace_period_is_the_launchers_arithmetic(ci_case: str) -> None:
    """terminationGracePeriodSeconds: preStop sleep + exit timeout + the spare, as flags.termination_grace_seconds."""
    objects = render_case(ci_case)
    server = chart_values(case_values(ci_case))["server"]
    expected = termination_grace_seconds(server["preStopSleepSeconds"], server["exitTimeoutSeconds"])
    assert pod_spec(objects)["terminationGracePeriodSeconds"] == expected
    sleep = server_container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == ["sleep", str(server["preStopSleepSeconds"])]


def unknown_flags(args: list[str]) -> list[str]:
    """The tritonserver arguments whose flag name 2.73.0 does not parse (every argument must be a --flag)."""
    assert args[0] == "tritonserver", args[:1]
    known = release_flags()
    return [arg for arg in args[1:] if not arg.startswith("--") or arg[2:].partition("=")[0] not in known]


def test_the_list_is_the_parsers() -> None:
    flags = release_flags()
    assert len(flags) == 91
    # Flags 2.51 lacks, which the list must therefore have come from a newer parser to hold.
    assert {
        "allow-client-shm",
        "http-max-input-size",
        "grpc-infer-thread-count",
        "grpc-max-response-pool-size",
    } <= flags


def test_every_rendered_flag_is_a_flag_of_the_production_release(ci_case: str) -> None:
    assert unknown_flags(server_container(render_case(ci_case))["args"]) == []


def test_the_check_catches_a_flag_the_release_does_not_have() -> None:
    args = server_container(render({"server": {"extraArgs": ["--strict-readiness=false", "--no-such-flag=1"]}}))["args"]
    assert unknown_flags(args) == ["--no-such-flag=1"]


@pytest.mark.parametrize(("value", "rendered"), [(None, "false"), (True, "true")])
def test_client_shared_memory_is_off_unless_asked_for(value: bool | None, rendered: str) -> None:
    """26.05 and later refuse client shared memory by default; the chart says so explicitly, one switch."""
    values = {} if value is None else {"server": {"allowClientShm": value}}
    args = server_container(render(values))["args"]
    assert [a for a in args if a.startswith("--allow-client-shm")] == [f"--allow-client-shm={rendered}"]
    assert any(a.startswith("--grpc-restricted-protocol=shared-memory,") for a in args)  # still behind the key


def test_a_dead_python_step_is_caught_on_either_release() -> None:
    """2.73 fails strict readiness on a dead stub (core src/server.cc IsReady, python_backend
    TRITONBACKEND_ModelInstanceReady) but restarts nothing; 2.51 reports nothing. So readiness asks
    Triton's strict /v2/health/ready and liveness counts the stubs (model_repository/health.py)."""
    server = server_container(render_case("01-default-gpu-values.yaml"))
    assert "--strict-readiness=true" in server["args"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["exec"]["command"][2:6] == ["python3", "-m", "model_repository", "health"]
