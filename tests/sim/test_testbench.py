"""The Amaranth testbench stream helpers (canna.sim.testbench stream_put / stream_get) through the
RTL adder's stream unit (hw/adder.py FAddUnit): every payload moves exactly once, in order; with
both ends free-running one transfer per cycle; a waiting stream_put holds valid and its payload
until accepted, a waiting stream_get holds ready until valid."""
import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from canna.hw.adder import FAddUnit
from canna.sim import golden
from canna.sim.testbench import stream_get, stream_put, with_sync_domain
from canna.sim.vectors import weighted_random_add


def run_streams(stages, a, b, *, put_gaps=None, get_gaps=None):
    """Put every (a, b) into an FAddUnit and get every result with stream_put / stream_get,
    waiting ``put_gaps[i]`` / ``get_gaps[i]`` cycles before the i-th call. Return the results
    and, from an independent monitor of both ports, the cycle of every transfer and every cycle
    on which an offered input was refused."""
    dut = FAddUnit(stages=stages)
    layout = dut.i.payload.shape()
    n = len(a)
    got, seen = [], {"in": [], "out": [], "held": []}

    async def producer(ctx):
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            if put_gaps is not None and put_gaps[i]:
                await ctx.tick().repeat(put_gaps[i])
            await stream_put(ctx, dut.i, data.Const(layout, x | (y << 32)))

    async def consumer(ctx):
        for i in range(n):
            if get_gaps is not None and get_gaps[i]:
                await ctx.tick().repeat(get_gaps[i])
            payload = await stream_get(ctx, dut.o)
            got.append((payload.bits, int(payload.flags.as_bits())))

    async def monitor(ctx):
        cycle, offered = 0, None
        async for _, _, iv, ir, ipay, ov, orr in ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.i.payload.as_value(), dut.o.valid, dut.o.ready):
            if offered is not None:   # refused last cycle: still offered, the same payload
                assert iv and ipay == offered, f"cycle {cycle}: input withdrawn or changed"
            if iv and ir:
                seen["in"].append(cycle)
            if ov and orr:
                seen["out"].append(cycle)
            offered = ipay if iv and not ir else None
            if offered is not None:
                seen["held"].append(cycle)
            cycle += 1

    sim = Simulator(with_sync_domain(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(monitor)
    sim.run_until(1e-6 * (20 * n + 100))
    return got, seen


@pytest.mark.parametrize("stages", [0, 1])
def test_free_running_one_transfer_per_cycle(stages):
    rng = np.random.default_rng(2)
    a, b = weighted_random_add(rng, 200)
    got, seen = run_streams(stages, a, b)
    ref = golden.add_bits(a, b)
    assert got == list(zip(ref.bits.tolist(), ref.flags.tolist()))
    # back to back: stream_put / stream_get lose no cycle between two transfers
    assert seen["in"] == list(range(a.size))
    assert seen["out"] == list(range(stages, stages + a.size))
    print(f"stream_put/stream_get, FAddUnit(stages={stages}): {a.size} payloads in and out, "
          f"one per cycle from cycle 0 / {stages}, results equal golden add_bits")


@pytest.mark.parametrize("stages", [0, 1])
def test_waiting_ends(stages):
    """Idle cycles before puts (stream_get must wait for valid) and before gets (stream_put must
    wait for ready, holding its payload): every payload once, in order."""
    rng = np.random.default_rng(3)
    a, b = weighted_random_add(rng, 150)
    put_gaps = rng.integers(0, 4, a.size) * (rng.random(a.size) < 0.4)
    get_gaps = rng.integers(0, 5, a.size) * (rng.random(a.size) < 0.5)
    got, seen = run_streams(stages, a, b, put_gaps=put_gaps, get_gaps=get_gaps)
    ref = golden.add_bits(a, b)
    assert got == list(zip(ref.bits.tolist(), ref.flags.tolist()))
    assert len(seen["in"]) == len(seen["out"]) == a.size          # no transfer lost or repeated
    assert len(seen["held"]) > 20                                  # stream_put really waited
    assert np.all(np.diff(seen["in"]) >= 1 + put_gaps[1:])         # the gaps were idle cycles
    print(f"stream_put/stream_get, FAddUnit(stages={stages}) with idle puts and gets: {a.size} "
          f"payloads once each and in order, {len(seen['held'])} cycles an offer was held")
