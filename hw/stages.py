"""The exact datapath of the CFPU, in datapath order: classify/unpack -> significand multiply ->
normalise -> round/pack with flags.

Every stage is a small combinational :class:`wiring.Component`; :class:`canna.hw.cfpu.CFPU`
places the pipeline registers between them. Widths come from one
:class:`~canna.spec.formats.FloatFormat` (``E`` exponent bits, ``F`` fraction bits).

Subnormal operands are not normalised before the multiply: :class:`Unpack` passes a subnormal's
fraction with a hidden bit of 0 and the exponent of the smallest normal (``max(e, 1)``), and
:class:`SigMul` multiplies the significands as they are, so the product's leading one can be
anywhere in its ``2F + 2`` bits. :class:`Normalise` moves it to the top with one leading-zero
count over the whole product, and :class:`RoundPack` denormalises again for subnormal results,
rounds, produces the five flags (tininess detected after rounding) and the special results
(canonical quiet NaN).

This is where it differs from Berkeley HardFloat's multiplier, whose inputs are first converted
to its recoded format: that conversion (``rawFloatFromFN``) normalises a subnormal significand
with a leading-zero count of its fraction and extends the exponent range to hold it, so
HardFloat's significand product always lies in ``[1, 4)`` and needs at most a one-bit shift.
Here the leading-zero count sits once after the multiplier, over the product, instead of on
each operand before it. Both then round in one stage that also denormalises tiny results.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import FLAGS_LAYOUT, check_format, float_layout

from .layouts import KIND_FINITE, KIND_INF, KIND_NAN, KIND_ZERO, exp_shape

__all__ = ["Unpack", "SigMul", "Normalise", "RoundPack", "leading_zeros"]


class Unpack(wiring.Component):
    """Classify both operands and unpack them for the exact path.

    Members
    -------
    a, b : In(float_layout(fmt))
        The operands.
    sign : Out(1)
        Sign of the product.
    kind : Out(2)
        Result class: ``KIND_FINITE``, ``KIND_ZERO``, ``KIND_INF`` or ``KIND_NAN``.
    invalid : Out(1)
        Invalid operation (a signalling NaN operand, or infinity times zero).
    sig_a, sig_b : Out(F + 1)
        Significands with the hidden bit (0 for subnormals, which stay unnormalised).
    exp : Out(exp_shape(fmt))
        ``max(ea, 1) + max(eb, 1) - bias``: the product exponent before normalisation.
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        F = fmt.frac_bits
        super().__init__({
            "a": In(float_layout(fmt)), "b": In(float_layout(fmt)),
            "sign": Out(1), "kind": Out(2), "invalid": Out(1),
            "sig_a": Out(F + 1), "sig_b": Out(F + 1), "exp": Out(exp_shape(fmt)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        F, emax = fmt.frac_bits, fmt.exp_max

        cls = {}
        for name, x in (("a", self.a), ("b", self.b)):
            e_zero = Signal(name=f"{name}_exp_zero")
            e_max = Signal(name=f"{name}_exp_max")
            f_zero = Signal(name=f"{name}_frac_zero")
            m.d.comb += [e_zero.eq(x.exp == 0), e_max.eq(x.exp == emax), f_zero.eq(x.frac == 0)]
            cls[name] = dict(
                zero=e_zero & f_zero,
                inf=e_max & f_zero,
                nan=e_max & ~f_zero,
                snan=e_max & ~f_zero & ~x.frac[F - 1],
                sig=Cat(x.frac, ~e_zero),
                # max(e, 1): a subnormal has the exponent of the smallest normal.
                exp=Cat(x.exp[0] | e_zero, x.exp[1:]),
            )
        a, b = cls["a"], cls["b"]

        invalid = Signal()
        is_nan = Signal()
        is_inf = Signal()
        is_zero = Signal()
        m.d.comb += [
            invalid.eq(a["snan"] | b["snan"] | (a["inf"] & b["zero"]) | (a["zero"] & b["inf"])),
            is_nan.eq(a["nan"] | b["nan"] | invalid),
            is_inf.eq(a["inf"] | b["inf"]),
            is_zero.eq(a["zero"] | b["zero"]),
        ]
        with m.If(is_nan):
            m.d.comb += self.kind.eq(KIND_NAN)
        with m.Elif(is_inf):
            m.d.comb += self.kind.eq(KIND_INF)
        with m.Elif(is_zero):
            m.d.comb += self.kind.eq(KIND_ZERO)
        with m.Else():
            m.d.comb += self.kind.eq(KIND_FINITE)

        m.d.comb += [
            self.sign.eq(self.a.sign ^ self.b.sign),
            self.invalid.eq(invalid),
            self.sig_a.eq(a["sig"]),
            self.sig_b.eq(b["sig"]),
            self.exp.eq(a["exp"] + b["exp"] - fmt.bias),
        ]
        return m


class SigMul(wiring.Component):
    """The exact significand multiplier: ``p = sig_a * sig_b`` (``2F + 2`` bits).

    This is the block that approximate hits keep still: :class:`canna.hw.cfpu.CFPU` holds its
    operands on hits (and on special operands and idle cycles), so it does not switch.
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        F = fmt.frac_bits
        super().__init__({"sig_a": In(F + 1), "sig_b": In(F + 1), "p": Out(2 * F + 2)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.sig_a * self.sig_b)
        return m


def shift_left_within(value, amount, width: int):
    """``(value << amount)`` truncated to ``width`` bits, as a barrel shifter: one stage of
    constant shifts per bit of ``amount``. This is the hardware a synthesis tool makes of a
    variable shift anyway; written out, no intermediate is wider than ``width`` bits (a plain
    ``value << amount`` is ``len(value) + 2**len(amount) - 1`` bits wide, more than a
    simulator's 64-bit word)."""
    x = value[:width] if len(value) >= width else value.as_unsigned()
    for j, bit in enumerate(amount):
        x = Mux(bit, x.shift_left(1 << j)[:width], x)
    return x


def leading_zeros(m: Module, value, name: str = "lz"):
    """A leading-zero count of ``value`` as a balanced tree (``len(value)`` when it is zero)."""
    width = len(value)
    levels = max(1, (width - 1).bit_length())
    size = 1 << levels
    # Pad at the bottom with ones, so that padding never counts as leading zeros beyond `width`.
    padded = Cat(Const((1 << (size - width)) - 1, size - width), value) if size > width else value
    # Each node: (all_zero, count) over a power-of-two slice, count of its leading zeros.
    nodes = [(~padded[i], Const(0, 0)) for i in range(size)]
    # nodes[i] is bit i (LSB first); a node covering [lo, hi) is built from its halves.
    k = 0
    while len(nodes) > 1:
        nxt = []
        for j in range(0, len(nodes), 2):
            lo_zero, lo_cnt = nodes[j]
            hi_zero, hi_cnt = nodes[j + 1]
            cnt = Signal(k + 1, name=f"{name}_l{k}_{j // 2}")
            m.d.comb += cnt.eq(Mux(hi_zero, Cat(lo_cnt, Const(1, 1)), Cat(hi_cnt, Const(0, 1))))
            nxt.append((hi_zero & lo_zero, cnt))
        nodes = nxt
        k += 1
    all_zero, count = nodes[0]
    result = Signal(range(width + 1), name=name)
    m.d.comb += result.eq(Mux(all_zero, width, count))
    return result


class Normalise(wiring.Component):
    """Normalise the product: shift its leading one to bit ``2F + 1``.

    Members
    -------
    p : In(2F + 2)
        The significand product.
    exp : In(exp_shape(fmt))
        Its exponent as produced by :class:`Unpack`.
    pn : Out(2F + 2)
        ``p << lz``: the value is ``pn / 2^(2F+1) * 2^(exp_n - bias)``.
    exp_n : Out(exp_shape(fmt))
        ``exp + 1 - lz``.
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        F = fmt.frac_bits
        super().__init__({
            "p": In(2 * F + 2), "exp": In(exp_shape(fmt)),
            "pn": Out(2 * F + 2), "exp_n": Out(exp_shape(fmt)),
        })

    def elaborate(self, platform):
        m = Module()
        lz = leading_zeros(m, self.p)
        m.d.comb += [
            self.pn.eq(shift_left_within(self.p, lz, len(self.pn))),
            self.exp_n.eq(self.exp + 1 - lz),
        ]
        return m


class RoundPack(wiring.Component):
    """Denormalise, round to nearest even, pack, raise the flags, and select special results.

    Members
    -------
    pn, exp_n : In
        The normalised product from :class:`Normalise`.
    sign, kind, invalid : In
        From :class:`Unpack` (carried beside the exact path).
    bits : Out(W)
        The IEEE result (canonical quiet NaN for every NaN).
    flags : Out(FLAGS_LAYOUT)
        Inexact, underflow (tiny after rounding and inexact), overflow, infinite (0), invalid.
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        F = fmt.frac_bits
        super().__init__({
            "pn": In(2 * F + 2), "exp_n": In(exp_shape(fmt)),
            "sign": In(1), "kind": In(2), "invalid": In(1),
            "bits": Out(fmt.width), "flags": Out(FLAGS_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        F, E, emax = fmt.frac_bits, fmt.exp_bits, fmt.exp_max
        P = 2 * F + 2
        pn, exp_n = self.pn, self.exp_n

        # Denormalisation shift for subnormal results: 1 - exp_n, clipped at F + 2 (beyond it
        # not even the round bit is left, only the sticky bit).
        max_shift = F + 2
        shift = Signal(range(max_shift + 1))
        under = Signal(signed(len(exp_n) + 1))
        m.d.comb += under.eq(1 - exp_n)
        with m.If(exp_n >= 1):
            m.d.comb += shift.eq(0)
        with m.Elif(under >= max_shift):
            m.d.comb += shift.eq(max_shift)
        with m.Else():
            m.d.comb += shift.eq(under)

        shifted = Signal(P)
        lost = Signal()
        m.d.comb += [
            shifted.eq(pn >> shift),
            # the bits shifted out: those under a mask of `shift` ones
            lost.eq((pn & ~shift_left_within(Const((1 << P) - 1, P), shift, P)) != 0),
        ]
        q = shifted[F + 1:]                 # F + 1 bits, the hidden bit at F for normals
        round_bit = shifted[F]
        sticky = Signal()
        m.d.comb += sticky.eq((shifted[:F] != 0) | lost)
        round_up = Signal()
        inexact = Signal()
        m.d.comb += [
            round_up.eq(round_bit & (sticky | q[0])),
            inexact.eq(round_bit | sticky),
        ]

        # Packing: a normal result is (exp_n - 1) << F plus q with its hidden bit, so a rounding
        # carry bumps the exponent by itself; a subnormal one is q alone.
        e_pack = Signal(unsigned(len(exp_n)))
        m.d.comb += e_pack.eq(Mux(exp_n >= 1, exp_n - 1, 0))
        mag = Signal(len(exp_n) + F + 1)
        m.d.comb += mag.eq((e_pack << F) + q + round_up)
        overflow = Signal()
        m.d.comb += overflow.eq((mag >> F) >= emax)

        # Tininess after rounding: rounded to F + 1 bits with an unbounded exponent, the result is
        # still below the smallest normal. Only exp_n == 0 can round up out of it.
        carries = Signal()
        tiny = Signal()
        m.d.comb += [
            carries.eq((pn[F + 1:] == (1 << (F + 1)) - 1) & pn[F]),
            tiny.eq((exp_n < 0) | ((exp_n == 0) & ~carries)),
        ]

        finite = self.kind == KIND_FINITE
        sign_bit = self.sign
        with m.Switch(self.kind):
            with m.Case(KIND_ZERO):
                m.d.comb += self.bits.eq(Cat(Const(0, E + F), sign_bit))
            with m.Case(KIND_INF):
                m.d.comb += self.bits.eq(Cat(Const(emax << F, E + F), sign_bit))
            with m.Case(KIND_NAN):
                m.d.comb += self.bits.eq(fmt.canonical_nan)
            with m.Default():
                with m.If(overflow):
                    m.d.comb += self.bits.eq(Cat(Const(emax << F, E + F), sign_bit))
                with m.Else():
                    m.d.comb += self.bits.eq(Cat(mag[:E + F], sign_bit))

        m.d.comb += [
            self.flags.inexact.eq(finite & (inexact | overflow)),
            self.flags.underflow.eq(finite & tiny & inexact),
            self.flags.overflow.eq(finite & overflow),
            self.flags.infinite.eq(0),
            self.flags.invalid.eq(self.invalid),
        ]
        return m
