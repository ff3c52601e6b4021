"""The formal specification of the approximate path: the documented hit rule
(docs/arithmetic.md, "Approximate mode" and "Policies") as a small combinational model.

It is written from the rule's text, not from the RTL (:mod:`canna.hw.approx`): the checked bits
are found by shifting the fraction right by ``22 - t`` (the RTL builds a mask), the exponent is
one signed sum of the plain fields (the RTL shares :class:`~canna.hw.stages.Unpack`'s adder), and
the operands are sliced from the raw 32-bit words (the RTL reads them through its layouts).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal, signed

from canna.spec.config import config_layout
from canna.spec.formats import BINARY32

__all__ = ["HitRule", "legal_config", "CONFIGS"]

F = BINARY32.frac_bits            # 23
E = BINARY32.exp_bits             # 8
BIAS = BINARY32.bias              # 127
EMAX = BINARY32.exp_max           # 255
T_MAX = BINARY32.max_tuning_bits  # 22
CONFIG = config_layout(BINARY32)

#: The 47 legal configuration words: exact (all zero), and t = 0..22 under policies b and dual.
CONFIGS = 1 + 2 * (T_MAX + 1)


def legal_config(cfg):
    """The configuration word ``cfg`` (a :func:`config_layout` view) is one of the 47 legal ones."""
    return Mux(cfg.enabled, cfg.tuning_bits <= T_MAX, (cfg.tuning_bits == 0) & (cfg.policy == 0))


class HitRule(Elaboratable):
    """The hit rule: whether ``a * b`` under ``config`` is an approximate hit, and its result.

    Members
    -------
    a, b : Signal(32)
        The operands' bit patterns.
    config : Signal(config_layout())
        The configuration word.
    hit : Signal(1)
        The product runs approximately.
    bits : Signal(32)
        The approximate result (meaningful when ``hit``); its flags are all zero.
    """

    def __init__(self):
        self.a = Signal(32)
        self.b = Signal(32)
        self.config = Signal(CONFIG)
        self.hit = Signal()
        self.bits = Signal(32)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        t = cfg.tuning_bits

        def fields(x):
            return x[F + E], x[F:F + E], x[:F]          # sign, exponent, fraction

        sa, ea, fa = fields(self.a)
        sb, eb, fb = fields(self.b)

        def qualifies(f):
            # m1 and the t checked bits are the top t + 1 bits of f: all zeros or all ones.
            shift, top = Signal(range(F)), Signal(F)
            m.d.comb += [shift.eq(F - 1 - t), top.eq(f >> shift)]
            return (top == 0) | (top == (2 << t) - 1)

        q_a, q_b = Signal(), Signal()
        m.d.comb += [q_a.eq(qualifies(fa)), q_b.eq(qualifies(fb))]
        dual = cfg.policy
        # b is discarded under policy b, and under dual whenever b qualifies; else a.
        discard_b = Signal()
        qualified = Signal()
        m.d.comb += [discard_b.eq(~dual | q_b), qualified.eq(q_b | (dual & q_a))]
        e_x, f_x = Mux(discard_b, eb, ea), Mux(discard_b, fb, fa)
        e_o, f_o = Mux(discard_b, ea, eb), Mux(discard_b, fa, fb)

        normal = (ea != 0) & (ea != EMAX) & (eb != 0) & (eb != EMAX)
        exp = Signal(signed(E + 3))
        m.d.comb += exp.eq(e_o + e_x - BIAS + f_x[F - 1])
        m.d.comb += [
            self.hit.eq(cfg.enabled & qualified & normal & (exp >= 1) & (exp <= EMAX - 1)),
            self.bits.eq(Cat(f_o, exp[:E], sa ^ sb)),
        ]
        return m
