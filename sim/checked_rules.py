"""The fast matmul's safety rules, written once over an array namespace (NumPy or PyTorch).

:func:`canna.sim.matmul.matmul_fast` replaces the checked operand's qualifying elements by
powers of two and proves, from exponent ranges, which elements of the first operand are safe
for a GEMM (see :mod:`canna.sim.matmul`). These are those rules: :func:`transform_checked_numpy`
(the NumPy twin of the C kernel ``canna_transform_checked``), :func:`scan_first_numpy`
(``canna_scan_first``) and :func:`max_finite_exponent_numpy` (``canna_max_finite_exponent``).

Each takes binary32 bit patterns: a NumPy ``uint32`` array, or a PyTorch ``int32`` tensor (the
bits of a float32 tensor, ``x.view(torch.int32)``: the integer type every PyTorch device has),
and computes with that array's own operations, so that :mod:`canna.torch` runs the same rules
on CPU and CUDA tensors. The sign bit sits in bit 31 either way; every test below reads the
exponent and fraction through masks, so the signedness of the torch bits never matters.
Outputs are arrays of the input's kind (per-row and per-column counts int64, flags and bit
patterns ``uint32``/``int32``) and ``stats``, always a small NumPy ``int32`` array.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import golden

__all__ = ["ROW_RISKY_NONZERO", "ROW_RISKY_ALL", "MAX_SAFE_EXPONENT_SUM", "ExponentStats",
           "transform_checked_numpy", "scan_first_numpy", "max_finite_exponent_numpy",
           "namespace", "qualifies"]

ROW_RISKY_NONZERO = 1    # row k of B: every nonzero A[:, k] is risky
ROW_RISKY_ALL = 2        # row k of B has inf/NaN: every A[:, k] is risky
#: No product of elements with exponent fields e_a, e_b overflows while e_a + e_b <= this:
#: |a b| < 2^(e_a + e_b - 252) <= 2^127. Beyond it a product is computed explicitly, since a
#: GEMM that fuses it into the add would not round it to inf.
MAX_SAFE_EXPONENT_SUM = 379


class _NumPyOps:
    """What the rules need beyond operators, for NumPy arrays (bits: uint32)."""

    where = staticmethod(np.where)

    @staticmethod
    def astype(x, kind: str):
        return x.astype({"u32": np.uint32, "int32": np.int32, "int64": np.int64}[kind])

    @staticmethod
    def count(mask, axis: int):
        return mask.sum(axis=axis).astype(np.int64)

    flatnonzero = staticmethod(np.flatnonzero)

    @staticmethod
    def size(x) -> int:
        return x.size

    @staticmethod
    def qualifies(fraction, t: int):
        return golden.qualifies(fraction, t)


class _TorchOps:
    """The same for PyTorch tensors (bits: int32, any device)."""

    def __init__(self):
        import torch
        self.torch = torch
        self.where = torch.where
        self._kinds = {"u32": torch.int32, "int32": torch.int32, "int64": torch.int64}

    def astype(self, x, kind: str):
        return x.to(self._kinds[kind])

    @staticmethod
    def count(mask, axis: int):
        return mask.sum(dim=axis).long()

    @staticmethod
    def flatnonzero(mask):
        return mask.reshape(-1).nonzero().reshape(-1)

    @staticmethod
    def size(x) -> int:
        return x.numel()

    @staticmethod
    def qualifies(fraction, t: int):
        # golden.qualifies on tensors: m1 and the t bits after it all 0 or all 1 (tested equal
        # to golden.qualifies on every fraction, tests/torch/test_rules.py).
        top = fraction >> (22 - t)
        return (top == 0) | (top == (1 << (t + 1)) - 1)


_NUMPY = _NumPyOps()
_TORCH = None


def namespace(x):
    """The operations for ``x``: a NumPy array or a PyTorch tensor (torch imported only then)."""
    global _TORCH
    if isinstance(x, np.ndarray):
        return _NUMPY
    if type(x).__module__.startswith("torch"):
        if _TORCH is None:
            _TORCH = _TorchOps()
        return _TORCH
    raise TypeError(f"expected a NumPy array or a torch tensor of bit patterns, got {type(x).__name__}")


def qualifies(fraction, t: int):
    """:func:`canna.sim.golden.qualifies` for either kind of array."""
    return namespace(fraction).qualifies(fraction, t)


class _Decomposed(NamedTuple):
    """The fields of binary32 bit patterns the fast path decides on."""

    exp: np.ndarray          # biased exponent (int32)
    frac: np.ndarray         # fraction
    normal: np.ndarray       # 1 <= exp <= 254
    qualifies: np.ndarray    # normal and the hit rule holds (golden.qualifies)
    pow2_exp: np.ndarray     # exponent of the power of two a hit replaces it with: exp + m1


def _decompose(bits, t: int) -> _Decomposed:
    ns = namespace(bits)
    e = ns.astype((bits >> 23) & 0xFF, "int32")
    f = bits & 0x7FFFFF
    normal = (e >= 1) & (e <= 254)
    return _Decomposed(e, f, normal, normal & ns.qualifies(f, t), e + ns.astype(f >> 22, "int32"))


def _sign(bits):
    """Bit 31 alone, in the bits' own type (``bits & 0x80000000`` overflows a torch int32)."""
    return bits ^ (bits & 0x7FFFFFFF)


class ExponentStats(NamedTuple):
    """The exponent ranges the fast path's safety decisions rest on (the kernels' ``int32[5]``
    ``stats``): the powers of two of the checked operand's qualifying elements, dual's
    normal non-qualifying elements (empty range: lo 1000, hi -1000), and the largest exponent
    the GEMMs will see (it bounds their sums)."""

    pow2_lo: int
    pow2_hi: int
    nonq_lo: int
    nonq_hi: int
    e_max: int

    @classmethod
    def of(cls, stats) -> "ExponentStats":
        return cls(*(int(v) for v in stats))

    @classmethod
    def empty(cls, e_max: int = 0) -> "ExponentStats":
        """Nothing in either range; the GEMMs see exponents up to ``e_max``."""
        return cls(1000, -1000, 1000, -1000, e_max)


def _range(values) -> tuple[int, int]:
    return (int(values.min()), int(values.max())) if namespace(values).size(values) else (1000, -1000)


def transform_checked_numpy(w, t: int, dual: bool):
    """NumPy twin of ``canna_transform_checked``: returns (mq, wn, qualifying, nonqualifying,
    row_flags, stats), as :class:`~canna.sim.matmul.Prepared` holds them."""
    ns = namespace(w)
    e, f, normal, qual, pe = _decompose(w, t)
    ok = qual & (pe < 255)
    plain = ns.astype(ns.where(e == 255, 0, w), "u32")
    pow2 = ns.astype(_sign(w) | (ns.astype(pe, "u32") << 23), "u32")
    if dual:
        mq = ns.astype(ns.where(ok, pow2, 0), "u32")
        wn = ns.astype(ns.where(ok, 0, plain), "u32")
    else:
        mq = ns.astype(ns.where(ok, pow2, plain), "u32")
        wn = None
    nonq = normal & ~ok & dual   # only dual multiplies these by a power of two
    row_flags = ns.where((e == 255).any(axis=1), ROW_RISKY_ALL, 0)
    unrep = (qual & ~ok).any(axis=1)
    if dual:
        unrep |= ((e == 0) & (f != 0)).any(axis=1)
    row_flags = ns.astype(row_flags | ns.where(unrep, ROW_RISKY_NONZERO, 0), "u32")
    finite = e[e != 255]
    e_max = max(int(finite.max()) if ns.size(finite) else 0, int(pe[ok].max()) if bool(ok.any()) else 0)
    stats = np.array([*_range(pe[ok]), *_range(e[nonq]), e_max], dtype=np.int32)
    return (mq, wn, ns.count(ok, 1), ns.count(nonq, 1), row_flags, stats)


def scan_first_numpy(a, t: int, dual: bool, row_flags, stats):
    """NumPy twin of ``canna_scan_first``: returns (risky_flat_indices, ma, cnt_normal, cnt_q),
    ``cnt_q`` None for policy b."""
    ns = namespace(a)
    e, f, normal, qual, pe = _decompose(a, t)
    qual &= dual
    zero = (a & 0x7FFFFFFF) == 0
    q_lo, q_hi, n_lo, n_hi, e_max = ExponentStats.of(stats)
    bad = ((row_flags & ROW_RISKY_ALL) != 0)[None, :] | (((row_flags & ROW_RISKY_NONZERO) != 0)[None, :] & ~zero)
    bad |= ~normal & ~zero
    if q_lo <= q_hi:
        bad |= normal & ((e + q_lo - 127 < 1) | (e + q_hi - 127 > 254))
    bad |= normal & (pe + e_max > MAX_SAFE_EXPONENT_SUM)   # a product may overflow
    out_of_range = pe >= 255
    if n_lo <= n_hi:
        out_of_range |= (pe + n_lo - 127 < 1) | (pe + n_hi - 127 > 254)
    bad |= qual & out_of_range
    safe = ~bad
    ma = None
    if dual:
        pow2 = ns.astype(_sign(a) | (ns.astype(pe, "u32") << 23), "u32")
        ma = ns.astype(ns.where(bad, 0, ns.where(qual, pow2, a)), "u32")
    return (ns.flatnonzero(bad), ma, ns.count(normal & safe, 0),
            ns.count(qual & safe, 0) if dual else None)


def max_finite_exponent_numpy(bits) -> int:
    """NumPy twin of ``canna_max_finite_exponent``: the largest exponent field among the finite
    elements (0 when there is none)."""
    e = (bits >> 23) & 0xFF
    e = e[e != 255]
    return int(e.max()) if namespace(e).size(e) else 0
