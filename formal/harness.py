"""Proof harnesses: each wraps the RTL (:class:`~canna.hw.cfpu.CFPU`, :class:`~canna.hw.lane.Lane`)
with free inputs (``AnySeq``), assumptions on its environment and the assertions to prove.

Every harness runs in a reset-less ``sync`` domain, so the proof starts from the registers'
initial values, as the RTL does after reset. The CFPU's exact datapath (significand multiplier,
normaliser, rounder) and the lane's accumulator adder are cut to free values by the proof
script (:mod:`canna.formal.proofs`), so no assertion here may depend on an exact result or a
sum.

Every harness names the operation a failing assertion is about ``cex_a``, ``cex_b`` and
``cex_cfg``: the counterexample reader (:mod:`canna.formal.cex`) takes them from the trace.
"""
from __future__ import annotations

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cat, ClockDomain, Elaboratable, Module, Mux, Signal, Value

from canna.hw.approx import ApproxDecide
from canna.hw.cfpu import CFPU
from canna.hw.lane import Lane
from canna.hw.stages import Unpack

from .spec import CONFIG, EMAX, F, HitRule, legal_config

__all__ = ["HitProof", "CfpuStreamProof", "LaneStreamProof", "LaneCountersProof"]


class _Harness(Elaboratable):
    """A proof's top: it owns the reset-less ``sync`` domain, whose clock is the design's one
    port (an undriven clock would let Yosys fold every register to its initial value)."""

    def __init__(self):
        self.sync = ClockDomain("sync", reset_less=True)

    @property
    def ports(self):
        return [self.sync.clk]

    def _module(self) -> Module:
        m = Module()
        m.domains.sync = self.sync
        return m


def _free_config(m: Module, name: str):
    """A free configuration word, assumed legal (one of the 47)."""
    cfg = Signal(CONFIG, name=name)
    m.d.comb += [cfg.eq(AnySeq(len(cfg.as_value()))), Assume(legal_config(cfg))]
    return cfg


def _cex(m: Module, a, b, cfg):
    """Name the operation an assertion is about, for the counterexample reader (``keep``: the
    signals have no load, and Yosys would otherwise drop the registers behind them)."""
    for name, value in (("cex_a", a), ("cex_b", b), ("cex_cfg", cfg)):
        sig = Signal(len(Value.cast(value)), name=name, attrs={"keep": 1})
        m.d.comb += sig.eq(value)


def _special(x):
    """A zero, infinite or NaN operand: the products the CFPU bypasses (docs/lane-array.md)."""
    e, f = x[F:F + 8], x[:F]
    return (e == EMAX) | ((e == 0) & (f == 0))


class HitProof(_Harness):
    """Every cycle a new free operation, no back-pressure: ``stages`` cycles later the CFPU's
    ``hit``, and on a hit its result and flags, equal the hit rule's (:class:`HitRule`).

    With ``i.valid`` and ``o.ready`` high the pipeline advances every cycle, so the output at
    cycle ``n >= stages`` is the operation of cycle ``n - stages``; BMC to depth ``stages + 1``
    checks one operation, arbitrary in every bit, and its configuration."""

    def __init__(self, *, stages: int, config: int | None = None):
        super().__init__()
        self.stages = stages
        self.config = config    # one configuration word instead of all 47 (for measurements)

    def elaborate(self, platform):
        m = self._module()
        m.submodules.dut = dut = CFPU(stages=self.stages)
        m.submodules.spec = spec = HitRule()
        a, b = Signal(32, name="in_a"), Signal(32, name="in_b")
        cfg = _free_config(m, "in_cfg")
        if self.config is not None:
            m.d.comb += Assume(cfg.as_value() == self.config)
        m.d.comb += [
            a.eq(AnySeq(32)), b.eq(AnySeq(32)),
            dut.i.payload.a.eq(a), dut.i.payload.b.eq(b), dut.i.payload.config.eq(cfg),
            dut.i.valid.eq(1), dut.o.ready.eq(1),
            spec.a.eq(a), spec.b.eq(b), spec.config.eq(cfg),
        ]
        # the rule's answer and the operation travel beside the pipeline, `stages` cycles
        row = Cat(spec.hit, spec.bits, a, b, cfg)
        for s in range(self.stages):
            nxt = Signal(len(row), name=f"expect{s}")
            m.d.sync += nxt.eq(row)
            row = nxt
        hit, bits = row[0], row[1:33]
        _cex(m, row[33:65], row[65:97], row[97:])
        filled = Signal(range(self.stages + 1))
        with m.If(filled != self.stages):
            m.d.sync += filled.eq(filled + 1)
        with m.If(filled == self.stages):
            m.d.comb += [Assert(dut.o.valid), Assert(dut.o.payload.hit == hit)]
            with m.If(hit):
                m.d.comb += [Assert(dut.o.payload.bits == bits),
                             Assert(dut.o.payload.flags.as_value() == 0)]
        return m


def _hold(m: Module, valid, ready, payload, name: str, assume: bool = False):
    """Stream rule: while ``valid & ~ready``, the next cycle has ``valid`` and the same payload
    (asserted, or assumed for an input the environment drives)."""
    payload = Value.cast(payload)
    stalled = Signal(name=f"{name}_stalled")
    last = Signal(len(payload), name=f"{name}_last_payload")
    m.d.sync += [stalled.eq(valid & ~ready), last.eq(payload)]
    check = Assume if assume else Assert
    with m.If(stalled):
        m.d.comb += [check(valid), check(payload == last)]


class CfpuStreamProof(_Harness):
    """The CFPU's stream protocol under a free environment (idle inputs, any back-pressure):
    the output holds valid and payload while ``o.ready`` is low; the n-th result is the n-th
    accepted operation's (no loss, no duplicate, in order: checked on its ``hit`` and, on a hit,
    its result and flags, against the decision stage's answer when it entered); no more than ``stages`` operations are in flight; an operation leaves
    at the latest in the ``stages``-th cycle after it entered in which ``o.ready`` is high."""

    def __init__(self, *, stages: int):
        super().__init__()
        self.stages = stages

    def elaborate(self, platform):
        m = self._module()
        S = self.stages
        m.submodules.dut = dut = CFPU(stages=S)
        # the reference: the RTL's own decision stage again, on the operation at the input (the
        # hit proofs show that it is the rule); this proof is about carrying its answer
        m.submodules.ref_unpack = ref_unpack = Unpack()
        m.submodules.ref_decide = ref = ApproxDecide()
        a, b = Signal(32, name="in_a"), Signal(32, name="in_b")
        cfg = _free_config(m, "in_cfg")
        i_valid, o_ready = Signal(name="in_valid"), Signal(name="out_ready")
        m.d.comb += [
            a.eq(AnySeq(32)), b.eq(AnySeq(32)), i_valid.eq(AnySeq(1)), o_ready.eq(AnySeq(1)),
            dut.i.payload.a.eq(a), dut.i.payload.b.eq(b), dut.i.payload.config.eq(cfg),
            dut.i.valid.eq(i_valid), dut.o.ready.eq(o_ready),
            ref_unpack.a.eq(a), ref_unpack.b.eq(b),
            ref.a.eq(a), ref.b.eq(b), ref.config.eq(cfg), ref.exp.eq(ref_unpack.exp),
        ]
        # the environment keeps its own side of the protocol; the CFPU must keep the other
        _hold(m, dut.i.valid, dut.i.ready, dut.i.payload, "in", assume=True)
        out = dut.o.payload
        if S < 2:
            # no output register: the exact result is the cut datapath's free value, so only
            # the hit and a hit's result are checked (docs/formal.md)
            out = Cat(out.hit, Mux(out.hit, Cat(out.bits, out.flags), 0))
        _hold(m, dut.o.valid, dut.o.ready, out, "out")

        accept = dut.i.valid & dut.i.ready
        emit = dut.o.valid & dut.o.ready
        n_in, n_out = Signal(8, name="n_in"), Signal(8, name="n_out")
        m.d.sync += [n_in.eq(n_in + accept), n_out.eq(n_out + emit)]
        m.d.comb += [Assert(n_out + emit <= n_in + accept), Assert(n_in - n_out <= S)]

        # the tracked operation: chosen at its acceptance, remembered until it leaves
        pick, tracked, done = Signal(name="pick"), Signal(name="tracked"), Signal(name="done")
        m.d.comb += pick.eq(AnySeq(1))
        capture = Signal()
        m.d.comb += capture.eq(~tracked & pick & accept)
        row = Cat(ref.hit, ref.approx, a[31] ^ b[31], a, b, cfg, n_in)
        saved = Signal(len(row), name="tracked_op")
        with m.If(capture):
            m.d.sync += [tracked.eq(1), saved.eq(row)]
        cur = Signal(len(row))
        m.d.comb += cur.eq(Mux(tracked, saved, row))
        hit, bits, index = cur[0], cur[1:33], cur[-8:]
        _cex(m, cur[33:65], cur[65:97], cur[97:-8])
        live = Signal(name="tracked_live")
        m.d.comb += live.eq((tracked | capture) & ~done)
        leaves = Signal()
        m.d.comb += leaves.eq(live & emit & (n_out == index))
        with m.If(leaves):
            m.d.sync += done.eq(1)
            m.d.comb += Assert(dut.o.payload.hit == hit)
            with m.If(hit):
                m.d.comb += [Assert(dut.o.payload.bits == bits),
                             Assert(dut.o.payload.flags.as_value() == 0)]
        # bounded latency: cycles after its acceptance in which o.ready was high
        ready_seen = Signal(range(S + 2), name="ready_seen")
        with m.If(capture):
            m.d.sync += ready_seen.eq(0)
        with m.Elif(live & o_ready & (ready_seen <= S)):
            m.d.sync += ready_seen.eq(ready_seen + 1)
        with m.If(live & ~leaves & ~capture):
            m.d.comb += Assert(ready_seen + o_ready < S)
        return m


def _free_op(m: Module, lane: Lane):
    """Free operands and tags into ``lane.i`` and a free configuration write (assumed legal);
    returns (a, b, last, nop, the harness's copy of the lane's configuration register)."""
    a, b = Signal(32, name="in_a"), Signal(32, name="in_b")
    last, nop = Signal(name="in_last"), Signal(name="in_nop")
    cfg_we = Signal(name="cfg_we")
    cfg_data = _free_config(m, "cfg_data")
    m.d.comb += [
        a.eq(AnySeq(32)), b.eq(AnySeq(32)), last.eq(AnySeq(1)), nop.eq(AnySeq(1)),
        cfg_we.eq(AnySeq(1)),
        lane.i.payload.a.eq(a), lane.i.payload.b.eq(b),
        lane.i.payload.last.eq(last), lane.i.payload.nop.eq(nop),
        lane.cfg_we.eq(cfg_we), lane.cfg_data.eq(cfg_data),
    ]
    # a configuration write applies to the operations accepted from the next cycle on
    cfg = Signal(CONFIG, name="model_cfg")
    with m.If(cfg_we):
        m.d.sync += cfg.eq(cfg_data)
    return a, b, last, nop, cfg


class LaneStreamProof(_Harness):
    """A lane's stream protocol under a free environment (idle inputs, any back-pressure,
    configuration writes, counter clears): ``o`` and the lane's own stream into its CFPU hold
    valid and payload while ``ready`` is low; the n-th operation pushed into the CFPU is the
    n-th accepted one, with the configuration it was accepted with (the CFPU's own stream proof
    carries it on from there); no more than one operation waits in the held register; a held operation leaves at
    the latest ``exact_cycles`` cycles after its acceptance once the CFPU is ready; after the
    n-th operation's product is added, the beats emitted plus the one waiting on ``o`` are the
    ``last`` operations among the first n (one beat per tile, in order)."""

    def __init__(self, *, exact_cycles: int, stages: int):
        super().__init__()
        self.exact_cycles, self.stages = exact_cycles, stages

    def elaborate(self, platform):
        m = self._module()
        k = self.exact_cycles
        m.submodules.dut = dut = Lane(exact_cycles=k, stages=self.stages, counter_width=8)
        cfpu = dut.cfpu
        a, b, last, nop, cfg = _free_op(m, dut)
        i_valid, o_ready, clear = Signal(name="in_valid"), Signal(name="out_ready"), Signal(name="clear")
        m.d.comb += [i_valid.eq(AnySeq(1)), o_ready.eq(AnySeq(1)), clear.eq(AnySeq(1)),
                     dut.i.valid.eq(i_valid), dut.o.ready.eq(o_ready), dut.clear.eq(clear)]
        _hold(m, dut.i.valid, dut.i.ready, dut.i.payload, "in", assume=True)
        _hold(m, dut.o.valid, dut.o.ready, dut.o.payload, "out")
        _hold(m, cfpu.i.valid, cfpu.i.ready, cfpu.i.payload, "cfpu_in")

        accept = dut.i.valid & dut.i.ready
        push = cfpu.i.valid & cfpu.i.ready
        consume = cfpu.o.valid & cfpu.o.ready
        beat = dut.o.valid & dut.o.ready
        n_acc, n_push, n_cons = Signal(8, name="n_acc"), Signal(8, name="n_push"), Signal(8, name="n_cons")
        n_last, n_beat = Signal(8, name="n_last"), Signal(8, name="n_beat")
        m.d.sync += [n_acc.eq(n_acc + accept), n_push.eq(n_push + push), n_cons.eq(n_cons + consume),
                     n_last.eq(n_last + (accept & last)), n_beat.eq(n_beat + beat)]
        m.d.comb += [Assert(n_push + push <= n_acc + accept), Assert(n_acc - n_push <= 1),
                     Assert(n_cons + consume <= n_push + push), Assert(n_beat + beat <= n_last)]

        pick, tracked = Signal(name="pick"), Signal(name="tracked")
        pushed, added = Signal(name="pushed"), Signal(name="added")
        m.d.comb += pick.eq(AnySeq(1))
        capture = Signal()
        m.d.comb += capture.eq(~tracked & pick & accept)
        row = Cat(a, b, cfg, n_acc, n_last + last)
        saved = Signal(len(row), name="tracked_op")
        with m.If(capture):
            m.d.sync += [tracked.eq(1), saved.eq(row)]
        cur = Signal(len(row))
        m.d.comb += cur.eq(Mux(tracked, saved, row))
        cw = len(cfg.as_value())
        t_a, t_b, t_cfg = cur[:32], cur[32:64], cur[64:64 + cw]
        index, lasts = cur[64 + cw:72 + cw], cur[72 + cw:]
        _cex(m, t_a, t_b, t_cfg)

        # into the CFPU: the right operation, within exact_cycles once the CFPU is ready
        held = Signal(name="tracked_held")
        m.d.comb += held.eq(tracked & ~pushed)
        with m.If(held & push & (n_push == index)):
            m.d.sync += pushed.eq(1)
            m.d.comb += [Assert(cfpu.i.payload.a.as_value() == t_a),
                         Assert(cfpu.i.payload.b.as_value() == t_b),
                         Assert(cfpu.i.payload.config.as_value() == t_cfg)]
        age = Signal(range(k + 2), name="tracked_age")
        with m.If(capture):
            m.d.sync += age.eq(1)
        with m.Elif(held & (age <= k)):
            m.d.sync += age.eq(age + 1)
        with m.If(held & (age >= k) & cfpu.i.ready):
            m.d.comb += Assert(push & (n_push == index))

        # out of the CFPU into the accumulator, and the beats on o
        was_added = Signal(name="tracked_added_last_cycle")
        m.d.sync += was_added.eq(0)
        with m.If(pushed & ~added & consume & (n_cons == index)):
            m.d.sync += [added.eq(1), was_added.eq(1)]
        with m.If(was_added):
            m.d.comb += Assert(n_beat + dut.o.valid == lasts)
        return m


class LaneCountersProof(_Harness):
    """A lane's occupancy and counters against the golden lane model's latency rule
    (:func:`canna.sim.lanes.cycles_from_fast`, docs/lane-array.md): an operation that is a hit,
    has a zero/infinite/NaN operand or is a ``nop`` occupies the lane 1 cycle, any other
    ``exact_cycles``; the lane accepts its next operation in the last cycle of the current
    one's occupancy. No back-pressure (the golden model's cycles are those of a lane that never
    stalls), free idle inputs and configuration writes. Asserted every cycle: ``i.ready`` and
    ``active`` as the rule says; ``busy`` and the array's cycle count (cycles with ``active``)
    plus the current operation's remaining occupancy equal the sums of the latencies of the
    operations accepted so far (real ones for ``busy``); ``ops``, ``bypass``, ``mul`` and
    ``hits`` count as the rule says."""

    def __init__(self, *, exact_cycles: int, stages: int):
        super().__init__()
        self.exact_cycles, self.stages = exact_cycles, stages

    def elaborate(self, platform):
        m = self._module()
        k, S = self.exact_cycles, self.stages
        m.submodules.dut = dut = Lane(exact_cycles=k, stages=S, counter_width=8)
        a, b, last, nop, cfg = _free_op(m, dut)
        i_valid = Signal(name="in_valid")
        m.d.comb += [i_valid.eq(AnySeq(1)), dut.i.valid.eq(i_valid), dut.o.ready.eq(1), dut.clear.eq(0)]
        m.submodules.spec = spec = HitRule()
        m.d.comb += [spec.a.eq(a), spec.b.eq(b), spec.config.eq(cfg)]
        special = _special(a) | _special(b)
        fast = Signal(name="model_fast")
        m.d.comb += fast.eq(nop | spec.hit | special)
        _cex(m, a, b, cfg)

        # the model lane: the held operation's remaining occupancy and what it will count
        full, left = Signal(name="model_full"), Signal(range(k + 1), name="model_left")
        real, exact, bypass = Signal(name="model_real"), Signal(name="model_exact"), Signal(name="model_bypass")
        hit = Signal(name="model_hit")
        ready = Signal(name="model_ready")
        m.d.comb += ready.eq(~full | (left == 1))
        m.d.comb += [Assert(dut.i.ready == ready), Assert(dut.active == full)]
        accept = i_valid & ready
        with m.If(accept):
            m.d.sync += [full.eq(1), left.eq(Mux(fast, 1, k)), real.eq(~nop),
                         exact.eq(~fast), bypass.eq(~nop & special), hit.eq(~nop & spec.hit)]
        with m.Elif(full):
            m.d.sync += [left.eq(left - 1), full.eq(left != 1)]
        leaves = full & (left == 1)

        sum_all, sum_real = Signal(8, name="sum_latency"), Signal(8, name="sum_latency_real")
        cycles = Signal(8, name="cycles_active")
        ops, mul, byp = Signal(8, name="model_ops"), Signal(8, name="model_mul"), Signal(8, name="model_bypass_count")
        lat = Mux(fast, 1, k)
        with m.If(accept):
            m.d.sync += [sum_all.eq(sum_all + lat), sum_real.eq(sum_real + Mux(nop, 0, lat)),
                         ops.eq(ops + ~nop)]
        m.d.sync += [cycles.eq(cycles + full),
                     mul.eq(mul + (leaves & real & exact)), byp.eq(byp + (leaves & bypass))]
        # hits are counted when the product reaches the accumulator, `stages` cycles later
        hit_at = leaves & hit
        for s in range(S):
            nxt = Signal(name=f"model_hit_pipe{s}")
            m.d.sync += nxt.eq(hit_at)
            hit_at = nxt
        hits = Signal(8, name="model_hits")
        m.d.sync += hits.eq(hits + hit_at)

        remaining = Mux(full, left, 0)
        m.d.comb += [
            Assert(cycles + remaining == sum_all),
            Assert(dut.busy + Mux(real, remaining, 0) == sum_real),
            Assert(dut.ops == ops), Assert(dut.mul == mul), Assert(dut.bypass == byp),
            Assert(dut.hits == hits),
        ]
        return m
