"""The lanes' accumulator: an IEEE-754 adder, bit-exact with the golden model's ``add_bits``
(sim/golden.py).

Datapath (one combinational block, :class:`FAdd`)::

    a, b --> classify / swap so that x has the larger magnitude
         --> align y to x with guard, round and sticky bits (shift clipped at F+5)
         --> add or subtract significands
         --> normalise: carry -> shift right 1 (sticky kept); cancellation -> shift left by the
             leading-zero count, but not below the smallest exponent (the result is then
             subnormal and exact)
         --> round to nearest even, pack; overflow -> infinity; specials -> canonical NaN / inf

Three extra bits are enough: a right shift of two or more leaves at most one bit of
cancellation to renormalise, and a shift of 0 or 1 loses nothing. Widths come from one
:class:`~canna.spec.formats.FloatFormat`.

:class:`FAddUnit` wraps it in a stream interface (``stages`` 0 or 1 output register) for
standalone verification; the lane uses :class:`FAdd` directly in its accumulate loop.
"""
from __future__ import annotations

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import FLAGS_LAYOUT, check_format, float_layout

from .stages import leading_zeros

__all__ = ["FAdd", "FAddUnit", "add_input_layout", "add_output_layout"]


class FAdd(wiring.Component):
    """Combinational binary adder ``a + b`` with flags.

    Members
    -------
    a, b : In(float_layout(fmt))
    bits : Out(fmt.width)
        The sum (canonical NaN for every NaN result).
    flags : Out(FLAGS_LAYOUT)
        Inexact, underflow (tininess after rounding), overflow, invalid; infinite is never set.
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        super().__init__({
            "a": In(float_layout(fmt)), "b": In(float_layout(fmt)),
            "bits": Out(fmt.width), "flags": Out(FLAGS_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        F, E, emax = fmt.frac_bits, fmt.exp_bits, fmt.exp_max
        W = F + 4                     # significand with hidden bit and guard/round/sticky
        a, b = self.a, self.b

        # ---- classification ------------------------------------------------------------
        def classify(x, name):
            e_zero, e_max, f_zero = x.exp == 0, x.exp == emax, x.frac == 0
            return dict(inf=e_max & f_zero, nan=e_max & ~f_zero, snan=e_max & ~f_zero & ~x.frac[F - 1],
                        sig=Cat(Const(0, 3), x.frac, ~e_zero), exp=Cat(x.exp[0] | e_zero, x.exp[1:]))

        ca, cb = classify(a, "a"), classify(b, "b")
        invalid = Signal()
        is_nan = Signal()
        is_inf = Signal()
        inf_sign = Signal()
        m.d.comb += [
            invalid.eq(ca["snan"] | cb["snan"] | (ca["inf"] & cb["inf"] & (a.sign != b.sign))),
            is_nan.eq(ca["nan"] | cb["nan"] | invalid),
            is_inf.eq(ca["inf"] | cb["inf"]),
            inf_sign.eq(Mux(ca["inf"], a.sign, b.sign)),
        ]

        # ---- swap: x is the operand of larger magnitude -----------------------------------
        a_big = Signal()
        m.d.comb += a_big.eq(Cat(a.frac, a.exp) >= Cat(b.frac, b.exp))
        sig_x, sig_y = Signal(W), Signal(W)
        exp_x, exp_y = Signal(E), Signal(E)
        sign_x = Signal()
        m.d.comb += [
            sig_x.eq(Mux(a_big, ca["sig"], cb["sig"])), sig_y.eq(Mux(a_big, cb["sig"], ca["sig"])),
            exp_x.eq(Mux(a_big, ca["exp"], cb["exp"])), exp_y.eq(Mux(a_big, cb["exp"], ca["exp"])),
            sign_x.eq(Mux(a_big, a.sign, b.sign)),
        ]

        # ---- alignment with sticky ---------------------------------------------------------
        diff = Signal(E)
        shift = Signal(range(F + 6))
        m.d.comb += [diff.eq(exp_x - exp_y), shift.eq(Mux(diff > F + 5, F + 5, diff))]
        shifted = Signal(W)
        lost = Signal()
        m.d.comb += [
            shifted.eq(sig_y >> shift),
            # Shifting back clears exactly the bits that were shifted out.
            lost.eq((shifted << shift)[:W] != sig_y),
        ]
        aligned = Signal(W)
        m.d.comb += aligned.eq(shifted | lost)

        # ---- add / subtract --------------------------------------------------------------------
        raw = Signal(W + 1)
        m.d.comb += raw.eq(Mux(a.sign == b.sign, sig_x + aligned, sig_x - aligned))

        # ---- normalise -------------------------------------------------------------------------
        carry = raw[W]
        r1 = Signal(W)
        exp1 = Signal(E + 1)
        m.d.comb += [
            r1.eq(Mux(carry, raw[1:] | raw[0], raw[:W])),
            exp1.eq(exp_x + carry),
        ]
        lz = leading_zeros(m, r1, name="add_lz")
        left = Signal(range(W + 1))
        m.d.comb += left.eq(Mux(lz < exp1, lz, exp1 - 1))
        r2 = Signal(W)
        exp2 = Signal(E + 1)
        m.d.comb += [r2.eq(r1 << left), exp2.eq(exp1 - left)]

        # ---- round to nearest even and pack ------------------------------------------------
        low = r2[:3]
        q0 = r2[3:]
        round_up = (low[2] & (low[:2] != 0)) | (low[2] & (low[:2] == 0) & q0[0])
        q = Signal(F + 2)
        m.d.comb += q.eq(q0 + round_up)
        inexact = low != 0
        normal = q[F:] != 0
        mag = Signal(E + F + 1)
        m.d.comb += mag.eq(Mux(normal, ((exp2 - 1) << F) + q, q))
        overflow = Signal()
        m.d.comb += overflow.eq(mag[F:] >= emax)
        tiny = ~normal & (exp2 == 1)
        zero = r2 == 0
        sign = Signal()
        m.d.comb += sign.eq(Mux(zero, a.sign & b.sign, sign_x))

        finite = ~is_nan & ~is_inf
        with m.If(is_nan):
            m.d.comb += self.bits.eq(fmt.canonical_nan)
        with m.Elif(is_inf):
            m.d.comb += self.bits.eq(Cat(Const(0, F), Const(emax, E), inf_sign))
        with m.Elif(overflow):
            m.d.comb += self.bits.eq(Cat(Const(0, F), Const(emax, E), sign))
        with m.Else():
            m.d.comb += self.bits.eq(Cat(mag[:E + F], sign))
        m.d.comb += [
            self.flags.inexact.eq(finite & (inexact | overflow)),
            self.flags.underflow.eq(finite & tiny & inexact),
            self.flags.overflow.eq(finite & overflow),
            self.flags.invalid.eq(invalid),
        ]
        return m


def add_input_layout(fmt: FloatFormat) -> data.StructLayout:
    return data.StructLayout({"a": float_layout(fmt), "b": float_layout(fmt)})


def add_output_layout(fmt: FloatFormat) -> data.StructLayout:
    return data.StructLayout({"bits": fmt.width, "flags": FLAGS_LAYOUT})


class FAddUnit(wiring.Component):
    """:class:`FAdd` with stream ports, for standalone verification and synthesis.

    Parameters
    ----------
    fmt : FloatFormat
    stages : int
        0 (combinational, ``o.valid = i.valid``) or 1 (an output register). Latency = stages.

    Members
    -------
    i : In(stream.Signature(add_input_layout(fmt)))
    o : Out(stream.Signature(add_output_layout(fmt)))
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32, stages: int = 1):
        self.fmt = check_format(fmt)
        stages = operator.index(stages)
        if stages not in (0, 1):
            raise ValueError(f"stages must be 0 or 1, got {stages}")
        self.stages = stages
        super().__init__({
            "i": In(stream.Signature(add_input_layout(fmt))),
            "o": Out(stream.Signature(add_output_layout(fmt))),
        })

    @property
    def latency(self) -> int:
        return self.stages

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FAdd(fmt=self.fmt)
        m.d.comb += [add.a.eq(self.i.payload.a), add.b.eq(self.i.payload.b)]
        if self.stages == 0:
            m.d.comb += [
                self.o.payload.bits.eq(add.bits), self.o.payload.flags.eq(add.flags),
                self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
            ]
        else:
            advance = ~self.o.valid | self.o.ready
            m.d.comb += self.i.ready.eq(advance)
            with m.If(advance):
                m.d.sync += [
                    self.o.valid.eq(self.i.valid),
                    self.o.payload.bits.eq(add.bits), self.o.payload.flags.eq(add.flags),
                ]
        return m
