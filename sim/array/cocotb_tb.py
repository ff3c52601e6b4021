"""cocotb 2.x testbench of the lane array's Verilog on Verilator (the slow, per-cycle path of
:func:`canna.sim.array.run_array`, ``backend="cocotb"``, :mod:`canna.sim.array.cocotb_sim`).

Test ``matmul_file``: reads ``CANNA_ARRAY_IN`` (npz: per-lane operation fields ``a``, ``b``,
``last``, ``nop``, each of shape (lanes, n), configuration write words ``cfg``), writes the
configuration, clears the counters,
streams every lane's operations (per-lane valid/ready handshakes, output beats with optional
back-pressure ``CANNA_P_STALL``) and writes ``CANNA_ARRAY_OUT`` (npz: ``beats``, ``cycles``,
``wall``, the per-lane counters; with ``CANNA_ACTIVITY=1`` also the register toggles and their
start values, sampled after every rising edge). The golden check is done by the caller.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from canna.sim.testbench import CocotbClockReset
from canna.sim.toggles import ToggleProbe
from canna.spec.array import COUNTERS
from canna.spec.layouts import op_layout, pack, unpack_lanes


class TB(CocotbClockReset):
    """Streams per-lane operations and collects output beats (clock and reset: the base)."""

    def __init__(self, dut, lanes: int, rng, p_stall: float, activity: bool = False):
        super().__init__(dut)
        self.lanes = lanes
        self.rng = rng
        self.p_stall = p_stall
        self.i_valid = [getattr(dut, f"i__{l}__valid") for l in range(lanes)]
        self.i_ready = [getattr(dut, f"i__{l}__ready") for l in range(lanes)]
        self.i_payload = [getattr(dut, f"i__{l}__payload") for l in range(lanes)]
        # switching activity: every lane's held operand registers and the accumulators
        self.probe = ToggleProbe(lanes) if activity else None
        self.held = [(getattr(dut, f"lane{l}").held_a, getattr(dut, f"lane{l}").held_b)
                     for l in range(lanes)] if activity else []

    def sample(self):
        """One probe sample (registers settled after a clock edge)."""
        if self.probe is None:
            return
        acc = unpack_lanes([self.dut.acc.value.to_unsigned()], 32, self.lanes)[0]
        self.probe.sample([[int(a.value), int(b.value), int(acc[l])]
                           for l, (a, b) in enumerate(self.held)])

    def idle_inputs(self):
        dut = self.dut
        for v in self.i_valid:
            v.value = 0
        dut.o__ready.value = 0
        dut.cfg__valid.value = 0
        dut.clear.value = 0

    async def configure(self, words):
        dut = self.dut
        for w in words:
            await FallingEdge(dut.clk)
            dut.cfg__valid.value = 1
            dut.cfg__payload.value = int(w)
        await FallingEdge(dut.clk)
        dut.cfg__valid.value = 0
        dut.clear.value = 1
        await FallingEdge(dut.clk)
        dut.clear.value = 0

    async def run(self, ops: list[list[int]], tiles: int):
        dut = self.dut
        lanes = self.lanes
        total = len(ops[0])
        pos = [0] * lanes
        beats = []
        cycle = 0
        first = last = None
        limit = 8 * total + 200
        falling = FallingEdge(dut.clk)
        settle = ReadOnly()
        self.sample()   # the start values (before the run's first rising edge)
        while len(beats) < tiles:
            if cycle > limit:
                raise AssertionError(f"array stalled: {len(beats)} of {tiles} tiles after {cycle} cycles")
            await falling
            offer = [pos[l] < total for l in range(lanes)]
            for l in range(lanes):
                self.i_valid[l].value = int(offer[l])
                if offer[l]:
                    self.i_payload[l].value = ops[l][pos[l]]
            ready = not (self.p_stall and self.rng.random() < self.p_stall)
            dut.o__ready.value = int(ready)
            await settle
            if cycle:
                self.sample()   # after the previous rising edge
            if ready and int(dut.o__valid.value):
                beats.append(dut.o__payload.value.to_unsigned())
                last = cycle
            for l in range(lanes):
                if offer[l] and int(self.i_ready[l].value):
                    if first is None:
                        first = cycle
                    pos[l] += 1
            cycle += 1
        return beats, last - first + 1


@cocotb.test()
async def matmul_file(dut):
    src = os.environ.get("CANNA_ARRAY_IN")
    if not src:
        return
    data = np.load(src)
    a = data["a"]
    lanes = a.shape[0]
    tiles = int(data["tiles"])
    tb = TB(dut, lanes, np.random.default_rng(int(os.environ.get("CANNA_SEED", 1))),
            float(os.environ.get("CANNA_P_STALL", 0.0)), os.environ.get("CANNA_ACTIVITY") == "1")
    await tb.start()
    await tb.configure(data["cfg"].tolist())
    words = [pack(op_layout(), a=a[l], b=data["b"][l], last=data["last"][l], nop=data["nop"][l])
             for l in range(lanes)]
    beats, wall = await tb.run(words, tiles)
    await FallingEdge(dut.clk)
    await ReadOnly()
    tb.sample()
    counters = {name: unpack_lanes([getattr(dut, name).value.to_unsigned()], 32, lanes)[0]
                .astype(np.int64) for name in COUNTERS}
    out = unpack_lanes(beats, 32, lanes).astype(np.uint32)
    if tb.probe is not None:
        counters.update(toggle_start=tb.probe.start, toggles=tb.probe.toggles)
    np.savez(os.environ["CANNA_ARRAY_OUT"], beats=out, cycles=int(dut.cycles.value.to_unsigned()),
             wall=wall, **counters)
    dut._log.info(f"streamed {tiles} tiles x {lanes} lanes x {a.shape[1] // max(tiles, 1)} "
                  f"operations in {wall} cycles")
