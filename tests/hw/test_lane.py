"""One multiply-accumulate lane (hw/lane.py) in the Amaranth simulator: sums bit-exact with the
golden sequential dot product, occupancy 1 cycle for hits/specials and ``exact_cycles`` for
exact products, counters, configuration writes and output back-pressure."""
import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from canna.spec.config import encode_config
from canna.hw.lane import Lane
from canna.sim import golden
from canna.spec.config import EXACT, CFPUConfig
from canna.sim.lanes import multiplier_bypassed
from helpers import nn_like, seed

SEED = seed(7)


def dot_golden(a, b, config):
    p = golden.mul_bits(a, b, config)
    acc = np.zeros(1, np.float32)
    for x in p.bits.view(np.float32):
        acc = golden.add(acc, np.array([x], np.float32))
    return int(acc.view(np.uint32)[0]), p.hit


def run_lane(dots, config, *, exact_cycles=3, stages=3, p_stall=0.0, seed=0):
    """Stream dot products (list of (a, b) uint32 arrays) through one lane; return results,
    accept cycles and counters."""
    dut = Lane(exact_cycles=exact_cycles, stages=stages)
    rng = np.random.default_rng(seed)
    ops = []
    for a, b in dots:
        for k in range(len(a)):
            ops.append(int(a[k]) | (int(b[k]) << 32) | (int(k == len(a) - 1) << 64))
    results, accepts, state = [], [], {}

    async def tb(ctx):
        ctx.set(dut.cfg_we, 1)
        ctx.set(dut.cfg_data.as_value(), encode_config(config))
        await ctx.tick()
        ctx.set(dut.cfg_we, 0)
        pos, cycle = 0, 0
        while len(results) < len(dots):
            assert cycle < 20 * len(ops) + 100, "lane stalled"
            ctx.set(dut.i.valid, pos < len(ops))
            if pos < len(ops):
                ctx.set(dut.i.payload.as_value(), ops[pos])
            ready = not (p_stall and rng.random() < p_stall)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                results.append(ctx.get(dut.o.payload))
            if pos < len(ops) and ctx.get(dut.i.ready):
                accepts.append(cycle)
                pos += 1
            await ctx.tick()
            cycle += 1
        state.update({name: ctx.get(getattr(dut, name)) for name in ("ops", "hits", "bypass", "busy", "mul")})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    if os.environ.get("CANNA_WAVES") == "1":
        with sim.write_vcd("lane.vcd"):
            sim.run()
    else:
        sim.run()
    return results, accepts, state


def nn_dots(rng, count, k):
    dots = []
    for _ in range(count):
        x, w = nn_like(rng, 1, k, 1)
        a, b = x.ravel(), w.ravel()
        a[rng.integers(k)] = rng.choice([np.inf, -0.0, 1e-40, np.nan]).astype(np.float32)
        dots.append((a.view(np.uint32), b.view(np.uint32)))
    return dots


@pytest.mark.parametrize("config", [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(2, "dual")],
                         ids=lambda c: c.describe())
@pytest.mark.parametrize("exact_cycles, stages", [(3, 3), (1, 1), (4, 0)])
def test_lane_dot_products(config, exact_cycles, stages):
    rng = np.random.default_rng(SEED)
    dots = nn_dots(rng, 6, 9)
    results, accepts, counters = run_lane(dots, config, exact_cycles=exact_cycles, stages=stages)
    want, fast, hits, byp = [], [], 0, 0
    for a, b in dots:
        bits, hit = dot_golden(a, b, config)
        want.append(bits)
        bp = multiplier_bypassed(a, b)
        fast.extend((hit | bp).tolist())
        hits += int(hit.sum())
        byp += int(bp.sum())
    assert results == want
    # issue spacing: an operation occupies the lane 1 cycle when fast, exact_cycles otherwise
    lat = [1 if f else exact_cycles for f in fast]
    assert np.diff(accepts).tolist() == lat[:-1]
    n = len(fast)
    assert counters == {"ops": n, "hits": hits, "bypass": byp, "busy": sum(lat),
                        "mul": n - hits - byp}
    print(f"lane k={exact_cycles} stages={stages} {config.describe()}: {len(dots)} dot products, "
          f"{n} products ({hits} hits, {byp} bypassed) bit-exact, issue spacing and counters equal")


def test_lane_backpressure():
    rng = np.random.default_rng(SEED + 1)
    dots = [(d[0][:2], d[1][:2]) for d in nn_dots(rng, 12, 4)]  # short dot products: results pile up
    cfg = CFPUConfig.approx(1)
    results, _, counters = run_lane(dots, cfg, p_stall=0.6, seed=3)
    assert results == [dot_golden(a, b, cfg)[0] for a, b in dots]
    assert counters["ops"] == 24
    print(f"lane with 60% output back-pressure: {len(dots)} dot products bit-exact")


@pytest.mark.filterwarnings("ignore::Warning")
def test_lane_rejects_bad_parameters():
    with pytest.raises(ValueError, match="exact_cycles"):
        Lane(exact_cycles=0)
    with pytest.raises(ValueError, match="counter_width"):
        Lane(counter_width=0)
