"""Operand generators shared by every regression (golden vs SoftFloat, RTL vs golden).

* :func:`pattern_cross` -- a directed cross in the spirit of TestFloat's level 1: every pair of
  a fixed set of "interesting" binary32 numbers (exponent classes x significand patterns x signs).
* :func:`weighted_random` -- seeded random pairs weighted toward subnormals, the edges of the
  exponent range, products that land on the underflow/overflow boundaries, specials, and the
  fraction patterns the approximate hit rule looks at.
"""
from __future__ import annotations

import numpy as np

from canna.spec.config import MAX_TUNING_BITS

__all__ = ["PATTERN_EXPONENTS", "PATTERN_FRACTIONS", "pattern_numbers", "pattern_cross",
           "weighted_random", "hit_pattern_fractions"]

# Exponent classes: zero/subnormal, smallest normals, around 1.0 (bias 127), the range where
# products of two operands under- or overflow, the largest normals, and inf/NaN (255).
PATTERN_EXPONENTS = (0, 1, 2, 22, 23, 24, 64, 100, 103, 104, 125, 126, 127, 128, 129,
                     150, 151, 152, 190, 253, 254, 255)

# Significand patterns: empty and full, single low/high bits, the rounding boundaries, and the
# prefixes that the hit rule checks (m1 = 1 then zeros, m1 = 0 then ones, ...).
PATTERN_FRACTIONS = (0x000000, 0x000001, 0x000002, 0x7FFFFF, 0x7FFFFE, 0x400000,
                     0x3FFFFF, 0x200000, 0x600000, 0x0FF00F, 0x1FFFFF, 0x7C0001)


def pattern_numbers() -> np.ndarray:
    """The directed operand set: every exponent class with every significand pattern, signs
    alternating so that each class appears with both signs across the set (264 numbers)."""
    values = []
    for i, e in enumerate(PATTERN_EXPONENTS):
        for j, f in enumerate(PATTERN_FRACTIONS):
            s = (i + j) & 1
            values.append((s << 31) | (e << 23) | f)
    return np.array(values, dtype=np.uint32)


def pattern_cross() -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs of :func:`pattern_numbers` (264^2 = 69,696 pairs)."""
    n = pattern_numbers()
    a, b = np.meshgrid(n, n, indexing="ij")
    return a.ravel(), b.ravel()


def hit_pattern_fractions(rng: np.random.Generator, n: int,
                          max_tuning_bits: int = MAX_TUNING_BITS) -> np.ndarray:
    """Fractions that qualify (or just miss qualifying) for a random number of tuning bits: m1
    followed by k copies of itself, then random bits. Exercises the hit rule at every t."""
    k = rng.integers(0, max_tuning_bits + 1, n)
    m1 = rng.integers(0, 2, n).astype(np.int64)
    tail_bits = MAX_TUNING_BITS - k   # binary32: 22 fraction bits after m1
    rand = rng.integers(0, 1 << MAX_TUNING_BITS, n, dtype=np.int64) & ((np.int64(1) << tail_bits) - 1)
    prefix = np.where(m1 == 1, ((np.int64(1) << (k + 1)) - 1) << tail_bits, 0)
    # Flip the bit just after the prefix sometimes, so that "just misses" are common too.
    flip = (rng.random(n) < 0.5) & (tail_bits > 0)
    rand = np.where(flip, rand ^ (np.int64(1) << np.maximum(tail_bits - 1, 0)), rand)
    return (prefix | rand).astype(np.uint32)


def _random_fraction(rng, n):
    kind = rng.random(n)
    uniform = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    low = rng.integers(0, 16, n, dtype=np.uint32)
    high = (rng.integers(0, 16, n, dtype=np.uint32) << 19) | (uniform & 0x7)
    hitp = hit_pattern_fractions(rng, n)
    return np.select([kind < 0.4, kind < 0.55, kind < 0.7], [uniform, low, high], hitp).astype(np.uint32)


def weighted_random(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded random operand pairs (uint32 bit patterns), weighted toward hard cases."""
    ea = np.empty(n, dtype=np.int64)
    kind = rng.random(n)
    uniform = rng.integers(0, 256, n)
    near_zero = rng.integers(0, 4, n)
    near_top = rng.integers(250, 256, n)
    around_one = rng.integers(97, 158, n)
    ea = np.select([kind < 0.25, kind < 0.4, kind < 0.5], [uniform, near_zero, near_top], around_one)
    # b's exponent: independent, or chosen so the product lands on the subnormal or overflow
    # boundary (ea + eb - 127 close to 0 or 254), where rounding and tininess are subtle.
    kind_b = rng.random(n)
    delta = rng.integers(-3, 4, n)
    to_underflow = np.clip(127 - ea + delta, 0, 255)
    to_overflow = np.clip(127 + 254 - ea + delta, 0, 255)
    eb = np.select([kind_b < 0.2, kind_b < 0.4, kind_b < 0.55],
                   [to_underflow, to_overflow, rng.integers(0, 256, n)], rng.integers(97, 158, n))
    a = (ea.astype(np.uint32) << 23) | _random_fraction(rng, n)
    b = (eb.astype(np.uint32) << 23) | _random_fraction(rng, n)
    a |= rng.integers(0, 2, n, dtype=np.uint32) << 31
    b |= rng.integers(0, 2, n, dtype=np.uint32) << 31
    # Sprinkle exact specials: zeros, infinities, quiet and signalling NaNs.
    specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                         0x7F800001, 0xFFC00001, 0x7FA00000], dtype=np.uint32)
    for x in (a, b):
        pick = rng.random(n) < 0.03
        x[pick] = rng.choice(specials, int(pick.sum()))
    return a, b


def weighted_random_add(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded random pairs for addition: a third the multiplier's hard cases, a third
    near-cancellations (b = -a give or take a few ulps: massive renormalisation, exact zeros),
    a third with exponents a few apart (alignment, guard/round/sticky, carries)."""
    k = n // 3
    a1, b1 = weighted_random(rng, n - 2 * k)
    a2 = weighted_random(rng, k)[0]
    b2 = (a2 ^ np.uint32(0x80000000)) + rng.integers(-4, 5, k).astype(np.uint32)
    a3, _ = weighted_random(rng, k)
    shift = rng.integers(-30, 31, k).astype(np.int64)
    e3 = np.clip(((a3 >> 23) & 0xFF).astype(np.int64) + shift, 0, 255).astype(np.uint32)
    b3 = (rng.integers(0, 2, k, dtype=np.uint32) << 31) | (e3 << 23) | (rng.integers(0, 1 << 23, k, dtype=np.uint32))
    return np.concatenate([a1, a2, a3]), np.concatenate([b1, b2, b3])
