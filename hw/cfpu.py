"""The CFPU: a pipelined, configurable approximate floating-point multiplier.

Pipeline (register positions ``[name]``; ``stages`` of them are present, filled in the order
``operands, output, product, normalised``)::

    i (a, b, config) --+--> Unpack ------+--[operands]--> SigMul --[product]--> Normalise
                       |                 |   (held on hits,                         |
                       +--> ApproxDecide-+    specials, idle)                [normalised]
                             hit, approx  \\                                         |
                                           +--[operands]--...side channel......> RoundPack
                                                                                     |
                                                              ResultSelect <---------+
                                                                   |
                                                               [output] --> o (bits, flags, hit)

Latency is ``stages`` cycles (0: combinational), throughput one operation per cycle. The whole
pipeline advances together when its output register is empty or accepted
(``advance = ~o.valid | o.ready``), so back-pressure stalls every stage and ``i.ready`` is
``advance``.

Operand isolation: the registers in front of the significand multiplier (position
``operands``) load only for valid, finite, non-hit operations. On a hit, a special operand or an
idle cycle they keep their value, so the multiplier, the normaliser and the rounder see no input
change. With ``stages=0`` there is no such register and the operands are gated to zero instead.
The same rule enables every data register: the exact path's registers load only for operations
that need the exact path, the others only for valid operations; bubbles move no data.
"""
from __future__ import annotations

import operator

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from canna.spec.array import DEFAULT_STAGES
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import FLAGS_LAYOUT, check_format, input_layout, output_layout

from .approx import ApproxDecide, ResultSelect
from .layouts import KIND_FINITE, exp_shape
from .stages import Normalise, RoundPack, SigMul, Unpack

__all__ = ["CFPU", "PLACEMENT", "DATAPATH_ORDER", "MAX_STAGES"]

#: Register positions in datapath order.
DATAPATH_ORDER = ("operands", "product", "normalised", "output")
#: The order in which ``stages`` registers are placed.
PLACEMENT = ("operands", "output", "product", "normalised")
MAX_STAGES = len(PLACEMENT)


class CFPU(wiring.Component):
    """Configurable approximate multiplier with a stream interface.

    Parameters
    ----------
    fmt : FloatFormat
        Number format (binary32 unless stated); every width derives from it.
    stages : int
        Pipeline registers, 0 .. 4 (see the module docstring for where they go). Default 3.
    approx : bool
        Include the approximate path (:class:`ApproxDecide`, :class:`ResultSelect`). With
        ``False`` this is the exact-only IEEE multiplier built from the same stages: the
        configuration input is ignored and ``hit`` is always 0.

    Members
    -------
    i : In(stream.Signature(input_layout(fmt)))
        Operands ``a``, ``b`` and their ``config``.
    o : Out(stream.Signature(output_layout(fmt)))
        Result ``bits``, ``flags`` (TestFloat order) and ``hit``.
    early_hit, early_special : Out(1)
        The early decision on the payload at ``i`` (combinational, whether or not ``i.valid``):
        the product will be an approximate hit / has a zero, infinite or NaN operand. Either
        way it needs no significand multiply; the lane (:class:`canna.hw.lane.Lane`) uses this
        to let such an operation leave its issue register at once.

    Attributes
    ----------
    latency : int
        Cycles from accepting an operation to presenting its result (equal to ``stages``).
    parts : dict
        The submodules of the latest elaboration by name (for tests and activity counting).
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32, stages: int = DEFAULT_STAGES, approx: bool = True):
        self.fmt = check_format(fmt)
        stages = operator.index(stages)
        if not 0 <= stages <= MAX_STAGES:
            raise ValueError(f"stages must be in 0..{MAX_STAGES}, got {stages}")
        if not isinstance(approx, bool):
            raise TypeError(f"approx must be a bool, got {approx!r}")
        self.stages = stages
        self.approx = approx
        self.registers = frozenset(PLACEMENT[:stages])
        self.parts = {}
        super().__init__({
            "i": In(stream.Signature(input_layout(fmt))),
            "o": Out(stream.Signature(output_layout(fmt))),
            "early_hit": Out(1),
            "early_special": Out(1),
        })

    @property
    def latency(self) -> int:
        return self.stages

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        F = fmt.frac_bits
        regs = self.registers

        # ---- handshake ---------------------------------------------------------------------
        advance = Signal()
        if self.stages == 0:
            m.d.comb += [
                advance.eq(1),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
        else:
            m.d.comb += [
                advance.eq(~self.o.valid | self.o.ready),
                self.i.ready.eq(advance),
            ]

        payload = self.i.payload

        # ---- classification / unpack, approximate decision ---------------------------------
        m.submodules.unpack = unpack = Unpack(fmt=fmt)
        m.d.comb += [unpack.a.eq(payload.a), unpack.b.eq(payload.b)]
        special = Signal()
        m.d.comb += special.eq(unpack.kind != KIND_FINITE)

        if self.approx:
            m.submodules.decide = decide = ApproxDecide(fmt=fmt)
            m.d.comb += [decide.a.eq(payload.a), decide.b.eq(payload.b),
                         decide.config.eq(payload.config), decide.exp.eq(unpack.exp)]
            hit = decide.hit
        else:
            hit = 0
        hold = Signal()
        m.d.comb += [
            hold.eq(hit | special | ~self.i.valid),
            self.early_hit.eq(hit),
            self.early_special.eq(special),
        ]

        # ---- valid bits, and the clock enables of the data registers -----------------------
        # Each register position has the valid bit of the operation arriving at it and whether
        # that operation needs the exact datapath (valid, finite, not a hit). A data register
        # loads only for such an operation - the exact datapath's registers for exact ones,
        # the others for every valid one - and holds otherwise: bubbles, hits and special
        # operands leave the multiplier, normaliser and rounder with unchanged inputs (less
        # switching; a simulator skips their logic on those cycles too).
        valid_at, exact_at = {}, {}
        valid, exact = self.i.valid, ~hold
        for pos in DATAPATH_ORDER:
            valid_at[pos], exact_at[pos] = valid, exact
            if pos in regs:
                v, x = Signal(name=f"{pos}_valid"), Signal(name=f"{pos}_exact")
                with m.If(advance):
                    m.d.sync += [v.eq(valid), x.eq(exact)]
                valid, exact = v, x
        if self.stages:
            m.d.comb += self.o.valid.eq(valid)

        def stage(pos, name, value, shape, exact_path=False):
            if pos not in regs:
                return value
            reg = Signal(shape, name=f"{pos}_{name}", reset_less=True)
            with m.If(advance & (exact_at[pos] if exact_path else valid_at[pos])):
                m.d.sync += reg.eq(value)
            return reg

        # ---- operand isolation + register "operands" ---------------------------------------
        if "operands" in regs:
            sig_a = stage("operands", "sig_a", unpack.sig_a, F + 1, exact_path=True)
            sig_b = stage("operands", "sig_b", unpack.sig_b, F + 1, exact_path=True)
            exp = stage("operands", "exp", unpack.exp, exp_shape(fmt), exact_path=True)
        else:
            sig_a = Signal(F + 1, name="gated_sig_a")
            sig_b = Signal(F + 1, name="gated_sig_b")
            m.d.comb += [sig_a.eq(Mux(hold, 0, unpack.sig_a)), sig_b.eq(Mux(hold, 0, unpack.sig_b))]
            exp = unpack.exp

        # The side channel travels beside the exact path and is never held.
        side = [("sign", unpack.sign, 1), ("kind", unpack.kind, 2), ("invalid", unpack.invalid, 1)]
        if self.approx:
            side += [("hit", decide.hit, 1), ("approx", decide.approx, fmt.width - 1)]
        side = {name: (value, shape) for name, value, shape in side}

        def side_stage(pos):
            for name, (value, shape) in list(side.items()):
                side[name] = (stage(pos, name, value, shape), shape)

        side_stage("operands")

        # ---- exact significand multiply, register "product" -------------------------------
        m.submodules.sigmul = sigmul = SigMul(fmt=fmt)
        m.d.comb += [sigmul.sig_a.eq(sig_a), sigmul.sig_b.eq(sig_b)]
        p = stage("product", "p", sigmul.p, 2 * F + 2, exact_path=True)
        exp = stage("product", "exp", exp, exp_shape(fmt), exact_path=True)
        side_stage("product")

        # ---- normalise, register "normalised" ---------------------------------------------
        m.submodules.normalise = normalise = Normalise(fmt=fmt)
        m.d.comb += [normalise.p.eq(p), normalise.exp.eq(exp)]
        pn = stage("normalised", "pn", normalise.pn, 2 * F + 2, exact_path=True)
        exp_n = stage("normalised", "exp_n", normalise.exp_n, exp_shape(fmt), exact_path=True)
        side_stage("normalised")

        # ---- round / pack / flags, result select ------------------------------------------
        m.submodules.roundpack = roundpack = RoundPack(fmt=fmt)
        self.parts = {"unpack": unpack, "sigmul": sigmul, "normalise": normalise,
                      "roundpack": roundpack}
        if self.approx:
            self.parts["decide"] = decide
        m.d.comb += [
            roundpack.pn.eq(pn), roundpack.exp_n.eq(exp_n),
            roundpack.sign.eq(side["sign"][0]), roundpack.kind.eq(side["kind"][0]),
            roundpack.invalid.eq(side["invalid"][0]),
        ]
        if self.approx:
            m.submodules.select = select = ResultSelect(fmt=fmt)
            self.parts["select"] = select
            m.d.comb += [
                select.exact_bits.eq(roundpack.bits), select.exact_flags.eq(roundpack.flags),
                select.hit.eq(side["hit"][0]), select.approx.eq(side["approx"][0]),
                select.sign.eq(side["sign"][0]),
            ]
            bits, flags, hit_out = select.bits, select.flags, side["hit"][0]
        else:
            bits, flags, hit_out = roundpack.bits, roundpack.flags, 0

        # ---- register "output" -------------------------------------------------------------
        bits = stage("output", "bits", bits, fmt.width)
        flags = stage("output", "flags", flags, FLAGS_LAYOUT)
        if self.approx:
            hit_out = stage("output", "hit", hit_out, 1)
        m.d.comb += [
            self.o.payload.bits.eq(bits),
            self.o.payload.flags.eq(flags),
            self.o.payload.hit.eq(hit_out),
        ]
        return m
