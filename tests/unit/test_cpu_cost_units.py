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


def test_each_tier_is_compared_with_the_exact_tier_at_the_same_size_and_request_size() -> None:
    from perf import capacity

    def row(tier: str, jpeg: str, images: int, ms: float) -> dict:
        split = {"tritonserver": 1.0, "steps": 3.0}
        where = {"model": "NextViT_small_224", "tier": tier, "jpeg": jpeg, "images_per_request": images}
        return where | {"net_ms": ms, "cpu_s": split}

    refused = {"model": "NextViT_small_224", "tier": "exact", "jpeg": "4000x3000", "images_per_request": 8}
    cpu = {
        "rows": [
            row("exact", "500x375", 1, 6.0),
            row("exact", "500x375", 8, 4.0),
            row("near-exact", "500x375", 1, 4.0),
            row("near-exact", "500x375", 8, 2.0),
            row("near-exact", "4000x3000", 8, 50.0),  # no exact row to compare with
            refused | {"error": "refused"},
        ]
    }
    rows = {(r[1], r[2]): r for r in capacity.cpu_rows(cpu)}
    assert rows["near-exact", "500x375"][3:6] == ["**4.00**", "**2.00**", "1.50x / 2.00x"]
    assert rows["exact", "500x375"][5] == "1.00x / 1.00x"
    assert rows["near-exact", "4000x3000"][3:6] == ["", "**50.00**", "- / -"]
    assert rows["exact", "4000x3000"][4] == "failed: refused"
    assert rows["near-exact", "500x375"][6] == "25%"  # tritonserver's share at 8 per request


def test_requests_carry_the_photographs_in_turn(sample_photos) -> None:
    import catalog

    jpegs = [path.read_bytes() for path in sample_photos[:3]]
    model, made = cpu_cost.requests(catalog.get("NextViT_small_224"), jpegs, crops=False, images=8)
    assert model == catalog.get("NextViT_small_224").triton_name and len(made) == len(jpegs)
    (tensor,) = made[1]
    assert tensor.shape() == [8, 1] and tensor.datatype() == "BYTES"
