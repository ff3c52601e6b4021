"""The SIMD lane array: ``lanes`` multiply-accumulate lanes computing tiles of ``Y = X @ W``.

Mapping (the golden lane model's, sim/lanes.py)
    A tile is ``lanes`` consecutive outputs of ``Y`` in row-major order; lane ``l`` computes
    ``Y[i, j] = sum_k X[i, k] * W[k, j]`` as a stream of ``K`` operations, the last one tagged
    ``last``. Padding lanes of the final tile get one ``nop`` operation tagged ``last``.

Structure::

    i[0] --> Lane 0 --+                           cfg (lane | broadcast, config)
    i[1] --> Lane 1 --+--> o (one beat: lanes      |  --> per-lane config registers
     ...               |       accumulators)       clear --> every counter
    i[N-1] -> Lane N-1 +
             \\__ issue control (discipline) __/    cycles, per-lane ops/hits/bypass/busy/mul

Every lane has its own operand stream ``i[l]``; the discipline decides how they handshake:

* ``"lockstep"`` -- one SIMD operation at a time: all lanes handshake together, when every
  ``i[l].valid`` is high and every lane is free. An operation therefore occupies the array for
  the occupancy of its slowest lane (1 cycle if every lane's product is fast, ``exact_cycles``
  if any one needs the multiplier): ``cycles(tile) = sum_k max_l lat(l, k)``.
* ``"decoupled"`` -- every lane takes its own operations as soon as it is free; after a ``last``
  operation a lane waits at the tile barrier, released in the cycle the slowest lane becomes
  free (so no cycle is lost at the barrier): ``cycles(tile) = max_l sum_k lat(l, k)``.

Tiles overlap in the pipeline: the next tile's operations issue while the previous tile drains
through the CFPUs and the adders. The output beat ``o`` (the ``lanes`` tile results) is valid
when every lane has its result; a lane whose next result arrives before the beat is taken
stalls its CFPU (and then its issue).

Cycle counter ``cycles``: cycles in which at least one lane holds an operation. With the
operand streams never empty and ``o.ready`` always high it equals the golden model's
``cycles_lockstep`` / ``cycles_decoupled`` exactly; the wall-clock time of a run is
``cycles + latency`` (:attr:`LaneArray.latency` = ``stages + 2``: pipeline fill and drain, once
per run, not per tile: tiles overlap).
"""
from __future__ import annotations

import operator

from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from canna.spec.array import (COUNTERS, DEFAULT_EXACT_CYCLES, DEFAULT_LANES, DEFAULT_STAGES,
                              DISCIPLINES, pipeline_latency)
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import check_format, config_write_layout, lanes_layout, op_layout

from .lane import Lane

__all__ = ["LaneArray"]


class LaneArray(wiring.Component):
    """``lanes`` multiply-accumulate lanes with a lockstep or decoupled issue discipline.

    Parameters
    ----------
    lanes : int
        Number of lanes (16: one Southern Islands SIMD).
    exact_cycles : int
        Cycles a product that needs the significand multiplier occupies its lane.
    discipline : str
        ``"lockstep"`` or ``"decoupled"`` (see the module docstring).
    stages : int
        Pipeline registers of every lane's CFPU.
    fmt : FloatFormat
    counter_width : int
    lane_module : str or None
        For Verilog export only: instantiate every lane as the external module of this name
        (``Instance``) instead of elaborating it in place, so a simulator shares one lane model
        among all lanes. Its Verilog is ``verilog.convert(array.lane_units[0], name=...)``.

    Members
    -------
    i : In(stream.Signature(op_layout(fmt))).array(lanes)
        One operation stream per lane.
    o : Out(stream.Signature(data.ArrayLayout(fmt.width, lanes)))
        Tile results, lane ``l`` in element ``l``.
    cfg : In(stream.Signature(config_write_layout(fmt, lanes)))
        Configuration writes (always ready; effective for operations accepted from the next cycle).
    clear : In(1)
        Clear every counter.
    cycles : Out(counter_width)
        Cycles with at least one lane holding an operation.
    ops, hits, bypass, busy, mul : Out(data.ArrayLayout(counter_width, lanes))
        The lanes' counters (:class:`~canna.hw.lane.Lane`).
    acc : Out(data.ArrayLayout(fmt.width, lanes))
        The accumulators (activity probe).
    """

    def __init__(self, *, lanes: int = DEFAULT_LANES, exact_cycles: int = DEFAULT_EXACT_CYCLES,
                 discipline: str = "lockstep", stages: int = DEFAULT_STAGES, fmt: FloatFormat = BINARY32, counter_width: int = 32,
                 lane_module: str | None = None):
        self.fmt = check_format(fmt)
        self.lanes = operator.index(lanes)
        if self.lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        if discipline not in DISCIPLINES:
            raise ValueError(f"discipline must be one of {DISCIPLINES}, got {discipline!r}")
        self.discipline = discipline
        self.exact_cycles = operator.index(exact_cycles)
        self.stages = operator.index(stages)
        self.counter_width = operator.index(counter_width)
        self.lane_module = lane_module
        self.lane_units = [Lane(fmt=fmt, exact_cycles=self.exact_cycles, stages=self.stages,
                                counter_width=self.counter_width) for _ in range(self.lanes)]
        if lane_module is not None:
            for lane in self.lane_units:  # port holders only: not elaborated here
                lane._MustUse__silence = lane.cfpu._MustUse__silence = True
        n = self.lanes
        members = {
            "i": In(stream.Signature(op_layout(fmt))).array(n),
            "o": Out(stream.Signature(lanes_layout(fmt.width, n))),
            "cfg": In(stream.Signature(config_write_layout(fmt, n))),
            "clear": In(1),
            "cycles": Out(self.counter_width),
            "acc": Out(lanes_layout(fmt.width, n)),
        }
        members.update({name: Out(lanes_layout(self.counter_width, n)) for name in COUNTERS})
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Pipeline fill and drain, once per run: a run's wall-clock length (from the cycle the
        first operation is accepted to the cycle the last beat is on ``o``, both included) is
        ``cycles + latency``: the held register (1), the CFPU (``stages``) and the accumulator
        (1)."""
        return pipeline_latency(self.stages)

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        lanes = self.lane_units
        for l, lane in enumerate(lanes):
            if self.lane_module is None:
                m.submodules[f"lane{l}"] = lane
            else:
                ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
                for path, member, value in lane.signature.flatten(lane):
                    name = "__".join(str(p) for p in path)
                    ports[("i_" if member.flow == In else "o_") + name] = value
                m.submodules[f"lane{l}"] = Instance(self.lane_module, **ports)

        # ---- configuration and counters --------------------------------------------------
        m.d.comb += self.cfg.ready.eq(1)
        for l, lane in enumerate(lanes):
            m.d.comb += [
                lane.cfg_we.eq(self.cfg.valid & (self.cfg.payload.broadcast
                                                  | (self.cfg.payload.lane == l))),
                lane.cfg_data.eq(self.cfg.payload.config),
                lane.clear.eq(self.clear),
                self.acc[l].eq(lane.acc),
            ]
            for name in COUNTERS:
                m.d.comb += getattr(self, name)[l].eq(getattr(lane, name))
        cycles = Signal(self.counter_width)
        active = Signal()
        m.d.comb += [active.eq(Cat(lane.active for lane in lanes).any()), self.cycles.eq(cycles)]
        with m.If(self.clear):
            m.d.sync += cycles.eq(0)
        with m.Elif(active):
            m.d.sync += cycles.eq(cycles + 1)

        # ---- issue discipline ---------------------------------------------------------------
        for l, lane in enumerate(lanes):
            m.d.comb += lane.i.payload.eq(self.i[l].payload)
        if self.discipline == "lockstep":
            all_free = Signal()
            all_valid = Signal()
            m.d.comb += [all_free.eq(Cat(lane.i.ready for lane in lanes).all()),
                         all_valid.eq(Cat(self.i[l].valid for l in range(n)).all())]
            for l, lane in enumerate(lanes):
                m.d.comb += [lane.i.valid.eq(all_valid & all_free),
                             self.i[l].ready.eq(all_valid & all_free)]
        else:
            waiting = Signal(n)
            all_done = Signal()
            m.d.comb += all_done.eq(waiting.all() & Cat(lane.i.ready for lane in lanes).all())
            for l, lane in enumerate(lanes):
                go = lane.i.ready & (~waiting[l] | all_done)
                accept = self.i[l].valid & go
                m.d.comb += [lane.i.valid.eq(self.i[l].valid & go), self.i[l].ready.eq(go)]
                with m.If(accept & self.i[l].payload.last):
                    m.d.sync += waiting[l].eq(1)
                with m.Elif(all_done):
                    m.d.sync += waiting[l].eq(0)

        # ---- output beat --------------------------------------------------------------------
        all_res = Signal()
        m.d.comb += [all_res.eq(Cat(lane.o.valid for lane in lanes).all()),
                     self.o.valid.eq(all_res)]
        for l, lane in enumerate(lanes):
            m.d.comb += [self.o.payload[l].eq(lane.o.payload),
                         lane.o.ready.eq(self.o.ready & all_res)]
        return m
