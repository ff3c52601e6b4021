"""Unit tests of the exact datapath stages (canna.hw.stages) in the Amaranth simulator."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from canna.hw.layouts import KIND_FINITE, KIND_INF, KIND_NAN, KIND_ZERO
from canna.spec.layouts import FLAGS_LAYOUT, float_layout
from canna.hw.stages import Normalise, RoundPack, SigMul, Unpack
from canna.sim import golden, vectors
from canna.spec.formats import BFLOAT16, BINARY16, BINARY32
from helpers import is_nan

SPECIALS = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x3F800000, 0x7F7FFFFF,
            0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC00001, 0x7FA00000, 0x7FFFFFFF]


def _ref_unpack(a, b, fmt=BINARY32):
    F, E = fmt.frac_bits, fmt.exp_bits
    def cls(x):
        e, f = (x >> F) & fmt.exp_max, x & fmt.frac_mask
        return dict(zero=e == 0 and f == 0, inf=e == fmt.exp_max and f == 0,
                    nan=is_nan(x, fmt),
                    snan=e == fmt.exp_max and f != 0 and not f >> (F - 1),
                    sig=f | ((e != 0) << F), exp=max(e, 1))
    ca, cb = cls(a), cls(b)
    invalid = ca["snan"] or cb["snan"] or (ca["inf"] and cb["zero"]) or (ca["zero"] and cb["inf"])
    if ca["nan"] or cb["nan"] or invalid:
        kind = KIND_NAN
    elif ca["inf"] or cb["inf"]:
        kind = KIND_INF
    elif ca["zero"] or cb["zero"]:
        kind = KIND_ZERO
    else:
        kind = KIND_FINITE
    return dict(sign=(a ^ b) >> (E + F) & 1, kind=kind, invalid=int(invalid), sig_a=ca["sig"],
                sig_b=cb["sig"], exp=ca["exp"] + cb["exp"] - fmt.bias)


def test_unpack_specials(comb_eval):
    dut = Unpack()
    rng = np.random.default_rng(11)
    ops = SPECIALS + [int(x) for x in rng.integers(0, 1 << 32, 40, dtype=np.uint64)]
    pairs = [(a, b) for a in ops for b in ops]
    got = comb_eval(dut, [{"a": a, "b": b} for a, b in pairs],
                    ["sign", "kind", "invalid", "sig_a", "sig_b", "exp"])
    for (a, b), g in zip(pairs, got):
        ref = _ref_unpack(a, b)
        # exp is signed in hardware
        assert g == ref, f"a={a:08X} b={b:08X}: got {g}, expected {ref}"
    print(f"Unpack: checked {len(pairs)} operand pairs")


def test_sigmul(comb_eval):
    rng = np.random.default_rng(12)
    xs = [0, 1, (1 << 24) - 1, 1 << 23] + [int(x) for x in rng.integers(0, 1 << 24, 200)]
    pairs = [(x, y) for x in xs[:20] for y in xs]
    got = comb_eval(SigMul(), [{"sig_a": x, "sig_b": y} for x, y in pairs], ["p"])
    for (x, y), g in zip(pairs, got):
        assert g["p"] == x * y, f"{x:06X} * {y:06X}"
    print(f"SigMul: checked {len(pairs)} products")


def test_normalise_leading_zeros(comb_eval):
    rng = np.random.default_rng(13)
    ps = [1 << k for k in range(48)] + [(1 << 48) - 1, 3] + [
        int(rng.integers(0, 1 << 62, dtype=np.uint64)) >> int(rng.integers(14, 62)) for _ in range(300)]
    ps = [p for p in ps if p]
    got = comb_eval(Normalise(), [{"p": p, "exp": 5} for p in ps], ["pn", "exp_n"])
    for p, g in zip(ps, got):
        lz = 48 - p.bit_length()
        assert g["pn"] == (p << lz) & ((1 << 48) - 1) and g["pn"] >> 47 == 1, f"p={p:012X}"
        assert g["exp_n"] == 5 + 1 - lz, f"p={p:012X}: exp_n {g['exp_n']}"
    print(f"Normalise: checked {len(ps)} products")


class ExactChain(wiring.Component):
    """Unpack -> SigMul -> Normalise -> RoundPack, combinational (test harness)."""

    def __init__(self, fmt):
        self.fmt = fmt
        super().__init__({"a": In(float_layout(fmt)), "b": In(float_layout(fmt)),
                          "bits": Out(fmt.width), "flags": Out(FLAGS_LAYOUT)})

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        m.submodules.unpack = u = Unpack(fmt=fmt)
        m.submodules.sigmul = s = SigMul(fmt=fmt)
        m.submodules.normalise = n = Normalise(fmt=fmt)
        m.submodules.roundpack = r = RoundPack(fmt=fmt)
        m.d.comb += [
            u.a.eq(self.a), u.b.eq(self.b),
            s.sig_a.eq(u.sig_a), s.sig_b.eq(u.sig_b),
            n.p.eq(s.p), n.exp.eq(u.exp),
            r.pn.eq(n.pn), r.exp_n.eq(n.exp_n), r.sign.eq(u.sign), r.kind.eq(u.kind),
            r.invalid.eq(u.invalid),
            self.bits.eq(r.bits), self.flags.eq(r.flags),
        ]
        return m


def _check_chain(comb_eval, fmt, a, b):
    got = comb_eval(ExactChain(fmt), [{"a": x, "b": y} for x, y in zip(a.tolist(), b.tolist())],
                    ["bits", "flags"])
    want = golden.mul_bits(a, b, fmt=fmt)
    bad = [(i, g) for i, g in enumerate(got)
           if g["bits"] != int(want.bits[i]) or g["flags"] != int(want.flags[i])]
    for i, g in bad[:10]:
        print(f"  {fmt.name} a={int(a[i]):08X} b={int(b[i]):08X}: expected {int(want.bits[i]):08X} "
              f"flags {int(want.flags[i]):02X}, got {g['bits']:08X} flags {g['flags']:02X}")
    print(f"exact chain {fmt.name}: checked {len(got)} vectors, {len(bad)} mismatches")
    assert not bad


def test_exact_chain_directed(comb_eval):
    """The pattern cross (every 5th pair) and the round/underflow boundaries, in exact mode."""
    a, b = vectors.pattern_cross()
    sel = np.arange(len(a)) % 5 == 0
    sp = np.array(SPECIALS, dtype=np.uint32)
    sa, sb = np.meshgrid(sp, sp, indexing="ij")
    _check_chain(comb_eval, BINARY32, np.concatenate([a[sel], sa.ravel()]),
                 np.concatenate([b[sel], sb.ravel()]))


def test_exact_chain_random(comb_eval):
    a, b = vectors.weighted_random(np.random.default_rng(14), 6000)
    _check_chain(comb_eval, BINARY32, a, b)


@pytest.mark.parametrize("fmt", [BFLOAT16, BINARY16], ids=lambda f: f.name)
def test_exact_chain_other_formats(comb_eval, fmt):
    """Same generator, other rows of the format table: exhaustive over a random operand set."""
    rng = np.random.default_rng(15)
    ops = np.concatenate([rng.integers(0, 1 << 16, 70, dtype=np.uint32),
                          np.array([0, 1, fmt.exp_max << fmt.frac_bits, fmt.canonical_nan,
                                    (fmt.exp_max << fmt.frac_bits) | 1, fmt.bias << fmt.frac_bits,
                                    fmt.frac_mask, fmt.sign_bit], dtype=np.uint32)])
    a, b = np.meshgrid(ops, ops, indexing="ij")
    dt = fmt.storage_dtype
    _check_chain(comb_eval, fmt, a.ravel().astype(dt), b.ravel().astype(dt))
