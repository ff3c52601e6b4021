"""Exact mode of the golden multiplier (and the accumulator's add) against Berkeley SoftFloat."""
import os

import numpy as np
import pytest

from canna.sim import golden, softfloat_ref
from canna.spec.config import CFPUConfig
from canna.sim.vectors import pattern_cross, weighted_random, weighted_random_add
from helpers import is_nan, seed

RANDOM_VECTORS = int(os.environ.get("CANNA_SOFTFLOAT_VECTORS", "1000000"))
SEED = seed(20261125)


def check_against_softfloat(a, b, got_bits, got_flags, ref_bits, ref_flags, what):
    """Bit-exact comparison; every NaN from SoftFloat must be our canonical NaN."""
    same = (got_bits == ref_bits) | (is_nan(ref_bits) & (got_bits == 0x7FC00000))
    bad = ~same | (got_flags != ref_flags)
    n_bad = int(bad.sum())
    print(f"{what}: {a.size} vectors checked against SoftFloat, {n_bad} mismatches")
    if n_bad:
        i = np.flatnonzero(bad)[:5]
        rows = [f"{a[j]:08X} * {b[j]:08X}: softfloat {ref_bits[j]:08X}/{ref_flags[j]:02X}, "
                f"golden {got_bits[j]:08X}/{got_flags[j]:02X}" for j in i]
        pytest.fail(f"{n_bad} mismatches (seed {SEED}), first:\n" + "\n".join(rows))


def test_pattern_cross_matches_softfloat():
    a, b = pattern_cross()
    assert a.size >= 46_464
    got = golden.mul_bits(a, b)
    ref_bits, ref_flags = softfloat_ref.f32_mul(a, b)
    check_against_softfloat(a, b, got.bits, got.flags, ref_bits, ref_flags, "f32_mul pattern cross")
    assert not got.hit.any()


def test_weighted_random_matches_softfloat():
    a, b = weighted_random(np.random.default_rng(SEED), RANDOM_VECTORS)
    got = golden.mul_bits(a, b)
    ref_bits, ref_flags = softfloat_ref.f32_mul(a, b)
    check_against_softfloat(a, b, got.bits, got.flags, ref_bits, ref_flags,
                            f"f32_mul weighted random (seed {SEED})")
    # The weighting must really reach the hard cases, or the test proves little.
    subnormal_out = ((got.bits >> 23) & 0xFF == 0) & ((got.bits & 0x7FFFFF) != 0)
    assert subnormal_out.sum() > RANDOM_VECTORS // 100
    assert (got.flags & golden.FLAG_UNDERFLOW).any() and (got.flags & golden.FLAG_OVERFLOW).any()
    assert (got.flags & golden.FLAG_INVALID).any()


def test_disabled_approximation_is_exact_mode():
    a, b = pattern_cross()
    exact = golden.mul_bits(a, b)
    for t in (0, 7, 22):
        off = golden.mul_bits(a, b, CFPUConfig(enabled=False, tuning_bits=t, policy="dual"))
        assert np.array_equal(off.bits, exact.bits) and np.array_equal(off.flags, exact.flags)
    print(f"approximation disabled == exact mode on {a.size} vectors x 3 configs")


def test_float_wrapper_and_shapes():
    x = np.float32([[1.5], [-2.0]])
    y = np.float32([3.0, 0.25, np.inf])
    r = golden.mul(x, y)
    assert r.bits.shape == (2, 3) and r.bits.dtype == np.float32
    assert np.array_equal(r.bits, x * y)
    print("broadcast float32 wrapper checked on 6 products")


def test_add_pattern_cross_matches_softfloat():
    a, b = pattern_cross()
    got = golden.add_bits(a, b)
    ref_bits, ref_flags = softfloat_ref.f32_add(a, b)
    check_against_softfloat(a, b, got.bits, got.flags, ref_bits, ref_flags, "f32_add pattern cross")


def test_add_weighted_random_matches_softfloat():
    a, b = weighted_random_add(np.random.default_rng(SEED + 1), RANDOM_VECTORS)
    got = golden.add_bits(a, b)
    ref_bits, ref_flags = softfloat_ref.f32_add(a, b)
    check_against_softfloat(a, b, got.bits, got.flags, ref_bits, ref_flags,
                            f"f32_add weighted random (seed {SEED + 1})")
    assert (got.bits == 0).sum() > RANDOM_VECTORS // 100     # exact cancellations happen
    assert (got.flags & golden.FLAG_OVERFLOW).any() and (got.flags & golden.FLAG_INVALID).any()


def test_fast_add_equals_add_bits():
    """The NumPy float32 add used by the reference matmul is the same function as add_bits."""
    a, b = weighted_random_add(np.random.default_rng(SEED + 2), 300_000)
    fast = golden.add(a.view(np.float32), b.view(np.float32)).view(np.uint32)
    exact = golden.add_bits(a, b).bits
    print(f"float32 add == add_bits on {a.size} vectors")
    assert np.array_equal(fast, exact)


@pytest.mark.parametrize("a, b, message", [
    (np.float32([1.0]), np.uint32([1]), "expected uint32"),
    (np.uint32([1, 2]), np.uint32([1, 2, 3]), "do not broadcast"),
    (np.int64([1]), np.uint32([1]), "expected uint32"),
])
def test_bad_operands_raise_clear_errors(a, b, message):
    with pytest.raises((TypeError, ValueError), match=message):
        golden.mul_bits(a, b)


def test_bad_config_raises_clear_errors():
    with pytest.raises(ValueError, match="tuning_bits must be in 0..22"):
        CFPUConfig.approx(23)
    with pytest.raises(ValueError, match="tuning_bits must be in 0..22"):
        CFPUConfig.approx(-1)
    with pytest.raises(TypeError, match="integer"):
        CFPUConfig.approx(2.5)
    with pytest.raises(ValueError, match="unknown policy 'a'"):
        CFPUConfig.approx(3, "a")
    with pytest.raises(TypeError, match="CFPUConfig"):
        golden.mul_bits(np.uint32([1]), np.uint32([1]), {"tuning_bits": 3})
