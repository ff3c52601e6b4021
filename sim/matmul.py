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

__all__ = ["MatmulResult", "Prepared", "prepare", "matmul_reference", "matmul_fast",
           "summation_bound"]

U = 2.0 ** -24           # unit roundoff of binary32
TINY = 2.0 ** -149       # smallest subnormal: absolute error floor of one rounding
ROW_RISKY_NONZERO = 1    # row k of B: every nonzero A[:, k] is risky
ROW_RISKY_ALL = 2        # row k of B has inf/NaN: every A[:, k] is risky
#: No product of elements with exponent fields e_a, e_b overflows while e_a + e_b <= this:
#: |a b| < 2^(e_a + e_b - 252) <= 2^127. Beyond it a product is computed explicitly, since a
#: GEMM that fuses it into the add would not round it to inf.
MAX_SAFE_EXPONENT_SUM = 379


class MatmulResult(NamedTuple):
    """``value`` (M x N float32), the number of ``products`` (M*K*N) and how many were ``hits``;
    ``lane``: the lane array's counters of the matmul (a
    :class:`~canna.sim.lanes.LaneArrayResult`) when the backend ran it on the array, else None."""

    value: np.ndarray
    products: int
    hits: int
    lane: object = None

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
#: (docs/performance.md).
_KERNEL_FLAGS = ("-O3", "-march=native", "-std=c11") + (
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


class _Decomposed(NamedTuple):
    """The fields of binary32 bit patterns the fast path decides on."""

    exp: np.ndarray          # biased exponent (int32)
    frac: np.ndarray         # fraction
    normal: np.ndarray       # 1 <= exp <= 254
    qualifies: np.ndarray    # normal and the hit rule holds (golden.qualifies)
    pow2_exp: np.ndarray     # exponent of the power of two a hit replaces it with: exp + m1


def _decompose(bits: np.ndarray, t: int) -> _Decomposed:
    e = ((bits >> 23) & 0xFF).astype(np.int32)
    f = bits & 0x7FFFFF
    normal = (e >= 1) & (e <= 254)
    return _Decomposed(e, f, normal, normal & golden.qualifies(f, t), e + (f >> 22).astype(np.int32))


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




class QuickScan(NamedTuple):
    """Arguments of policy b's lean path after the per-row counts (:func:`_matmul_quick`): the
    checked operand's N, its powers of two's exponent range, the GEMM's largest exponent."""

    n: int
    pow2_lo: int
    pow2_hi: int
    e_max: int


def _range(values: np.ndarray) -> tuple[int, int]:
    return (int(values.min()), int(values.max())) if values.size else (1000, -1000)


def transform_checked_numpy(w: np.ndarray, t: int, dual: bool):
    """NumPy twin of ``canna_transform_checked``: returns (mq, wn, qualifying, nonqualifying,
    row_flags, stats), as :class:`Prepared` holds them."""
    e, f, normal, qual, pe = _decompose(w, t)
    ok = qual & (pe < 255)
    plain = np.where(e == 255, 0, w).astype(np.uint32)
    pow2 = ((w & 0x80000000) | (pe.astype(np.uint32) << 23)).astype(np.uint32)
    if dual:
        mq = np.where(ok, pow2, 0).astype(np.uint32)
        wn = np.where(ok, 0, plain).astype(np.uint32)
    else:
        mq = np.where(ok, pow2, plain).astype(np.uint32)
        wn = None
    nonq = normal & ~ok & dual   # only dual multiplies these by a power of two
    row_flags = np.where((e == 255).any(axis=1), ROW_RISKY_ALL, 0)
    unrep = (qual & ~ok).any(axis=1)
    if dual:
        unrep |= ((e == 0) & (f != 0)).any(axis=1)
    row_flags = (row_flags | np.where(unrep, ROW_RISKY_NONZERO, 0)).astype(np.uint32)
    finite = e[e != 255]
    e_max = max(int(finite.max()) if finite.size else 0, int(pe[ok].max()) if ok.any() else 0)
    stats = np.array([*_range(pe[ok]), *_range(e[nonq]), e_max], dtype=np.int32)
    return (mq, wn, ok.sum(axis=1).astype(np.int64), nonq.sum(axis=1).astype(np.int64),
            row_flags, stats)


def scan_first_numpy(a: np.ndarray, t: int, dual: bool, row_flags, stats):
    """NumPy twin of ``canna_scan_first``: returns (risky_flat_indices, ma, cnt_normal, cnt_q),
    ``cnt_q`` None for policy b."""
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
        pow2 = ((a & 0x80000000) | (pe.astype(np.uint32) << 23)).astype(np.uint32)
        ma = np.where(bad, 0, np.where(qual, pow2, a)).astype(np.uint32)
    return (np.flatnonzero(bad), ma, (normal & safe).sum(axis=0).astype(np.int64),
            (qual & safe).sum(axis=0).astype(np.int64) if dual else None)


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
    # ``qualifying`` as uint32 for the quick scan (each count is at most N), always derived
    qualifying_u32: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "qualifying_u32", self.qualifying.astype(np.uint32))

    @property
    def shape(self) -> tuple:
        return self.original.shape


def max_finite_exponent_numpy(bits: np.ndarray) -> int:
    """NumPy twin of ``canna_max_finite_exponent``: the largest exponent field among the finite
    elements (0 when there is none)."""
    e = (bits >> 23) & 0xFF
    e = e[e != 255]
    return int(e.max()) if e.size else 0


def prepare(b, config: CFPUConfig = EXACT, *, native: bool | None = None) -> Prepared:
    """Transform the checked operand ``b`` (K x N float32) for :func:`matmul_fast`."""
    b = np.ascontiguousarray(_check_matrix("b", b))
    config = golden.check_config(config)
    k_dim, n = b.shape
    bits = b.view(np.uint32)
    lib = _Kernels.get() if native in (None, True) else None
    if native and lib is None:
        raise RuntimeError("native kernels requested but unavailable")
    if not config.enabled:   # no hits; B's largest exponent tells which products may overflow
        e_max = max_finite_exponent_numpy(bits) if lib is None else lib.max_finite_exponent(bits)
        empty = np.zeros(k_dim, dtype=np.int64)
        return Prepared(config, b, b, None, empty, empty, np.zeros(k_dim, np.uint32),
                        np.array(ExponentStats.empty(e_max), np.int32))
    dual = config.policy is Policy.DUAL
    t = config.tuning_bits
    if lib is None:
        mq, wn, qualifying, nonqualifying, row_flags, stats = transform_checked_numpy(bits, t, dual)
    else:
        mq = np.empty_like(bits)
        wn = np.empty_like(bits) if dual else None
        qualifying = np.empty(k_dim, np.int64)
        nonqualifying = np.empty(k_dim, np.int64)
        row_flags = np.empty(k_dim, np.uint32)
        stats = np.empty(len(ExponentStats._fields), np.int32)
        lib.transform_checked(bits, k_dim, n, t, dual, mq, wn, qualifying, nonqualifying,
                              row_flags, stats)
    st = ExponentStats.of(stats)
    quick = None if dual or row_flags.any() else QuickScan(n, st.pow2_lo, st.pow2_hi, st.e_max)
    return Prepared(config, b, mq.view(np.float32), None if wn is None else wn.view(np.float32),
                    qualifying, nonqualifying, row_flags, stats, quick)


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


def _matmul_quick(a, prep: Prepared) -> MatmulResult | None:
    """Policy b's common case, kept lean (at batch 100 every microsecond beside the GEMM counts):
    one kernel pass over ``a`` and one GEMM. The kernel answers only when no element of ``a`` is
    subnormal or non-finite, no hit's exponent can leave the range, and no sum can overflow;
    then nothing is risky, every nonzero element of ``a`` is normal, its hit count is exact, and
    the GEMM raises no overflow or invalid flag (given a BLAS that raises none spuriously, as
    some old OpenBLAS builds did), so it runs without ``np.errstate`` (which costs
    more than the kernel). It also declines an ``a`` that is not a C-contiguous 2-D float32
    ndarray with K columns. None: take the general path (which also reports bad input)."""
    lib = _Kernels.get()
    if lib is None or type(a) is not np.ndarray:
        return None
    hits = lib.scan_first_quick(a, prep.qualifying_u32, *prep.quick)   # -1: declined
    if hits < 0:
        return None
    return MatmulResult(np.matmul(a, prep.checked), a.size * prep.quick.n, hits)


def matmul_fast(a, b, config: CFPUConfig | None = None, *, native: bool | None = None) -> MatmulResult:
    """``a @ b`` with every product equal to the golden CFPU product, summed by BLAS.

    ``b`` is a float32 matrix, or a :class:`Prepared` (then ``config`` may be omitted). ``native``
    forces (True) or forbids (False) the C kernels; by default they are used when they build.
    Overflow gives inf and invalid operations NaN without a warning, as in the golden model;
    underflow follows ``np.seterr``, as in ``np.matmul``.
    """
    if isinstance(b, Prepared):
        if config is not None and golden.check_config(config) != b.config:
            raise ValueError(f"b was prepared for {b.config.describe()}, not {config.describe()}")
        prep = b
    else:
        prep = prepare(b, EXACT if config is None else config, native=native)
    if prep.quick is not None and native is not False:
        quick = _matmul_quick(a, prep)
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
        return MatmulResult(_matmul_exact(a, prep, native), products, 0)
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
    return MatmulResult(y, products, hits)


def _matmul_exact(a: np.ndarray, prep: Prepared, native: bool | None) -> np.ndarray:
    """Exact mode: one GEMM. A GEMM that fuses a product into the add could hide its overflow,
    so where some finite product may overflow (``e_a + e_max(B) > MAX_SAFE_EXPONENT_SUM``: only
    with huge operands) the rows of ``a`` holding such elements are computed by the reference.
    Subnormals, infinities and NaNs need nothing: the GEMM multiplies them as the CFPU does."""
    a_bits = a.view(np.uint32)
    lib = _Kernels.get() if native in (None, True) else None
    e_a = max_finite_exponent_numpy(a_bits) if lib is None else lib.max_finite_exponent(a_bits)
    e_b = int(prep.stats[4])
    with np.errstate(**_QUIET):
        y = np.matmul(a, prep.original)
    if e_a + e_b > MAX_SAFE_EXPONENT_SUM:
        e = (a_bits >> 23) & 0xFF
        rows = np.flatnonzero(((e != 255) & (e + e_b > MAX_SAFE_EXPONENT_SUM)).any(axis=1))
        y[rows] = matmul_reference(a[rows], prep.original, prep.config).value
    return y


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
