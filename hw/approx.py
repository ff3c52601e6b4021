"""The approximate path of the CFPU: the early hit decision and the late result select.

:class:`ApproxDecide` looks only at the operand fields and the configuration (a few comparators
and one exponent adder), early enough that :class:`canna.hw.cfpu.CFPU` can keep the significand
multiplier's operands still on a hit. :class:`ResultSelect` replaces the exact result by the
approximate one at the end of the pipeline. The rule is the golden model's
(``mul_bits`` in sim/golden.py).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from canna.spec.config import config_layout
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import FLAGS_LAYOUT, check_format, float_layout

from .layouts import exp_shape

__all__ = ["ApproxDecide", "ResultSelect", "qualifies"]


def checked_mask(m: Module, tuning_bits, fmt: FloatFormat):
    """The checked bits as a mask over the ``T = max_tuning_bits`` fraction bits below ``m1``
    (``frac[F - 1 - T : F - 1]``): its top ``tuning_bits`` bits set. One shifter of a constant;
    it also keeps the bits in place (no reversal), which a simulator evaluates in a few
    instructions where a per-bit thermometer costs dozens."""
    T = fmt.max_tuning_bits
    mask = Signal(max(T, 1), name="checked")
    m.d.comb += mask.eq(~(Const((1 << T) - 1, T) >> tuning_bits) if T else 0)
    return mask


def qualifies(m: Module, frac, mask, fmt: FloatFormat, name: str):
    """``m1`` followed by ``tuning_bits`` copies of itself (``mask`` from :func:`checked_mask`)."""
    F, T = fmt.frac_bits, fmt.max_tuning_bits
    m1 = frac[F - 1]
    ok = Signal(name=name)
    if T == 0:
        m.d.comb += ok.eq(1)
        return ok
    checked = Signal(T, name=f"{name}_checked")
    m.d.comb += checked.eq(frac[F - 1 - T:F - 1] & mask)  # the T bits after m1, first on top
    m.d.comb += ok.eq(Mux(m1, checked == mask, checked == 0))
    return ok


class ApproxDecide(wiring.Component):
    """Decide whether a product is an approximate hit, and compute its result.

    Members
    -------
    a, b : In(float_layout(fmt))
        The operands.
    config : In(config_layout(fmt))
        Enabled, tuning bits, policy (0 = ``b``, 1 = ``dual``).
    exp : In(exp_shape(fmt))
        ``max(ea, 1) + max(eb, 1) - bias`` from :class:`canna.hw.stages.Unpack` (shared: for
        normal operands it is the approximate result's exponent before adding ``m1``).
    hit : Out(1)
        The product runs approximately: the discarded operand qualifies, both operands are
        normal and the result exponent is normal.
    approx : Out(E + F)
        The approximate magnitude: result exponent and the kept operand's fraction (the sign is
        the exact path's).
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        super().__init__({
            "a": In(float_layout(fmt)), "b": In(float_layout(fmt)),
            "config": In(config_layout(fmt)), "exp": In(exp_shape(fmt)),
            "hit": Out(1), "approx": Out(fmt.exp_bits + fmt.frac_bits),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        F, emax = fmt.frac_bits, fmt.exp_max
        a, b, cfg = self.a, self.b, self.config

        mask = checked_mask(m, cfg.tuning_bits, fmt)
        q_a = qualifies(m, a.frac, mask, fmt, "q_a")
        q_b = qualifies(m, b.frac, mask, fmt, "q_b")
        normal = Signal()
        m.d.comb += normal.eq((a.exp != 0) & (a.exp != emax) & (b.exp != 0) & (b.exp != emax))

        # Policy b discards b's mantissa; dual discards b's when it qualifies, else a's.
        use_b = Signal()
        q = Signal()
        m.d.comb += [
            use_b.eq(~cfg.policy | q_b),
            q.eq(q_b | (cfg.policy & q_a)),
        ]
        x_m1 = Mux(use_b, b.frac[F - 1], a.frac[F - 1])
        o_frac = Mux(use_b, a.frac, b.frac)

        # Both operands normal: e_other + e_x - bias is the shared exponent sum.
        exp = Signal(exp_shape(fmt))
        m.d.comb += exp.eq(self.exp + x_m1)
        in_range = Signal()
        m.d.comb += in_range.eq((exp >= 1) & (exp <= emax - 1))

        m.d.comb += [
            self.hit.eq(cfg.enabled & q & normal & in_range),
            self.approx.eq(Cat(o_frac, exp[:fmt.exp_bits])),
        ]
        return m


class ResultSelect(wiring.Component):
    """Select the approximate result on a hit (no flags), else the exact one."""

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        w = fmt.width
        super().__init__({
            "exact_bits": In(w), "exact_flags": In(FLAGS_LAYOUT),
            "hit": In(1), "approx": In(w - 1), "sign": In(1),
            "bits": Out(w), "flags": Out(FLAGS_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.bits.eq(Mux(self.hit, Cat(self.approx, self.sign), self.exact_bits)),
            self.flags.eq(Mux(self.hit, 0, self.exact_flags)),
        ]
        return m
