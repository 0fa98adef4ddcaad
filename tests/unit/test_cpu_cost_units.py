"""CPU time per served image without a server: tiers from the command line, the rate rule, /proc readings."""

from __future__ import annotations

import os
import time

import pytest

from perf import cpu_cost


def test_a_tier_is_a_name_or_triton_server_options_so_a_new_tier_needs_no_code() -> None:
    assert cpu_cost.parse_tier("fast-decode").server == {"fast_decode": True}
    assert cpu_cost.parse_tier("client-crops").crops
    custom = cpu_cost.parse_tier("margin=fast_decode=true,fast_decode_margin=1.25")
    assert (custom.name, custom.server, custom.crops) == (
        "margin",
        {"fast_decode": True, "fast_decode_margin": 1.25},
        False,
    )
    assert cpu_cost.parse_tier("m=malloc=jemalloc").server == {"malloc": "jemalloc"}  # not JSON: kept as text
    with pytest.raises(ValueError, match="not a TritonServer option"):
        cpu_cost.parse_tier("typo=fast_decod=true")
    with pytest.raises(ValueError, match="unknown tier"):
        cpu_cost.parse_tier("fastest")


def test_the_measured_rate_keeps_both_cores_below_saturation() -> None:
    # 4 ms per image on the server's core: half of it is 125 images/s; the network's core at 100 ms allows 6
    assert cpu_cost.measured_rate({"served_ms": 4.0, "network_ms": 100.0}) == 6.0
    assert cpu_cost.measured_rate({"served_ms": 50.0, "network_ms": 1.0}) == 10.0
    assert cpu_cost.measured_rate({"served_ms": 2000.0, "network_ms": 0.0}) == 1.0  # never below one per second


def test_cpu_seconds_read_every_thread_in_nanoseconds_and_ticks_agree() -> None:
    pid = os.getpid()
    before, ticks_before = cpu_cost.cpu_seconds(pid), cpu_cost.tick_seconds(pid)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    spent, ticks = cpu_cost.cpu_seconds(pid) - before, cpu_cost.tick_seconds(pid) - ticks_before
    assert 0.29 <= spent < 1.0
    assert abs(ticks - spent) <= 0.05  # utime + stime round to clock ticks


def test_cores_split_puts_the_server_and_the_load_apart_where_there_are_two() -> None:
    cores, usable = cpu_cost.Cores.split(), sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        assert (cores.server, cores.load) == (None, None)
    else:
        assert cores.server != cores.load and {cores.server, cores.load} <= set(usable)
        with cpu_cost.pinned_start(cores.server):
            assert os.sched_getaffinity(0) == {cores.server}
        assert sorted(os.sched_getaffinity(0)) == usable
