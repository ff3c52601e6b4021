"""The golden model of the CFPU: the bit-level specification every other layer is checked against.

Everything works on unsigned bit patterns (``uint32`` for binary32) of any broadcastable shape;
:func:`mul` is the float32 convenience wrapper.

Exact mode
    IEEE-754 multiply, round to nearest even, gradual underflow (subnormal inputs and outputs),
    overflow to infinity, signed zeros. Every NaN result is the canonical quiet NaN (0x7FC00000
    for binary32, the RISC-V convention). Flags in TestFloat's bit order: bit 0 inexact,
    1 underflow (tininess detected *after* rounding, raised only when inexact), 2 overflow,
    3 infinite (never set by a multiply), 4 invalid.

Approximate mode (``t`` tuning bits)
    Let ``x`` be the operand whose mantissa may be discarded (the policy decides) and ``f`` its
    fraction. ``m1 = f[F-1]`` (the first fraction bit) and the checked bits are the next ``t``.
    ``x`` *qualifies* when ``m1 = 0`` and the checked bits are all 0, or ``m1 = 1`` and they are
    all 1. A qualifying product is a *hit* when both operands are normal and the result exponent
    ``e_other + e_x - bias + m1`` is a normal exponent; the result is then the other operand's
    fraction with that exponent and sign ``sa ^ sb`` -- exactly the product with ``x`` replaced
    by ``2**(e_x - bias + m1)``, so nothing is rounded and no flag is raised. Anything else runs in
    exact mode. See :func:`approx_error_bound` for the exact worst-case relative error.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from canna.spec.config import EXACT, CFPUConfig, Policy, check_tuning_bits
from canna.spec.formats import BINARY32, FloatFormat

__all__ = [
    "FLAG_INEXACT", "FLAG_UNDERFLOW", "FLAG_OVERFLOW", "FLAG_INFINITE", "FLAG_INVALID",
    "MulResult", "mul_bits", "mul", "qualifies", "AddResult", "add_bits", "add", "canonicalize_nan",
    "approx_error_bound", "as_bits", "as_float", "check_config",
]

FLAG_INEXACT = 1
FLAG_UNDERFLOW = 2
FLAG_OVERFLOW = 4
FLAG_INFINITE = 8
FLAG_INVALID = 16


class MulResult(NamedTuple):
    """Result of a golden multiply: ``bits`` (or float32 ``value`` from :func:`mul`), the five
    exception ``flags`` (uint8, TestFloat order) and the ``hit`` mask (True where the product ran
    in approximate mode). ``hit.sum()`` is the hit count."""

    bits: np.ndarray
    flags: np.ndarray
    hit: np.ndarray


def as_bits(x) -> np.ndarray:
    """float32 array -> uint32 bit patterns (a view, no copy)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"expected a float32 array, got dtype {x.dtype}")
    return x.view(np.uint32)


def as_float(bits) -> np.ndarray:
    """uint32 bit patterns -> float32 array (a view, no copy)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint32:
        raise TypeError(f"expected a uint32 array of bit patterns, got dtype {bits.dtype}")
    return bits.view(np.float32)


def _check_bits(name: str, x, fmt: FloatFormat) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != fmt.storage_dtype:
        raise TypeError(
            f"{name}: expected {np.dtype(fmt.storage_dtype).name} bit patterns for {fmt.name}, "
            f"got dtype {x.dtype}")
    if fmt.width not in (16, 32) and np.any(x >> fmt.width):
        raise ValueError(f"{name}: bit patterns wider than {fmt.width} bits")
    return x


def _broadcast(a, b):
    try:
        return np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(f"operand shapes {np.shape(a)} and {np.shape(b)} do not broadcast") from None


def check_config(config: CFPUConfig, fmt: FloatFormat = BINARY32) -> CFPUConfig:
    """The configuration, checked: a CFPUConfig whose tuning bits fit ``fmt``."""
    if not isinstance(config, CFPUConfig):
        raise TypeError(f"config must be a CFPUConfig, got {type(config).__name__}")
    if config.enabled:
        check_tuning_bits(config.tuning_bits, fmt=fmt)
    return config


def qualifies(fraction: np.ndarray, tuning_bits: int, fmt: FloatFormat = BINARY32) -> np.ndarray:
    """The hit rule on a fraction field: ``m1`` followed by ``tuning_bits`` copies of itself.

    Only the fraction is looked at; whether the operand is normal is checked separately.
    """
    f = fmt.frac_bits
    top = np.asarray(fraction, dtype=np.uint64) >> np.uint64(f - 1 - tuning_bits)
    ones = (1 << (tuning_bits + 1)) - 1
    return (top == 0) | (top == ones)


def _exact_product(sign, ea, fa, eb, fb, fmt: FloatFormat):
    """IEEE-754 multiply of unpacked operands (all int64 arrays). Returns (bits, flags)."""
    F, bias, emax = fmt.frac_bits, fmt.bias, fmt.exp_max
    one = np.int64(1)

    nan_a = (ea == emax) & (fa != 0)
    nan_b = (eb == emax) & (fb != 0)
    inf_a = (ea == emax) & (fa == 0)
    inf_b = (eb == emax) & (fb == 0)
    zero_a = (ea == 0) & (fa == 0)
    zero_b = (eb == 0) & (fb == 0)
    quiet = one << (F - 1)
    snan = (nan_a & ((fa & quiet) == 0)) | (nan_b & ((fb & quiet) == 0))
    invalid = snan | (inf_a & zero_b) | (zero_a & inf_b)
    is_nan = nan_a | nan_b | invalid
    is_inf = (inf_a | inf_b) & ~is_nan
    is_zero = (zero_a | zero_b) & ~is_nan & ~is_inf

    # Significands with the hidden bit, and exponents with subnormals normalised so that the
    # leading one sits at bit F (the exponent then goes below 1).
    def significand(e, f):
        sig = np.where(e != 0, f | (one << F), f)
        exp = np.maximum(e, 1)
        # frexp is exact here: significands have at most 31 bits.
        length = np.frexp(sig.astype(np.float64))[1].astype(np.int64)
        shift = np.where(sig != 0, (F + 1) - length, 0)
        return sig << shift, exp - shift

    sig_a, exp_a = significand(ea, fa)
    sig_b, exp_b = significand(eb, fb)

    # p in [2^(2F), 2^(2F+2)); normalise it to [2^(2F+1), 2^(2F+2)) so that the value is
    # p / 2^(2F+1) * 2^(exp - bias).
    p = sig_a * sig_b
    top = (p >> (2 * F + 1)) & 1
    p = np.where(top == 1, p, p << 1)
    exp = exp_a + exp_b - bias + top

    # Keep F+1 significand bits; below 1 the result is subnormal and shifts out further.
    # Shifting by 2F+3 or more leaves nothing, not even the round bit, so clip there.
    shift = np.minimum((F + 1) + np.maximum(1 - exp, 0), 2 * F + 3)
    q = p >> shift
    rem = p & ((one << shift) - 1)
    half = one << (shift - 1)
    round_up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    q = q + round_up
    inexact = rem != 0

    # A normal result packs as (exp - 1) << F plus the significand with its hidden bit, so a
    # rounding carry into bit F+1 bumps the exponent by itself; a subnormal one packs as q alone
    # (q == 2^F is the smallest normal).
    mag = np.where(exp >= 1, ((exp - 1) << F) + q, q)
    overflow = (mag >> F) >= emax
    mag = np.where(overflow, np.int64(emax) << F, mag)

    # Tininess after rounding: the result is tiny when, rounded to F+1 bits with an unbounded
    # exponent, it is still below 2^(1-bias). Only exp == 0 can round up out of tininess.
    norm_rem = p & ((one << (F + 1)) - 1)
    norm_half = one << F
    norm_q = p >> (F + 1)
    carries = ((norm_rem > norm_half) | ((norm_rem == norm_half) & ((norm_q & 1) == 1))) & (
        norm_q == (one << (F + 1)) - 1)
    tiny = (exp < 0) | ((exp == 0) & ~carries)

    finite = ~(is_nan | is_inf | is_zero)
    flags = np.zeros(sign.shape, dtype=np.int64)
    flags |= np.where(finite & (inexact | overflow), FLAG_INEXACT, 0)
    flags |= np.where(finite & tiny & inexact, FLAG_UNDERFLOW, 0)
    flags |= np.where(finite & overflow, FLAG_OVERFLOW, 0)
    flags |= np.where(invalid, FLAG_INVALID, 0)

    sign_bits = sign << (fmt.exp_bits + F)
    bits = np.where(is_zero, sign_bits,
           np.where(is_inf, sign_bits | (np.int64(emax) << F),
           np.where(finite, sign_bits | mag, np.int64(fmt.canonical_nan))))
    return bits, flags


def mul_bits(a, b, config: CFPUConfig = EXACT, *, fmt: FloatFormat = BINARY32) -> MulResult:
    """Multiply bit patterns ``a * b`` as the CFPU configured by ``config`` does.

    Parameters
    ----------
    a, b : array_like of uint32 (uint16 for 16-bit formats)
        Operands as bit patterns, broadcast against each other.
    config : CFPUConfig
        Approximation on/off, tuning bits and policy.
    fmt : FloatFormat
        The number format (binary32 unless stated).

    Returns
    -------
    MulResult
        ``bits`` (same dtype as the inputs), ``flags`` (uint8), ``hit`` (bool).
    """
    config = check_config(config, fmt)
    a = _check_bits("a", a, fmt)
    b = _check_bits("b", b, fmt)
    a, b = _broadcast(a, b)
    F, emax = fmt.frac_bits, fmt.exp_max
    a64 = a.astype(np.int64)
    b64 = b.astype(np.int64)
    sa, ea, fa = a64 >> (fmt.exp_bits + F), (a64 >> F) & emax, a64 & fmt.frac_mask
    sb, eb, fb = b64 >> (fmt.exp_bits + F), (b64 >> F) & emax, b64 & fmt.frac_mask
    sign = sa ^ sb

    bits, flags = _exact_product(sign, ea, fa, eb, fb, fmt)
    hit = np.zeros(a.shape, dtype=bool)

    if config.enabled:
        t = config.tuning_bits
        normal = (ea != 0) & (ea != emax) & (eb != 0) & (eb != emax)
        q_b = qualifies(fb, t, fmt)
        if config.policy is Policy.DUAL:
            use_b = q_b
            q = q_b | qualifies(fa, t, fmt)
        else:
            use_b = np.ones(a.shape, dtype=bool)
            q = q_b
        # x is the operand whose mantissa is discarded; "other" keeps its fraction.
        e_x = np.where(use_b, eb, ea)
        m1 = np.where(use_b, fb, fa) >> (F - 1)
        e_other = np.where(use_b, ea, eb)
        f_other = np.where(use_b, fa, fb)
        exp = e_other + e_x - fmt.bias + m1
        hit = q & normal & (exp >= 1) & (exp <= emax - 1)
        approx = (sign << (fmt.exp_bits + F)) | (exp << F) | f_other
        bits = np.where(hit, approx, bits)
        flags = np.where(hit, 0, flags)

    return MulResult(bits.astype(a.dtype), flags.astype(np.uint8), hit)


def mul(a, b, config: CFPUConfig = EXACT) -> MulResult:
    """float32 convenience wrapper of :func:`mul_bits`: ``MulResult(value, flags, hit)`` with
    ``value`` a float32 array (``.bits`` holds it under the tuple's first field name)."""
    r = mul_bits(as_bits(a), as_bits(b), config)
    return MulResult(r.bits.view(np.float32), r.flags, r.hit)


class AddResult(NamedTuple):
    """Result of a golden add: ``bits`` and the five exception ``flags`` (uint8)."""

    bits: np.ndarray
    flags: np.ndarray


def add_bits(a, b, *, fmt: FloatFormat = BINARY32) -> AddResult:
    """IEEE-754 addition of bit patterns: round to nearest even, gradual underflow, canonical NaN,
    flags (inexact, underflow after rounding, overflow, invalid). The accumulator of the lanes.

    The smaller operand is aligned to the larger with three extra bits (guard, round, sticky),
    which is exact enough for round-to-nearest-even: a right shift of two or more bits leaves at
    most one bit of cancellation to renormalise, and a shift of 0 or 1 loses nothing.
    """
    a = _check_bits("a", a, fmt)
    b = _check_bits("b", b, fmt)
    a, b = _broadcast(a, b)
    F, emax = fmt.frac_bits, fmt.exp_max
    one = np.int64(1)
    a64 = a.astype(np.int64)
    b64 = b.astype(np.int64)
    sa, ea, fa = a64 >> (fmt.exp_bits + F), (a64 >> F) & emax, a64 & fmt.frac_mask
    sb, eb, fb = b64 >> (fmt.exp_bits + F), (b64 >> F) & emax, b64 & fmt.frac_mask

    nan_a = (ea == emax) & (fa != 0)
    nan_b = (eb == emax) & (fb != 0)
    inf_a = (ea == emax) & (fa == 0)
    inf_b = (eb == emax) & (fb == 0)
    quiet = one << (F - 1)
    snan = (nan_a & ((fa & quiet) == 0)) | (nan_b & ((fb & quiet) == 0))
    invalid = snan | (inf_a & inf_b & (sa != sb))
    is_nan = nan_a | nan_b | invalid
    is_inf = (inf_a | inf_b) & ~is_nan
    inf_sign = np.where(inf_a, sa, sb)

    # Significands with three extra low bits; x is the operand of larger magnitude.
    sig_a = np.where(ea != 0, fa | (one << F), fa) << 3
    sig_b = np.where(eb != 0, fb | (one << F), fb) << 3
    exp_a, exp_b = np.maximum(ea, 1), np.maximum(eb, 1)
    a_big = (a64 & (fmt.sign_bit - 1)) >= (b64 & (fmt.sign_bit - 1))
    sig_x, exp_x, s_x = np.where(a_big, sig_a, sig_b), np.where(a_big, exp_a, exp_b), np.where(a_big, sa, sb)
    sig_y, exp_y = np.where(a_big, sig_b, sig_a), np.where(a_big, exp_b, exp_a)
    shift = np.minimum(exp_x - exp_y, F + 5)
    aligned = sig_y >> shift
    aligned |= ((aligned << shift) != sig_y).astype(np.int64)      # sticky
    r = np.where(sa == sb, sig_x + aligned, sig_x - aligned)
    exp = exp_x

    # Normalise: a carry out shifts right (keeping sticky); cancellation shifts left, but not
    # below the smallest exponent (the result is then subnormal, and exact).
    carry = (r >> (F + 4)) != 0
    r = np.where(carry, (r >> 1) | (r & 1), r)
    exp = exp + carry
    length = np.frexp(r.astype(np.float64))[1].astype(np.int64)   # exact: r < 2^30
    lz = np.where(r != 0, (F + 4) - length, 0)
    left = np.clip(np.minimum(lz, exp - 1), 0, None)
    r = r << left
    exp = exp - left

    low = r & 7
    q = r >> 3
    round_up = (low > 4) | ((low == 4) & ((q & 1) == 1))
    q = q + round_up
    inexact = low != 0
    mag = np.where(q >= (one << F), ((exp - 1) << F) + q, q)
    overflow = (mag >> F) >= emax
    mag = np.where(overflow, np.int64(emax) << F, mag)
    tiny = (q < (one << F)) & (exp == 1)     # after rounding: still below the smallest normal
    # Exact cancellation gives +0 (round to nearest); -0 only when both operands are -0.
    zero = r == 0
    sign = np.where(zero, sa & sb, s_x)

    flags = np.zeros(a.shape, dtype=np.int64)
    finite = ~(is_nan | is_inf)
    flags |= np.where(finite & (inexact | overflow), FLAG_INEXACT, 0)
    flags |= np.where(finite & tiny & inexact, FLAG_UNDERFLOW, 0)
    flags |= np.where(finite & overflow, FLAG_OVERFLOW, 0)
    flags |= np.where(invalid, FLAG_INVALID, 0)
    sign_shift = fmt.exp_bits + F
    bits = np.where(is_nan, np.int64(fmt.canonical_nan),
           np.where(is_inf, (inf_sign << sign_shift) | (np.int64(emax) << F),
                    (sign << sign_shift) | mag))
    return AddResult(bits.astype(a.dtype), flags.astype(np.uint8))


def canonicalize_nan(x: np.ndarray) -> np.ndarray:
    """Replace every NaN of a float32 array by the canonical quiet NaN (in place; returns x)."""
    nan = np.isnan(x)
    if nan.any():
        x.view(np.uint32)[nan] = BINARY32.canonical_nan
    return x


def add(a, b) -> np.ndarray:
    """float32 addition, round to nearest even, canonical NaN: the fast twin of :func:`add_bits`
    (no flags), used by the sequential reference matmul.

    NumPy's float32 addition is the host's IEEE-754 binary32 add (round to nearest even,
    gradual underflow: NumPy never sets flush-to-zero); only NaN payloads differ from the
    RISC-V convention, so they are canonicalised. Tested against add_bits and SoftFloat.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != np.float32 or b.dtype != np.float32:
        raise TypeError(f"add expects float32 operands, got {a.dtype} and {b.dtype}")
    with np.errstate(all="ignore"):
        s = np.add(a, b, dtype=np.float32)
    return canonicalize_nan(np.asarray(s))


def approx_error_bound(tuning_bits: int, fmt: FloatFormat = BINARY32) -> float:
    """Supremum of |approx - exact| / |exact| over all hits with ``tuning_bits`` checked bits.

    A hit replaces x = 1.f by 1.0 (m1 = 0) or 2.0 (m1 = 1); the other factor is kept exactly and
    nothing is rounded, so the product's relative error is x's. With t checked bits and
    ulp = 2^-F:

    * m1 = 0: f < 2^-(t+1), worst x = 1 + 2^-(t+1) - ulp, error (x - 1) / x;
    * m1 = 1: f >= 1 - 2^-(t+1), worst x = 2 - 2^-(t+1), error (2 - x) / x = 1 / (2^(t+2) - 1).

    Both are below 2^-(t+1); the m1 = 1 case dominates only for t = 0 (bound 1/3) and at
    t = F - 1, where the m1 = 0 case is exact. Both worst cases are attained, so this is the
    maximum, not just a bound.
    """
    check_tuning_bits(tuning_bits, fmt=fmt)
    ulp = 2.0 ** -fmt.frac_bits
    h = 2.0 ** -(tuning_bits + 1)
    x0 = 1.0 + h - ulp
    case0 = (x0 - 1.0) / x0
    case1 = 1.0 / (2.0 ** (tuning_bits + 2) - 1.0)
    return max(case0, case1)
