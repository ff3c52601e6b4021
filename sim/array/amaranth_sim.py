"""Lane-array backend ``"amaranth"``: the Amaranth simulator, one Python testbench step per
cycle (small matrices only); supports back-pressure (``p_stall``) and waveforms."""
from __future__ import annotations

import time

import numpy as np

from canna.spec.array import COUNTERS, pipeline_latency
from canna.spec.layouts import op_layout, pack, unpack_lanes

from ..testbench import run_simulator
from ..toggles import ToggleProbe
from .job import ArrayJob, RawRun, lane_ops

__all__ = ["run"]


def run(job: ArrayJob, dut=None) -> RawRun:
    """Simulate ``job`` on :class:`canna.hw.array.LaneArray` (``dut``: an array to use instead,
    for tests that break one on purpose)."""
    from amaranth.sim import Simulator

    from canna.hw.array import LaneArray
    t0 = time.perf_counter()
    lanes, exact_cycles, stages = job.lanes, job.geometry.exact_cycles, job.stages
    dut = dut or LaneArray(lanes=lanes, exact_cycles=exact_cycles, discipline=job.discipline,
                           stages=stages)
    op_a, op_b, nop = lane_ops(job.a_bits, job.b_bits, lanes)
    tiles, _, k_dim = op_a.shape
    last = np.broadcast_to(np.arange(k_dim) == k_dim - 1, op_a.shape)
    nops = np.broadcast_to(nop[:, :, None], op_a.shape)
    streams = [pack(op_layout(), a=op_a[:, l], b=op_b[:, l], last=last[:, l], nop=nops[:, l])
               for l in range(lanes)]
    total = tiles * k_dim
    beats: list[int] = []
    state = {}
    p_stall = job.p_stall
    rng = np.random.default_rng(job.seed)
    limit = (total * exact_cycles + 8 * (stages + 4)) * (4 if p_stall else 1) + 64

    async def testbench(ctx):
        for word in job.config_writes():
            ctx.set(dut.cfg.valid, 1)
            ctx.set(dut.cfg.payload.as_value(), word)
            await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        probe = ToggleProbe(lanes) if job.activity else None

        def sample():
            probe.sample([[ctx.get(lane.held_a), ctx.get(lane.held_b), ctx.get(dut.acc[l])]
                          for l, lane in enumerate(dut.lane_units)])
        if probe:
            sample()
        pos = [0] * lanes
        cycle = 0
        started = None
        i_valid = [dut.i[l].valid for l in range(lanes)]
        i_ready = [dut.i[l].ready for l in range(lanes)]
        i_payload = [dut.i[l].payload.as_value() for l in range(lanes)]
        while len(beats) < tiles:
            if cycle > limit:
                raise RuntimeError(f"array stalled: {len(beats)} of {tiles} tiles after {cycle} cycles")
            for l in range(lanes):
                offer = pos[l] < total
                ctx.set(i_valid[l], offer)
                if offer:
                    ctx.set(i_payload[l], streams[l][pos[l]])
            ready = not (p_stall and rng.random() < p_stall)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                state["wall"] = cycle + 1 - started
                beats.append(ctx.get(dut.o.payload.as_value()))
            for l in range(lanes):
                if pos[l] < total and ctx.get(i_ready[l]):
                    if started is None:
                        started = cycle
                    pos[l] += 1
            await ctx.tick()
            cycle += 1
            if probe:
                sample()
        state["cycles"] = ctx.get(dut.cycles)
        state["toggles"] = [((0, tiles), probe.start, probe.toggles)] if probe else []
        state["counters"] = {name: np.array([ctx.get(getattr(dut, name)[l]) for l in range(lanes)],
                                            np.int64) for name in COUNTERS}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    run_simulator(sim, job.vcd)
    m, n = job.a_bits.shape[0], job.b_bits.shape[1]
    out = unpack_lanes(beats, 32, lanes).astype(np.uint32).reshape(-1)[:m * n].reshape(m, n)
    return RawRun(out=out, cycles=int(state["cycles"]), wall_cycles=int(state["wall"]),
                  latency=pipeline_latency(stages), counters=state["counters"],
                  seconds=time.perf_counter() - t0,
                  toggle_parts=state["toggles"])
