"""Approximate mode of the golden multiplier: the hit rule, the error bound, the policy order and
the exponent-range fallback, checked against an independent scalar restatement of the rule."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from canna.sim import golden
from canna.spec.config import CFPUConfig
from canna.sim.vectors import hit_pattern_fractions, pattern_cross, weighted_random

bits32 = st.integers(0, 2**32 - 1)
tuning = st.integers(0, 22)
policies = st.sampled_from(["b", "dual"])


def fields(x):
    return x >> 31, (x >> 23) & 0xFF, x & 0x7FFFFF


def qualifies_scalar(x, t):
    """The paper's rule in words: m1 = 0 and the next t bits all 0, or m1 = 1 and all 1."""
    frac = format(x & 0x7FFFFF, "023b")
    m1, checked = frac[0], frac[1:1 + t]
    return checked == m1 * t


def is_normal(x):
    return 1 <= ((x >> 23) & 0xFF) <= 254


def expected_scalar(a, b, t, policy):
    """(hit, result bits on a hit) by the issue's definition."""
    if qualifies_scalar(b, t):
        x, other = b, a
    elif policy == "dual" and qualifies_scalar(a, t):
        x, other = a, b
    else:
        return False, None
    if not (is_normal(a) and is_normal(b)):
        return False, None
    s_o, e_o, f_o = fields(other)
    _, e_x, f_x = fields(x)
    exp = e_o + e_x - 127 + (f_x >> 22)
    if not 1 <= exp <= 254:
        return False, None
    return True, ((s_o ^ (x >> 31)) << 31) | (exp << 23) | f_o


def as_f64(x):
    return float(np.uint32(x).view(np.float32))


def test_hit_rule_matches_scalar_restatement():
    examples = []

    @settings(max_examples=3000, deadline=None)
    @given(a=bits32, b=bits32, t=tuning, policy=policies)
    def prop(a, b, t, policy):
        examples.append(1)
        r = golden.mul_bits(np.uint32([a]), np.uint32([b]), CFPUConfig.approx(t, policy))
        hit, bits = expected_scalar(a, b, t, policy)
        assert bool(r.hit[0]) == hit
        if hit:
            assert int(r.bits[0]) == bits and int(r.flags[0]) == 0
        else:
            exact = golden.mul_bits(np.uint32([a]), np.uint32([b]))
            assert int(r.bits[0]) == int(exact.bits[0]) and r.flags[0] == exact.flags[0]
    prop()
    print(f"hit rule vs the scalar restatement: {len(examples)} hypothesis examples")


def qualifying_fraction(draw, t):
    """A fraction that qualifies at ``t``: m1, then t copies of m1, then anything."""
    m1 = draw(st.integers(0, 1))
    rest = draw(st.integers(0, (1 << (22 - t)) - 1))
    return (((1 << (t + 1)) - 1) * m1 << (22 - t)) | rest


@st.composite
def hit_pairs(draw):
    """(a, b, t): normal operands in a range where any qualifying product stays normal, b's
    fraction qualifying at t, a's qualifying or not."""
    t = draw(tuning)
    ea, eb = draw(st.integers(64, 190)), draw(st.integers(64, 190))
    sa, sb = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    fa = qualifying_fraction(draw, t) if draw(st.booleans()) else draw(st.integers(0, 2**23 - 1))
    fb = qualifying_fraction(draw, t)
    return (sa << 31) | (ea << 23) | fa, (sb << 31) | (eb << 23) | fb, t


def test_relative_error_bound_property():
    """On every hit, |approx - exact| / |exact| <= approx_error_bound(t) < 2^-(t+1)."""
    examples = []

    @settings(max_examples=2000, deadline=None)
    @given(pair=hit_pairs(), swap=st.booleans())
    def prop(pair, swap):
        a, b, t = pair
        if swap:  # dual's second case: only a may qualify
            a, b = b, a
        r = golden.mul_bits(np.uint32([a]), np.uint32([b]), CFPUConfig.approx(t, "dual"))
        assert r.hit[0]
        exact = as_f64(a) * as_f64(b)
        err = abs(as_f64(r.bits[0]) - exact) / abs(exact)
        assert err <= golden.approx_error_bound(t) < 2.0 ** -(t + 1)
        examples.append(1)
    prop()
    print(f"error bound: {len(examples)} hypothesis hits within approx_error_bound(t)")


def _hit_heavy_operands(seed, n):
    """Normal operands whose fractions qualify at many tuning-bit levels."""
    rng = np.random.default_rng(seed)
    exps = rng.integers(90, 165, (2, n)).astype(np.uint32)
    a = (exps[0] << 23) | hit_pattern_fractions(rng, n) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    b = (exps[1] << 23) | hit_pattern_fractions(rng, n) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    return a, b


@pytest.mark.parametrize("policy", ["b", "dual"])
def test_hit_rule_vectorised_sweep(policy):
    """Every tuning bit 0..22 on 20k hit-heavy pairs plus the pattern cross, vs the scalar rule."""
    a, b = _hit_heavy_operands(7, 20_000)
    pa, pb = pattern_cross()
    a, b = np.concatenate([a, pa[::7]]), np.concatenate([b, pb[::7]])
    checked = 0
    for t in range(23):
        r = golden.mul_bits(a, b, CFPUConfig.approx(t, policy))
        for i in range(0, a.size, 97):  # scalar model on a deterministic subsample
            hit, bits = expected_scalar(int(a[i]), int(b[i]), t, policy)
            assert bool(r.hit[i]) == hit, (hex(a[i]), hex(b[i]), t)
            if hit:
                assert int(r.bits[i]) == bits
            checked += 1
        assert r.hit.any(), f"no hits at t={t}: the sweep would prove nothing"
    print(f"policy {policy}: {checked} scalar checks over 23 tuning-bit levels")


@pytest.mark.parametrize("policy", ["b", "dual"])
def test_relative_error_bound_holds_and_is_attained(policy):
    a, b = _hit_heavy_operands(11, 200_000)
    total_hits = 0
    for t in range(23):
        r = golden.mul_bits(a, b, CFPUConfig.approx(t, policy))
        h = r.hit
        exact = a[h].view(np.float32).astype(np.float64) * b[h].view(np.float32).astype(np.float64)
        approx = r.bits[h].view(np.float32).astype(np.float64)
        err = np.abs(approx - exact) / np.abs(exact)
        bound = golden.approx_error_bound(t)
        assert err.max() <= bound, (t, err.max(), bound)
        assert bound < 2.0 ** -(t + 1)
        total_hits += int(h.sum())
    print(f"policy {policy}: error bound checked on {total_hits} hits over t = 0..22")


@pytest.mark.parametrize("t", range(23))
def test_error_bound_is_attained(t):
    """The two worst cases of approx_error_bound, built explicitly, reach it exactly."""
    ulp = 2 ** -23
    one = np.float32(1.5).view(np.uint32) & ~np.uint32(0x7FFFFF)  # exponent of 1.0, fraction 0
    worst0 = one | np.uint32((1 << (22 - t)) - 1)                  # m1 = 0, then t zeros, rest ones
    worst1 = one | np.uint32(((1 << (t + 1)) - 1) << (22 - t))     # m1 = 1, then t ones, rest zeros
    a = np.float32(1.0).view(np.uint32)
    errs = []
    for w in (worst0, worst1):
        r = golden.mul_bits(np.uint32([a]), np.uint32([w]), CFPUConfig.approx(t))
        assert r.hit[0]
        x = as_f64(w)
        errs.append(abs(as_f64(r.bits[0]) - x) / x)
    assert max(errs) == pytest.approx(golden.approx_error_bound(t), rel=1e-12)
    assert errs[0] < 2.0 ** -(t + 1) and errs[1] < 2.0 ** -(t + 1) + ulp
    print(f"t={t}: the 2 worst cases reach the bound {golden.approx_error_bound(t):.6e}")


@pytest.mark.parametrize("t", [-1, 23, 1.5])
def test_error_bound_needs_valid_tuning_bits(t):
    with pytest.raises((ValueError, TypeError), match="tuning_bits|integer"):
        golden.approx_error_bound(t)


def test_exponent_range_fallback():
    """A qualifying product whose exponent leaves 1..254 runs exactly (never a wrong hit)."""
    examples = []

    @settings(max_examples=500, deadline=None)
    @given(ea=st.integers(1, 254), eb=st.integers(1, 254), fa=st.integers(0, 2**23 - 1),
           t=tuning, m1=st.integers(0, 1), sign=st.integers(0, 1))
    def prop(ea, eb, fa, t, m1, sign):
        fb = ((1 << 23) - 1) if m1 else 0           # qualifies at every t
        a = (sign << 31) | (ea << 23) | fa
        b = (eb << 23) | fb
        r = golden.mul_bits(np.uint32([a]), np.uint32([b]), CFPUConfig.approx(t))
        in_range = 1 <= ea + eb - 127 + m1 <= 254
        assert bool(r.hit[0]) == in_range
        if not in_range:
            exact = golden.mul_bits(np.uint32([a]), np.uint32([b]))
            assert r.bits[0] == exact.bits[0] and r.flags[0] == exact.flags[0]
        examples.append(in_range)
    prop()
    print(f"exponent-range fallback: {len(examples)} hypothesis examples, "
          f"{len(examples) - sum(examples)} out of range and exact")


def test_policy_order_property():
    """dual: when b qualifies, b's mantissa goes (the result keeps a's fraction); when only a
    qualifies, a's goes (the result keeps b's)."""
    examples = []

    @settings(max_examples=1000, deadline=None)
    @given(pair=hit_pairs(), swap=st.booleans())
    def prop(pair, swap):
        a, b, t = pair
        if swap:  # b qualifies for sure; swapped, a does and b may not
            a, b = b, a
        r = golden.mul_bits(np.uint32([a]), np.uint32([b]), CFPUConfig.approx(t, "dual"))
        if golden.qualifies(np.uint32([b & 0x7FFFFF]), t)[0]:
            keeps = a
        elif golden.qualifies(np.uint32([a & 0x7FFFFF]), t)[0]:
            keeps = b
        else:
            raise AssertionError("hit_pairs gave no qualifying operand")
        assert r.hit[0] and int(r.bits[0]) & 0x7FFFFF == keeps & 0x7FFFFF
        examples.append(1)
    prop()
    print(f"dual policy order: {len(examples)} hypothesis examples")


def test_policy_order_dual():
    """dual checks b first: when both qualify, b's mantissa goes; only when b does not does a's."""
    a, b = _hit_heavy_operands(3, 100_000)
    checked = 0
    for t in (0, 1, 4, 9, 22):
        cfg_b, cfg_d = CFPUConfig.approx(t, "b"), CFPUConfig.approx(t, "dual")
        rb = golden.mul_bits(a, b, cfg_b)
        rd = golden.mul_bits(a, b, cfg_d)
        rswap = golden.mul_bits(b, a, cfg_b)      # a as the checked operand
        qb = golden.qualifies(b & 0x7FFFFF, t)
        assert np.array_equal(rd.bits[qb], rb.bits[qb])
        assert np.array_equal(rd.hit[qb], rb.hit[qb])
        only_a = ~qb
        assert np.array_equal(rd.bits[only_a], rswap.bits[only_a])
        assert np.array_equal(rd.hit[only_a], rswap.hit[only_a])
        assert rd.hit.sum() >= rb.hit.sum()
        checked += a.size
    print(f"dual policy order checked on {checked} products")


def test_specials_and_subnormals_never_hit():
    a, b = weighted_random(np.random.default_rng(5), 300_000)
    normal = ((a >> 23) & 0xFF >= 1) & ((a >> 23) & 0xFF <= 254) & ((b >> 23) & 0xFF >= 1) & ((b >> 23) & 0xFF <= 254)
    for policy in ("b", "dual"):
        r = golden.mul_bits(a, b, CFPUConfig.approx(0, policy))
        assert not r.hit[~normal].any()
        assert r.hit[normal].mean() > 0.5
    print(f"{2 * a.size} products: no hit with a subnormal, zero, inf or NaN operand")


def test_more_tuning_bits_never_add_hits():
    a, b = _hit_heavy_operands(13, 100_000)
    for policy in ("b", "dual"):
        prev = golden.mul_bits(a, b, CFPUConfig.approx(0, policy)).hit
        for t in range(1, 23):
            cur = golden.mul_bits(a, b, CFPUConfig.approx(t, policy)).hit
            assert not (cur & ~prev).any(), t
            prev = cur
    print(f"hit sets nested over t = 0..22 for {a.size} pairs, both policies")


def test_worked_example_from_readme():
    """The README's example: 3.0 * 1.25 with t = 1: b = 1.25 has m1 = 0, next bit 1 -> exact;
    b = 1.125 (m1 = 0, next bit 0) -> hit, result 3.0 * 1.0 = 3.0."""
    cfg = CFPUConfig.approx(1)
    r = golden.mul(np.float32([3.0, 3.0]), np.float32([1.25, 1.125]), cfg)
    assert r.hit.tolist() == [False, True]
    assert r.bits.tolist() == [3.75, 3.0]
    r = golden.mul(np.float32([3.0]), np.float32([1.875]), cfg)   # m1 = 1, next bit 1 -> 2.0
    assert r.hit.tolist() == [True] and r.bits.tolist() == [6.0]
