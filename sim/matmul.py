"""Matrix multiplication on the CFPU arithmetic: the bit-exact reference and the fast path.

``Y = A @ B`` with ``A`` (M x K) and ``B`` (K x N), float32. Every product ``A[i,k] * B[k,j]`` is a
CFPU multiply with ``A`` as the first operand (``a``) and ``B`` as the second (``b``, the operand
that policy ``b`` checks). With ``y = x @ W`` that makes the weights the checked operand; to check
the other one, compute ``(W.T @ x.T).T``.

:func:`matmul_reference` -- the specification the RTL lane array must reproduce: every product
through :func:`golden.mul_bits`, accumulated in binary32 (IEEE add, round to nearest even,
canonical NaN) sequentially over ``k = 0 .. K-1``, starting from ``+0.0``. NumPy loop over K.

:func:`matmul_fast` -- the same products, summed by BLAS. A hit replaces the checked operand by
a power of two, ``M(w) = sign(w) * 2^(e_w - 127 + m1)``, and multiplying by a power of two is
exact, so (policy ``b``)

    A @ B  ==  A @ M(B)      product for product,

where ``M`` replaces each qualifying element of ``B`` and keeps the others. With policy ``dual``
(``b`` checked first, then ``a``) the products split on whether ``b`` qualifies:

    A @ B  ==  A @ Bq + M(A) @ Bn,   Bq = where(q(B), M(B), 0),  Bn = where(q(B), 0, B),

where ``M(A)`` replaces each qualifying element of ``A``: for every (i, k, j) exactly one of the two
GEMMs sees the real product, the other multiplies by zero. The golden rule has conditions that a
GEMM cannot see -- a hit needs both operands normal and the result exponent in range, subnormal
or non-finite operands run exactly -- so one pass over each operand (a C kernel, or its NumPy
twin) proves, from the exponent ranges of the transformed operand, which elements of ``A`` are
safe. The others ("risky": subnormals, non-finite values, exponents at the edge of the range;
none in ordinary NN data) are taken out of the GEMM and their products computed by the golden
model and added afterwards. So every product equals the golden one bit for bit and only the
summation differs: BLAS's blocked order, possibly with fused multiply-add (the product is then
rounded only as part of the sum). Results stay within :func:`summation_bound` of the reference.
A NaN result is NaN in both paths, but the fast path leaves BLAS's NaN bits as they are (only the
reference canonicalises them to 0x7FC00000).

Both paths count products and hits; the fast path derives the hit count from per-column counts,
without materialising any product mask.
"""
from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from canna.spec.config import EXACT, CFPUConfig, Policy

from . import golden
# The safety rules, shared with canna.torch's tensor path (written over NumPy or torch arrays).
from .checked_rules import (MAX_SAFE_EXPONENT_SUM, ExponentStats, max_finite_exponent_numpy,
                            qualifies, scan_first_numpy, transform_checked_numpy)

__all__ = ["MatmulResult", "Prepared", "prepare", "matmul_reference", "matmul_fast",
           "summation_bound", "count_nonzero_finite", "sgd_update_prepare"]

U = 2.0 ** -24           # unit roundoff of binary32
TINY = 2.0 ** -149       # smallest subnormal: absolute error floor of one rounding


class MatmulResult(NamedTuple):
    """``value`` (M x N float32), the number of ``products`` (M*K*N) and how many were ``hits``;
    ``lane``: the lane array's counters of the matmul (a
    :class:`~canna.sim.lanes.LaneArrayResult`) when the backend ran it on the array, else None;
    ``nonzero``: the products of two nonzero finite operands where the matmul counted them on
    the way (prepared operands with ``nonzero=True``, lean path), else None."""

    value: np.ndarray
    products: int
    hits: int
    lane: object = None
    nonzero: int | None = None

    @property
    def hit_rate(self) -> float:
        return self.hits / self.products if self.products else 0.0


def _check_matrix(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"{name}: expected a float32 matrix, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got shape {x.shape}")
    return x


def _check_shapes(a: np.ndarray, b_shape: tuple) -> None:
    if a.shape[1] != b_shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape}, b is {b_shape} (a.shape[1] != b.shape[0])")


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------

def matmul_reference(a, b, config: CFPUConfig = EXACT) -> MatmulResult:
    """Bit-exact matmul: golden products, binary32 accumulation sequential over k from +0.0."""
    a = _check_matrix("a", a)
    b = _check_matrix("b", b)
    _check_shapes(a, b.shape)
    config = golden.check_config(config)
    m, k_dim = a.shape
    n = b.shape[1]
    a_bits = np.ascontiguousarray(a).view(np.uint32)
    b_bits = np.ascontiguousarray(b).view(np.uint32)
    acc = np.zeros((m, n), dtype=np.float32)
    hits = 0
    for k in range(k_dim):
        r = golden.mul_bits(a_bits[:, k, None], b_bits[None, k, :], config)
        acc = golden.add(acc, r.bits.view(np.float32))
        hits += int(np.count_nonzero(r.hit))
    return MatmulResult(acc, m * k_dim * n, hits)


def summation_bound(abs_products_sum, k: int) -> np.ndarray:
    """Largest |fast - reference| allowed, elementwise, for a K-term dot product whose products
    have absolute values summing to ``abs_products_sum``.

    Both results approximate the exact sum S of the same products: the sequential sum within
    gamma_K * sum|p| (gamma_K = K u / (1 - K u), u = 2^-24), any other order (BLAS) within the
    same, plus u * sum|p| when BLAS fuses the multiply into the add (the product then is not
    rounded on its own). Subnormal results add at most 2^-149 absolute error per rounding.
    """
    gamma = k * U / (1.0 - k * U)
    return (2.0 * gamma + U) * np.asarray(abs_products_sum, dtype=np.float64) + 2.0 * (k + 1) * TINY


# --------------------------------------------------------------------------------------------
# Elementwise kernels: C (fast) and NumPy (reference and fallback), same semantics
# --------------------------------------------------------------------------------------------

#: 256-bit vectors even where 512-bit ones exist: the transform is faster with them
#: (docs/performance.md). No fused multiply-add: the SGD update must round as NumPy does.
_KERNEL_FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=off") + (
    ("-mprefer-vector-width=256",) if platform.machine() in ("x86_64", "AMD64") else ())


class _Kernels:
    """The CPython module built from sim/fastkernels.c, or None when it cannot be built."""

    _lib = None
    _tried = False

    @classmethod
    def get(cls):
        if not cls._tried:
            cls._tried = True
            if os.environ.get("CANNA_NO_NATIVE"):
                return None
            from .native import NativeBuildError, build_extension
            here = Path(__file__).parent
            try:
                cls._lib = build_extension("_fastkernels", [here / "fastkernels.c",
                                                            here / "fastkernels_module.c"],
                                           flags=_KERNEL_FLAGS)
            except (NativeBuildError, OSError, ImportError) as e:
                warnings.warn(f"fast matmul kernels unavailable, using NumPy: {e}", RuntimeWarning)
        return cls._lib


class QuickScan(NamedTuple):
    """Arguments of policy b's lean path after the per-row counts (:func:`_matmul_quick`): the
    checked operand's N, its powers of two's exponent range, the GEMM's largest exponent."""

    n: int
    pow2_lo: int
    pow2_hi: int
    e_max: int


# --------------------------------------------------------------------------------------------
# Fast path
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Prepared:
    """The checked operand ``B`` transformed once for ``config`` (inference on fixed weights).

    Members
    -------
    config : the configuration it was prepared for.
    original : ``B`` itself (float32), for the products the GEMM cannot reproduce.
    checked : ``M(B)`` (policy b) or ``Bq`` (dual); ``B`` when approximation is off.
    rest : ``Bn`` (dual) or None.
    qualifying, nonqualifying : per-row counts of qualifying / (dual) normal non-qualifying
        elements: a row's hits are its count times the first operand's safe elements.
    row_flags, stats : what :func:`matmul_fast` needs to decide which products are safe
        (``stats``: the kernels' array of :class:`ExponentStats`).
    quick : :class:`QuickScan` for policy b's lean path (:func:`_matmul_quick`), or None
        when it cannot apply (dual, or a row with inf, NaN or an unrepresentable power of two).
    qualifying_cols : per-column counts of qualifying elements (``prepare(..., columns=True)``,
        policy b), with which :attr:`T` serves the transposed operand; else None.
    nonzero_rows, nonzero_cols : per-row (``prepare(..., nonzero=True)``) and per-column
        (``nonzero=True, columns=True``, policy b) counts of nonzero finite elements, from
        which the lean path counts the products that are not bypassed; else None.
    qualifying_u32, nonzero_u32 : ``qualifying`` and ``nonzero_rows`` as uint32 for the lean
        path's scan (each count is at most N); made from them when not given.
    cols_u32 : ``(qualifying_cols, nonzero_cols)`` as uint32 (the kernel's own counts), which
        become :attr:`T`'s ``qualifying_u32`` and ``nonzero_u32``; None: converted there.
    """

    config: CFPUConfig
    original: np.ndarray
    checked: np.ndarray
    rest: np.ndarray | None
    qualifying: np.ndarray
    nonqualifying: np.ndarray
    row_flags: np.ndarray
    stats: np.ndarray
    quick: QuickScan | None = None
    qualifying_cols: np.ndarray | None = None
    nonzero_rows: np.ndarray | None = None
    nonzero_cols: np.ndarray | None = None
    qualifying_u32: np.ndarray | None = field(default=None, repr=False, compare=False)
    nonzero_u32: np.ndarray | None = field(default=None, repr=False, compare=False)
    cols_u32: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.qualifying_u32 is None:
            object.__setattr__(self, "qualifying_u32", self.qualifying.astype(np.uint32))
        if self.nonzero_u32 is None and self.nonzero_rows is not None:
            object.__setattr__(self, "nonzero_u32", self.nonzero_rows.astype(np.uint32))

    @property
    def shape(self) -> tuple:
        return self.original.shape

    @property
    def T(self) -> "Prepared | None":
        """``B.T`` prepared for the same configuration, as views of these arrays (no copy, no
        second transform: the transform is elementwise, and only the per-row facts change
        sides), or None where this one lacks the per-column facts: dual, a row with inf, NaN or
        an unrepresentable power of two (per-column flags), or no :attr:`qualifying_cols`."""
        k_dim, n = self.shape
        nonzero = dict(nonzero_rows=self.nonzero_cols, nonzero_cols=self.nonzero_rows)
        if not self.config.enabled:
            empty = np.zeros(n, np.int64)
            return Prepared(self.config, self.original.T, self.original.T, None, empty, empty,
                            np.zeros(n, np.uint32), self.stats, **nonzero)
        if self.quick is None or self.qualifying_cols is None:
            return None
        q32, nz32 = self.cols_u32 or (None, None)
        return Prepared(self.config, self.original.T, self.checked.T, None, self.qualifying_cols,
                        np.zeros(n, np.int64), np.zeros(n, np.uint32), self.stats,
                        QuickScan(k_dim, *self.quick[1:]), self.qualifying, **nonzero,
                        qualifying_u32=q32, nonzero_u32=nz32)


def _quick_scan(n: int, dual: bool, row_flags: np.ndarray, stats: np.ndarray) -> QuickScan | None:
    """The lean path's arguments, or None where it cannot apply (dual, or a flagged row)."""
    if dual or row_flags.any():
        return None
    pow2_lo, pow2_hi, _, _, e_max = stats.tolist()   # ExponentStats' order, without its cost
    return QuickScan(n, pow2_lo, pow2_hi, e_max)


def prepare(b, config: CFPUConfig = EXACT, *, native: bool | None = None,
            columns: bool = False, nonzero: bool = False) -> Prepared:
    """Transform the checked operand ``b`` (K x N float32) for :func:`matmul_fast`.

    ``columns``: also count the qualifying elements per column (policy b), so that
    :attr:`Prepared.T` can serve ``b.T`` too. ``nonzero``: also count the nonzero finite
    elements per row (and per column with ``columns``), in the same pass. A transposed view
    (``W.T``, F-contiguous) is prepared as ``prepare(W).T`` where that is possible: no copy."""
    b = _check_matrix("b", b)
    config = golden.check_config(config)
    if (b.ndim == 2 and b.flags.f_contiguous and not b.flags.c_contiguous
            and (not config.enabled or config.policy is not Policy.DUAL)):   # dual: per-column flags
        t = prepare(b.T, config, native=native, columns=True, nonzero=nonzero).T
        if t is not None:
            return t
    b = np.ascontiguousarray(b)
    k_dim, n = b.shape
    bits = b.view(np.uint32)
    lib = _Kernels.get() if native in (None, True) else None
    if native and lib is None:
        raise RuntimeError("native kernels requested but unavailable")
    if not config.enabled:   # no hits; B's largest exponent tells which products may overflow
        e_max = max_finite_exponent_numpy(bits) if lib is None else lib.max_finite_exponent(bits)
        empty = np.zeros(k_dim, dtype=np.int64)
        nz = {}
        if nonzero:
            nz["nonzero_rows"] = count_nonzero_finite(b, 1, native=native)
            if columns:
                nz["nonzero_cols"] = count_nonzero_finite(b, 0, native=native)
        return Prepared(config, b, b, None, empty, empty, np.zeros(k_dim, np.uint32),
                        np.array(ExponentStats.empty(e_max), np.int32), **nz)
    dual = config.policy is Policy.DUAL
    t = config.tuning_bits
    qual_cols = nz_rows = nz_cols = None
    if lib is None:
        mq, wn, qualifying, nonqualifying, row_flags, stats = transform_checked_numpy(bits, t, dual)
        if columns and not dual:
            e = (bits >> 23) & 0xFF
            ok = (e >= 1) & (e + ((bits >> 22) & 1) < 255) & qualifies(bits & 0x7FFFFF, t)
            qual_cols = np.count_nonzero(ok, axis=0).astype(np.int64)
        if nonzero:
            nz_rows = count_nonzero_finite(b, 1, native=False)
            nz_cols = count_nonzero_finite(b, 0, native=False) if columns and not dual else None
    else:
        mq = np.empty_like(bits)
        wn = np.empty_like(bits) if dual else None
        qualifying = np.empty(k_dim, np.int64)
        nonqualifying = np.empty(k_dim, np.int64)
        row_flags = np.empty(k_dim, np.uint32)
        stats = np.empty(len(ExponentStats._fields), np.int32)
        cols32 = np.empty(n, np.uint32) if columns and not dual else None
        nz_rows = np.empty(k_dim, np.int64) if nonzero else None
        nz32 = np.empty(n, np.uint32) if nonzero and cols32 is not None else None
        lib.transform_checked(bits, k_dim, n, t, dual, mq, wn, qualifying, nonqualifying,
                              row_flags, stats, cols32, nz_rows, nz32)
        return _prepared(config, b, mq, wn, qualifying, nonqualifying, row_flags, stats, cols32,
                         nz_rows, nz32)
    quick = _quick_scan(n, dual, row_flags, stats)
    return Prepared(config, b, mq.view(np.float32), None if wn is None else wn.view(np.float32),
                    qualifying, nonqualifying, row_flags, stats, quick, qual_cols, nz_rows, nz_cols)


def _prepared(config, b, mq, wn, qualifying, nonqualifying, row_flags, stats, cols32, nz_rows,
              nz32) -> Prepared:
    """The :class:`Prepared` of the kernels' outputs (``cols32``, ``nz32``: their uint32
    per-column counts or None, kept for :attr:`Prepared.T`)."""
    quick = _quick_scan(b.shape[1], wn is not None, row_flags, stats)
    return Prepared(config, b, mq.view(np.float32), None if wn is None else wn.view(np.float32),
                    qualifying, nonqualifying, row_flags, stats, quick,
                    None if cols32 is None else cols32.astype(np.int64), nz_rows,
                    None if nz32 is None else nz32.astype(np.int64),
                    nonzero_u32=None if nz_rows is None else nz_rows.astype(np.uint32),
                    cols_u32=None if cols32 is None else (cols32, nz32))


def sgd_update_prepare(w: np.ndarray, v: np.ndarray, g, momentum: float, lr: float,
                       config: CFPUConfig, *, columns: bool = False, nonzero: bool = False,
                       native: bool | None = None) -> Prepared:
    """The SGD update with classic momentum, in place (``v *= momentum; v -= lr * g; w += v``,
    float32, rounded as those NumPy operations round with Python-float scalars: ``momentum`` and
    ``lr`` are taken as Python floats, so a NumPy float64 scalar does not turn the update into
    float64 arithmetic on one path only; a NaN stays NaN, its payload bits may differ), then
    :func:`prepare` of the new ``w`` for ``config``: one pass in C, which transforms each row
    while the update has it in cache. ``w`` and ``v`` are C-contiguous float32 arrays of one
    shape, ``g`` a float32 array of it."""
    momentum, lr = float(momentum), float(lr)
    lib = _Kernels.get() if native in (None, True) else None
    g = np.asarray(g)
    fused = (lib is not None and config.enabled and w.ndim == 2 and w.dtype == v.dtype == g.dtype == np.float32
             and w.shape == v.shape == g.shape and w.flags.c_contiguous and v.flags.c_contiguous
             and w.flags.writeable and v.flags.writeable)
    if not fused:
        v *= momentum
        v -= lr * g
        w += v
        return prepare(w, config, native=native, columns=columns, nonzero=nonzero)
    config = golden.check_config(config)
    k_dim, n = w.shape
    dual = config.policy is Policy.DUAL
    bits = w.view(np.uint32)
    mq = np.empty_like(bits)
    wn = np.empty_like(bits) if dual else None
    qualifying, nonqualifying = np.empty(k_dim, np.int64), np.empty(k_dim, np.int64)
    row_flags = np.empty(k_dim, np.uint32)
    stats = np.empty(len(ExponentStats._fields), np.int32)
    cols32 = np.empty(n, np.uint32) if columns and not dual else None
    nz_rows = np.empty(k_dim, np.int64) if nonzero else None
    nz32 = np.empty(n, np.uint32) if nonzero and cols32 is not None else None
    lib.sgd_transform(w, v, np.ascontiguousarray(g), momentum, lr, k_dim, n,
                      config.tuning_bits, dual, mq, wn, qualifying, nonqualifying, row_flags, stats,
                      cols32, nz_rows, nz32)
    return _prepared(config, w, mq, wn, qualifying, nonqualifying, row_flags, stats, cols32,
                     nz_rows, nz32)


def count_nonzero_finite(x, axis: int, *, native: bool | None = None) -> np.ndarray:
    """Counts (int64) of the nonzero finite elements of the float32 matrix ``x`` along ``axis``
    (1: one per row, 0: one per column), as ``np.count_nonzero``: the operands a product is not
    bypassed for. One pass in C."""
    x = _check_matrix("x", x)
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis!r}")
    if x.flags.f_contiguous and not x.flags.c_contiguous:
        return count_nonzero_finite(x.T, 1 - axis, native=native)
    lib = _Kernels.get() if native in (None, True) else None
    if lib is None:
        return np.count_nonzero((x != 0) & np.isfinite(x), axis=axis).astype(np.int64)
    x = np.ascontiguousarray(x)
    rows = np.empty(x.shape[0], np.int64) if axis == 1 else None
    cols = np.empty(x.shape[1], np.uint32) if axis == 0 else None
    lib.count_nonzero_finite(x.view(np.uint32), x.shape[0], x.shape[1], rows, cols)
    return rows if axis == 1 else cols.astype(np.int64)


_NO_RISKY = np.empty(0, np.int64)


def _scan_first(a_bits: np.ndarray, prep: Prepared, native: bool | None):
    """Classify the first operand against ``prep``: (risky flat indices, dual's transform of a
    or None, per-column safe normal counts, per-column safe qualifying counts or None)."""
    t = prep.config.tuning_bits
    dual = prep.config.policy is Policy.DUAL
    lib = _Kernels.get() if native in (None, True) else None
    if lib is None:
        return scan_first_numpy(a_bits, t, dual, prep.row_flags, prep.stats)
    m, k_dim = a_bits.shape
    ma = np.empty_like(a_bits) if dual else None
    cap = max(1024, a_bits.size // 256)
    while True:
        cnt_normal = np.zeros(k_dim, np.uint32)
        cnt_q = np.zeros(k_dim, np.uint32)
        risky = np.empty(cap, np.int64)
        count = lib.scan_first(a_bits, m, k_dim, t, dual, prep.row_flags, prep.stats, ma,
                               cnt_normal, cnt_q, risky)
        if count <= cap:
            return risky[:count], ma, cnt_normal, cnt_q if dual else None
        cap = int(count)


#: Overflow and invalid operations give inf and NaN silently, as in the golden model; underflow
#: follows ``np.seterr`` as in ``np.matmul`` (NumPy's default ignores it). The lean path needs
#: no mask: it runs only where neither can happen.
_QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


def lean_scan(a: np.ndarray, prep: Prepared):
    """The lean path's scan of ``a`` against ``prep`` (policy b, ``prep.quick`` set):
    ``(hits, nonzero products or None)`` where :func:`_matmul_quick` may run the GEMM, else None
    (also without the C kernels, or for an ``a`` the kernel declines). An F-contiguous ``a``
    (the weight gradient's ``delta.T``) is scanned as its transpose, without a copy."""
    lib = _Kernels.get()
    if lib is None or prep.quick is None:
        return None
    scan = lib.scan_first_quick
    if not a.flags.c_contiguous and a.flags.f_contiguous:
        scan, a = lib.scan_first_quick_t, a.T
    if prep.nonzero_u32 is None:
        hits, nonzero = scan(a, prep.qualifying_u32, *prep.quick), None     # -1: declined
    else:
        hits, nonzero = scan(a, prep.qualifying_u32, *prep.quick, prep.nonzero_u32)
    return None if hits < 0 else (hits, nonzero)


def _matmul_quick(a, prep: Prepared, transposed: bool = False) -> MatmulResult | None:
    """Policy b's common case, kept lean (at batch 100 every microsecond beside the GEMM counts):
    one kernel pass over ``a`` and one GEMM. The kernel answers only when no element of ``a`` is
    subnormal or non-finite, no hit's exponent can leave the range, and no sum can overflow;
    then nothing is risky, every nonzero element of ``a`` is normal, its hit count is exact, and
    the GEMM raises no overflow or invalid flag (given a BLAS that raises none spuriously, as
    some old OpenBLAS builds did), so it runs without ``np.errstate`` (which costs
    more than the kernel). It also declines an ``a`` that is not a C- or F-contiguous 2-D
    float32 ndarray with K columns (an F-contiguous one, the weight gradient's ``delta.T``, is
    scanned as its transpose: no copy). None: take the general path (which also reports bad
    input)."""
    if type(a) is not np.ndarray:
        return None
    scan = lean_scan(a, prep)
    if scan is None:
        return None
    hits, nonzero = scan
    y = np.matmul(prep.checked.T, a.T) if transposed else np.matmul(a, prep.checked)
    return MatmulResult(y, a.size * prep.quick.n, hits, None, nonzero)


def matmul_fast(a, b, config: CFPUConfig | None = None, *, native: bool | None = None,
                transposed: bool = False) -> MatmulResult:
    """``a @ b`` with every product equal to the golden CFPU product, summed by BLAS.

    ``b`` is a float32 matrix, or a :class:`Prepared` (then ``config`` may be omitted). ``native``
    forces (True) or forbids (False) the C kernels; by default they are used when they build.
    ``transposed``: the value is ``(a @ b).T``, C-contiguous, computed as ``M(b).T @ a.T`` (the
    same products) rather than copied (a weight gradient ``x.T @ delta`` with ``x`` checked).
    Overflow gives inf and invalid operations NaN without a warning, as in the golden model;
    underflow follows ``np.seterr``, as in ``np.matmul``.
    """
    if isinstance(b, Prepared):
        if config is not None and config is not b.config and golden.check_config(config) != b.config:
            raise ValueError(f"b was prepared for {b.config.describe()}, not {config.describe()}")
        prep = b
    else:
        prep = prepare(b, EXACT if config is None else config, native=native)
    if prep.quick is not None and native is not False:
        quick = _matmul_quick(a, prep, transposed)
        if quick is not None:
            return quick
    a = _check_matrix("a", a)
    _check_shapes(a, prep.shape)
    m, k_dim = a.shape
    n = prep.shape[1]
    products = m * k_dim * n
    a = np.ascontiguousarray(a)
    a_bits = a.view(np.uint32)
    if not prep.config.enabled:
        return MatmulResult(_matmul_exact(a, prep, native, transposed), products, 0)
    risky, ma, cnt_normal, cnt_q = _scan_first(a_bits, prep, native)
    if risky.size:
        a = a.copy()
        a.reshape(-1)[risky] = 0.0
    with np.errstate(**_QUIET):
        y = np.matmul(a, prep.checked)
        if prep.rest is not None:
            y += np.matmul(ma.view(np.float32), prep.rest)
    hits = int(np.dot(cnt_normal, prep.qualifying))
    if cnt_q is not None:
        hits += int(np.dot(cnt_q, prep.nonqualifying))
    if risky.size:
        hits += _add_golden_products(y, a_bits, prep, risky)
    return MatmulResult(np.ascontiguousarray(y.T) if transposed else y, products, hits)


def _matmul_exact(a: np.ndarray, prep: Prepared, native: bool | None, transposed: bool = False) -> np.ndarray:
    """Exact mode: one GEMM. A GEMM that fuses a product into the add could hide its overflow,
    so where some finite product may overflow (``e_a + e_max(B) > MAX_SAFE_EXPONENT_SUM``: only
    with huge operands) the rows of ``a`` holding such elements are computed by the reference.
    Subnormals, infinities and NaNs need nothing: the GEMM multiplies them as the CFPU does."""
    a_bits = a.view(np.uint32)
    lib = _Kernels.get() if native in (None, True) else None
    e_a = max_finite_exponent_numpy(a_bits) if lib is None else lib.max_finite_exponent(a_bits)
    e_b = int(prep.stats[4])
    if e_a + e_b <= MAX_SAFE_EXPONENT_SUM:
        with np.errstate(**_QUIET):
            return np.matmul(prep.original.T, a.T) if transposed else np.matmul(a, prep.original)
    with np.errstate(**_QUIET):
        y = np.matmul(a, prep.original)
    e = (a_bits >> 23) & 0xFF
    rows = np.flatnonzero(((e != 255) & (e + e_b > MAX_SAFE_EXPONENT_SUM)).any(axis=1))
    y[rows] = matmul_reference(a[rows], np.ascontiguousarray(prep.original), prep.config).value
    return np.ascontiguousarray(y.T) if transposed else y


def _add_golden_products(y, a_bits, prep: Prepared, risky: np.ndarray, chunk: int = 4096) -> int:
    """Add the products of the risky elements of ``a`` (flat indices) with their rows of ``b``,
    computed by the golden model, into ``y``. Returns their hit count."""
    k_dim = a_bits.shape[1]
    b_bits = prep.original.view(np.uint32)
    flat = a_bits.reshape(-1)
    hits = 0
    for start in range(0, risky.size, chunk):
        idx = risky[start:start + chunk]
        rows, ks = np.divmod(idx, k_dim)
        r = golden.mul_bits(flat[idx][:, None], b_bits[ks], prep.config)
        hits += int(np.count_nonzero(r.hit))
        with np.errstate(**_QUIET):
            np.add.at(y, rows, r.bits.view(np.float32))
    return hits
