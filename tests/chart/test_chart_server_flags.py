"""Every flag the chart passes to tritonserver is one the production release (2.73.0) parses.

The local server is 2.51.0, so a flag only 2.73 knows (or one it dropped) would show only in the
cluster, as a server that exits at start. The list of 2.73.0's flags is read from its command-line
parser's source (data/tritonserver-2.73.0-flags.txt names the file and commit).
"""

from __future__ import annotations

import pytest
from chart_helpers import release_flags, render, render_case, server_container


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
    assert server["livenessProbe"]["exec"]["command"][2:5] == ["python3", "-m", "model_repository.health"]
