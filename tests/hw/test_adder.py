"""The RTL adder (hw/adder.py) against the golden add_bits, in the Amaranth simulator."""
import os

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from canna.hw.adder import FAdd, FAddUnit
from canna.sim import golden
from canna.sim.testbench import stream_put, with_sync_domain
from canna.sim.vectors import pattern_cross, weighted_random_add
from helpers import seed

VECTORS = int(os.environ.get("CANNA_ADDER_VECTORS", "6000"))
SEED = seed(20261125)


def vectors():
    rng = np.random.default_rng(SEED)
    pa, pb = pattern_cross()
    pick = rng.choice(pa.size, VECTORS // 2, replace=False)
    ra, rb = weighted_random_add(rng, VECTORS - VECTORS // 2)
    return np.concatenate([pa[pick], ra]), np.concatenate([pb[pick], rb])


def test_fadd_matches_golden():
    a, b = vectors()
    dut = FAdd()
    got_bits, got_flags = [], []

    async def testbench(ctx):
        for x, y in zip(a.tolist(), b.tolist()):
            ctx.set(dut.a.as_value(), x)
            ctx.set(dut.b.as_value(), y)
            got_bits.append(ctx.get(dut.bits))
            got_flags.append(ctx.get(dut.flags.as_value()))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    ref = golden.add_bits(a, b)
    bits = np.array(got_bits, dtype=np.uint32)
    flags = np.array(got_flags, dtype=np.uint8)
    bad = (bits != ref.bits) | (flags != ref.flags)
    print(f"FAdd: {a.size} vectors (pattern cross sample + weighted random, seed {SEED}) "
          f"against golden add_bits, {int(bad.sum())} mismatches")
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        pytest.fail("\n".join(f"{a[j]:08X} + {b[j]:08X}: golden {ref.bits[j]:08X}/{ref.flags[j]:02X}, "
                              f"rtl {bits[j]:08X}/{flags[j]:02X}" for j in i))


@pytest.mark.parametrize("stages", [0, 1])
def test_fadd_unit_stream_backpressure(stages):
    """Random idle and back-pressure: every result arrives once, in order, correct."""
    rng = np.random.default_rng(1)
    a, b = weighted_random_add(rng, 300)
    dut = FAddUnit(stages=stages)
    layout = dut.i.payload.shape()
    results = []

    async def producer(ctx):
        for x, y in zip(a.tolist(), b.tolist()):
            while rng.random() < 0.3:   # an idle cycle (valid low)
                await ctx.tick()
            await stream_put(ctx, dut.i, data.Const(layout, x | (y << 32)))

    async def consumer(ctx):
        while len(results) < a.size:
            ready = int(rng.random() < 0.7)
            ctx.set(dut.o.ready, ready)
            await ctx.tick()
        ctx.set(dut.o.ready, 0)

    async def monitor(ctx):
        async for clk_edge, rst, valid, ready, bits in ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload.bits):
            if valid and ready:
                results.append(bits)
            if len(results) == a.size:
                return

    sim = Simulator(with_sync_domain(dut))      # a sync domain even for stages=0
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(monitor)
    sim.run_until(1e-6 * 5000)
    ref = golden.add_bits(a, b).bits
    print(f"FAddUnit(stages={stages}): {len(results)} results under random idle/back-pressure")
    assert np.array_equal(np.array(results, dtype=np.uint32), ref)


def test_bad_stages():
    with pytest.raises(ValueError, match="stages must be 0 or 1"):
        FAddUnit(stages=2)
