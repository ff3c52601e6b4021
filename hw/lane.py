"""One multiply-accumulate lane of the SIMD array: issue stage, CFPU, binary32 accumulator.

Microarchitecture (registers in ``[ ]``)::

    i (a, b, last, nop) --> [held op, cfg, rem] --> CFPU (``stages`` regs)  ~~ [tags: last, nop]
                                  ^      |  push when fast or rem == 0          |
                                  |      |                                      |
                                  +------+-- early decision: fast = hit | zero/inf/NaN | nop
                                                                                |
                         +0.0 or [acc] -+-> FAdd <------------------------------+
                                        +--> [acc]
                                        \\--> [res] --> o (one beat per ``last`` op)

Issue
    The lane accepts one operation into its *held* register when the register is empty or its
    operation leaves this cycle (``rem`` is loaded with ``exact_cycles - 1``). The CFPU's early
    decision on its input - the held operation - says whether the product is *fast*: an
    approximate hit (:class:`~canna.hw.approx.ApproxDecide`), a product with a zero, infinite
    or NaN operand (the multiplier is bypassed), or a ``nop`` (a padding lane of the last
    tile). A fast operation enters the CFPU in the first cycle it is held, so it occupies the
    lane for 1 cycle; any other waits until ``rem`` has counted down, ``exact_cycles`` cycles
    in all (a multi-cycle significand multiplier). So an operation accepted in cycle ``c`` with
    occupancy ``L`` enters the CFPU in cycle ``c + L`` and the lane accepts its next operation
    in that same cycle. The decision logic is the CFPU's own (it also drives the CFPU's
    operand isolation); the lane has no copy of it.

Accumulate
    The CFPU's results arrive in order; :class:`~canna.hw.adder.FAdd` adds each to the
    accumulator (``+0.0`` for the first product of a tile, so the sum is the golden
    ``add(+0.0, p0)``, ``add(acc, p1)``, ...: two roundings per step, not fused). The result of
    the ``last`` operation is also written to ``res``, presented on ``o`` until taken. A new
    ``last`` result waits in the CFPU (back-pressure) while ``res`` is still full.

Configuration
    A per-lane configuration register (``cfg_we``/``cfg_data``, :func:`config_layout`) applies
    to operations accepted from the next cycle on; every held operation keeps the configuration
    it was accepted with.

Counters (``counter_width`` bits, wrap around, cleared by ``clear``; ``ops`` counts at accept,
``bypass`` and ``mul`` when the operation enters the CFPU, ``hits`` when its result is added, so
they add up exactly when ``clear`` comes while the lane is idle, as the drivers do)
    ``ops`` (real operations accepted), ``bypass`` (of them with a zero/inf/NaN operand,
    counted when they enter the CFPU),
    ``hits`` (approximate products, counted from the CFPU's own ``hit`` output), ``busy``
    (cycles the held register holds a real operation: ``sum`` of occupancies when nothing
    stalls), ``mul`` (operations that went through the significand multiplier).

Latency: an operation accepted in cycle ``c`` with occupancy ``L`` updates the accumulator at
the end of cycle ``c + L + stages``; the tile result is on ``o`` from cycle ``c + L + stages + 1``.
"""
from __future__ import annotations

import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from canna.spec.array import COUNTERS, DEFAULT_EXACT_CYCLES, DEFAULT_STAGES
from canna.spec.config import config_layout
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import check_format, op_layout

from .adder import FAdd
from .cfpu import CFPU

__all__ = ["Lane"]


class Lane(wiring.Component):
    """A multiply-accumulate lane with variable latency (see the module docstring).

    Parameters
    ----------
    fmt : FloatFormat
    exact_cycles : int
        Cycles an operation that needs the significand multiplier occupies the lane (>= 1).
    stages : int
        Pipeline registers of the CFPU (0 .. 4).
    counter_width : int
        Width of every counter.

    Members
    -------
    i : In(stream.Signature(op_layout(fmt)))
        Operations; ``i.ready`` does not depend on ``i.valid``.
    o : Out(stream.Signature(fmt.width))
        The accumulator value after each ``last`` operation.
    cfg_we : In(1), cfg_data : In(config_layout(fmt))
        Configuration register write.
    clear : In(1)
        Reset every counter to zero.
    ops, hits, bypass, busy, mul : Out(counter_width)
        Counters (see the module docstring).
    active : Out(1)
        The held register holds an operation this cycle (the array's cycle counter uses it).
    acc : Out(fmt.width)
        The accumulator register (an activity probe).
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32, exact_cycles: int = DEFAULT_EXACT_CYCLES,
                 stages: int = DEFAULT_STAGES,
                 counter_width: int = 32):
        self.fmt = check_format(fmt)
        self.exact_cycles = operator.index(exact_cycles)
        if self.exact_cycles < 1:
            raise ValueError(f"exact_cycles must be >= 1, got {exact_cycles}")
        self.stages = operator.index(stages)
        self.counter_width = operator.index(counter_width)
        if self.counter_width < 1:
            raise ValueError(f"counter_width must be >= 1, got {counter_width}")
        self.cfpu = CFPU(fmt=fmt, stages=self.stages, approx=True)
        members = {
            "i": In(stream.Signature(op_layout(fmt))),
            "o": Out(stream.Signature(fmt.width)),
            "cfg_we": In(1), "cfg_data": In(config_layout(fmt)),
            "clear": In(1),
            "active": Out(1),
            "acc": Out(fmt.width),
        }
        members.update({name: Out(self.counter_width) for name in COUNTERS})
        super().__init__(members)
        # the held operation's operand registers (named here so that simulators can probe them
        # for switching activity; the Verilog keeps these names)
        self.held_a = Signal(fmt.width, name="held_a")
        self.held_b = Signal(fmt.width, name="held_b")

    @property
    def latency(self) -> int:
        """Cycles from the push into the CFPU to the accumulator update (CFPU latency)."""
        return self.cfpu.latency

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        k = self.exact_cycles
        m.submodules.cfpu = cfpu = self.cfpu
        cfg = Signal(config_layout(fmt))
        with m.If(self.cfg_we):
            m.d.sync += cfg.eq(self.cfg_data)

        # ---- issue: fast or exact --------------------------------------------------------
        # The held operation goes to the CFPU as soon as the CFPU's early decision (on its input,
        # the held register) says it needs no significand multiply, else after ``k - 1`` more
        # cycles. The decision is the CFPU's own (hit rule, special operands): the lane has no
        # copy of that logic.
        op = self.i.payload
        full = Signal()
        rem = Signal(range(k))
        # the held operation, one register per field (a simulator handles one 66-bit vector
        # word by word; the hardware is the same)
        held_a, held_b = self.held_a, self.held_b
        held_last = Signal()
        held_nop = Signal()
        held_cfg = Signal(config_layout(fmt))
        fast = Signal()
        push = Signal()
        free = Signal()
        accept = Signal()
        m.d.comb += [
            cfpu.i.payload.a.eq(held_a), cfpu.i.payload.b.eq(held_b),
            cfpu.i.payload.config.eq(held_cfg),
            fast.eq(cfpu.early_hit | cfpu.early_special | held_nop),
            cfpu.i.valid.eq(full & (fast | (rem == 0))),
            push.eq(cfpu.i.valid & cfpu.i.ready),
            free.eq(~full | push),
            self.i.ready.eq(free),
            accept.eq(self.i.valid & free),
            self.active.eq(full),
        ]
        with m.If(accept):
            m.d.sync += [full.eq(1), held_a.eq(op.a), held_b.eq(op.b), held_last.eq(op.last),
                         held_nop.eq(op.nop), held_cfg.eq(cfg), rem.eq(k - 1)]
        with m.Else():
            with m.If(push):
                m.d.sync += full.eq(0)
            with m.If(full & (rem != 0)):
                m.d.sync += rem.eq(rem - 1)

        # ---- tags beside the CFPU: it advances all its registers together -----------------
        advance = Signal()
        m.d.comb += advance.eq(~cfpu.o.valid | cfpu.o.ready)
        tag = Cat(held_last, held_nop)
        for s in range(cfpu.latency):
            t = Signal(2, name=f"tag{s}")
            with m.If(advance):
                m.d.sync += t.eq(tag)
            tag = t
        tag_last, tag_nop = tag[0], tag[1]

        # ---- accumulate ---------------------------------------------------------------------
        acc = Signal(fmt.width)
        acc_zero = Signal(init=1)
        res = Signal(fmt.width)
        res_valid = Signal()
        m.submodules.add = add = FAdd(fmt=fmt)
        m.d.comb += [
            add.a.eq(Mux(acc_zero, 0, acc)),
            add.b.eq(cfpu.o.payload.bits),
            cfpu.o.ready.eq(~(tag_last & res_valid & ~self.o.ready)),
            self.o.valid.eq(res_valid),
            self.o.payload.eq(res),
            self.acc.eq(acc),
        ]
        consume = Signal()
        m.d.comb += consume.eq(cfpu.o.valid & cfpu.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += res_valid.eq(0)
        with m.If(consume):
            with m.If(~tag_nop):
                m.d.sync += [acc.eq(add.bits), acc_zero.eq(0)]
            with m.If(tag_last):
                m.d.sync += [res.eq(Mux(tag_nop, Mux(acc_zero, 0, acc), add.bits)),
                             res_valid.eq(1), acc_zero.eq(1)]

        # ---- counters ---------------------------------------------------------------------
        pushed_real = push & ~held_nop
        incs = {
            "ops": accept & ~op.nop,
            "bypass": pushed_real & cfpu.early_special,
            "hits": consume & ~tag_nop & cfpu.o.payload.hit,
            "busy": full & ~held_nop,
            # operations through the significand multiplier: neither special nor a hit
            "mul": pushed_real & ~fast,
        }
        for name, inc in incs.items():
            counter = getattr(self, name)
            reg = Signal(self.counter_width, name=f"count_{name}")
            with m.If(self.clear):
                m.d.sync += reg.eq(0)
            with m.Elif(inc):
                m.d.sync += reg.eq(reg + 1)
            m.d.comb += counter.eq(reg)
        return m
