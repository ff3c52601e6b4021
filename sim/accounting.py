"""Cycle and energy accounting of a lane-array matmul without running it.

:func:`account_matmul` returns the :class:`~canna.sim.lanes.LaneArrayTotals` (products, hits,
bypassed, tiles, cycles of both disciplines, of the all-exact zero_skip baseline, of the CFPU
without zero skipping and of the plain array) that
:func:`canna.sim.lanes.run_lane_array` reports for ``Y = A @ B`` on the same geometry and
configuration -- the same integers, not an estimate -- at a fraction of the cost of the matmul
itself (``scripts/bench_accounting.py``); :func:`account_result` adds the per-lane counters (a
:class:`~canna.sim.lanes.LaneArrayResult` whose ``value`` is None: no output is computed). That
is what the energy model needs (:class:`canna.sim.energy.EnergyReport` takes either): exact =
products - hits - bypassed, adds = products, and the cycles.

Why it is exact
    A product ``A[i,k] * B[k,j]`` is *fast* (1 cycle) when it is a hit or a bypass (an operand is
    zero, infinite or NaN), else it takes ``exact_cycles`` = E cycles. Whether it is fast depends
    on the two operands' classes -- nz (nonzero finite), s (subnormal), n (normal), q (normal and
    :func:`canna.sim.golden.qualifies` its fraction) -- through the golden hit rule:

    * exact mode: ``exact = nzA & nzB``
    * policy b:   ``exact = sA & nzB | nA & (nzB & ~qB)``  (a hit needs both normal and qB)
    * dual:       ``exact = sA & nzB | nA & sB | (nA & ~qA) & (nB & ~qB)``

    as long as every hit's result exponent ``e_other + e_x - 127 + m1`` lies in 1..254 (the rule's
    last condition). With each class packed as bitsets over k (64 k per word), output (i, j) has
    ``popcount(OR_c A_c[i] & B_c[j])`` exact products (a popcount GEMM) and
    ``popcount(nzA[i] & nzB[j])`` products that are not bypassed; hits and bypasses follow. Per
    tile of lanes (valid lanes only; padding lanes cost nothing): lockstep
    ``sum_k max_l lat = K + (E-1) * popcount(OR_l exact_l)`` (a step where every valid lane is
    fast costs 1), decoupled ``max_l sum_k lat = K + (E-1) * max_l popcount(exact_l)``, and the
    zero_skip baseline the same with ``exact = nzA & nzB`` (fast = bypass only). The OR over a
    tile's lanes factors per row of ``Y`` the tile touches (``OR_j (a & b_j) = a & OR_j b_j``) and is
    answered by block range-OR tables of B's columns, so a tile costs a few words wherever it
    starts, wraps or pads. Lane l's busy cycles are ``K * (its tiles) + (E-1) * (its exact
    products)``.

The baselines without zero skipping
    They let a report split the CFPU's saving into zero skipping alone (plain -> zero_skip),
    approximation alone (plain -> no_skip) and both (plain -> the CFPU's cycles).
    ``cycles_plain`` (every product E cycles) is ``tiles * K * E``. ``cycles_no_skip_*`` is the
    CFPU without zero skipping (fast = hit only): the same algebra with the bypass removed --
    with nz' = all ones over the valid k and s' = not normal the exact formula becomes
    ``exact' = ~hit`` (policy b ``~(nA & qB)``, dual ``~(nA & nB & (qA | qB))``) -- which the
    engine evaluates as ``exact | bypass`` to share every pass of the CFPU's count: decoupled
    ``K + (E-1) * max_l (K - hits_l)`` from the exact and not-bypassed counts per output that
    the CFPU's count already has (no GEMM added); lockstep ``K + (E-1) * popcount(OR_l (exact_l | bypass_l))``, the bypass bits of
    a tile being ``OR_seg (~nzA[r] | OR_{j in seg} ~nzB[j])`` over the valid k: A's nz rows and one
    more B class (``~nzB``, packed with its range-OR tables only when B has a zero/inf/NaN) ORed
    into the exact terms of each tile. Without any zero/inf/NaN operand it is the CFPU's count;
    in exact mode (no hits) the plain one, both without extra work.

Out-of-range exponents (the slow path, never taken by ordinary NN data)
    Where for some k A's column k and B's row k hold exponents whose hit exponent could leave
    1..254 (decided from exponent ranges, over all k and then per k, as :func:`canna.sim.matmul.matmul_fast` decides
    from its ranges which products are safe: a huge or tiny normal against qualifying elements),
    the class formula may not hold: the 64-k words holding such a k are evaluated product by
    product with the full rule (:func:`exact_mask`, in C; for the no-skip count the same rule's
    hit alone), the others as above. Still exact;
    slower in proportion to those words (at worst all of them: an integer pass over the M*N*K
    products, still cheaper than the C twin of the lane model, which also multiplies and adds).
    ``account_result(...).extra["product_by_product_words"]`` says how many words took it.

Engine
    ``sim/accounting.c``, built on first use with :func:`canna.sim.native.build_shared` (gcc,
    cached and sealed; AVX-512 popcounts where the CPU has them, portable C otherwise, both
    tested). Without a compiler (or ``CANNA_GOLDEN_FAST=0``, or ``native=False``) the NumPy
    fallback runs the golden lane model's own accounting tile batch by tile batch
    (:func:`canna.sim.golden.mul_bits`' hit mask, :func:`canna.sim.lanes.multiplier_bypassed`,
    :func:`canna.sim.lanes.cycles_from_fast`) without its sums: the same numbers, much slower.

Prepared operand
    With fixed weights (inference), :func:`prepare_accounting` packs ``B`` once for a
    configuration (O(K*N)); each :func:`account_matmul` on it then costs a pass over ``A``
    (O(M*K)) and the popcount GEMM (about M*N*K/512 vector instructions per class pair). A
    plain ``B`` (a training step's operands, used once) is packed, tabled and accounted in one
    C call, without Python objects around it. A transposed view (``W.T``, F-contiguous) is
    packed from ``W``'s rows in either case, without a copy.

Narrow K (the weight gradient's K = batch, up to 4 words; AVX-512 build, no product-by-product
    words) takes another path in C: 8 tiles of a row per vector, looping over the lanes, so that
    a tile's maxima, minimum and OR over its lanes are element-wise (no count buffers, no
    range-OR tables, no horizontal maxima per tile); the same integers
    (``tests/sim/test_accounting_paths.py`` checks both paths against the golden model).

Limits
    One configuration for every lane (a list of equal ones is accepted; per-lane configurations
    need :func:`canna.sim.lanes.run_lane_array` or its C twin). Counts per output are int32
    (K < 2**31).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from canna.spec.array import ArrayGeometry, tile_count, tile_plan
from canna.spec.config import EXACT, CFPUConfig

from . import golden
from .lanes import (LaneArrayResult, LaneArrayTotals, check_operands, cycles_from_fast,
                    lane_configs, lane_operands, multiplier_bypassed)
from .native import native_golden_available

__all__ = ["AccountingOperand", "prepare_accounting", "account_matmul", "account_result",
           "available", "library", "exact_mask"]

_SOURCE = Path(__file__).with_name("accounting.c")
#: The engine only compares and counts integers; -fno-fast-math all the same (as every C here).
FLAGS = ("-O3", "-march=native", "-std=c11", "-fno-fast-math")
_F32 = np.dtype(np.float32)
_DEFAULT_GEOMETRY = ArrayGeometry()
#: Entries of the engine's raw counts before the per-lane sums (ACC_OUT_HEAD in accounting.c).
_HEAD = 8
#: Fields of LaneArrayTotals the engine writes after the per-lane sums, in their order.
_TOTALS = len(LaneArrayTotals.__dataclass_fields__)
_lib = None
_scalar_lib = None
_error: Exception | None = None


def library(*, scalar: bool = False):
    """The loaded engine (built on first use); raises if it cannot be built. ``scalar``: the
    portable build (``-DCANNA_ACC_SCALAR``: no SIMD), to test that path where AVX-512 exists."""
    global _lib, _scalar_lib, _error
    if scalar:
        if _scalar_lib is None:
            _scalar_lib = _load(_build(FLAGS + ("-DCANNA_ACC_SCALAR",), "accounting_scalar"))
        return _scalar_lib
    if _lib is None:
        if _error is not None:
            raise _error
        try:
            _lib = _load(_build(FLAGS, "accounting"))
        except Exception as e:  # no compiler: the NumPy fallback is used instead
            _error = e
            raise
    return _lib


def _build(flags, name):
    from .native import build_shared
    return build_shared(name, [_SOURCE], flags=flags)


def _load(lib):
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    lib.canna_acc_simd.argtypes = []
    lib.canna_acc_simd.restype = ctypes.c_int
    lib.canna_acc_bstride.argtypes = [i64, i64]
    lib.canna_acc_bstride.restype = i64
    lib.canna_acc_exact_mask.argtypes = [i64, p, p, i32, i32, i32, p]
    lib.canna_acc_exact_mask.restype = None
    for f in (lib.canna_acc_pack_b, lib.canna_acc_pack_bt):
        f.argtypes = [i64, i64, p, i32, i32, i32, i64, p, p, p]
        f.restype = None
    lib.canna_acc_tables.argtypes = [i64, i64, i64, i32, p, i32, p]
    lib.canna_acc_tables.restype = None
    lib.canna_acc_run.argtypes = [i64, i64, i64, p, p, i64, i64, i32, i32, i32, i32, i32, i64, p,
                                  p, p, p, p]
    lib.canna_acc_run.restype = ctypes.c_int
    lib.canna_acc_once.argtypes = [i64, i64, i64, p, p, i64, i64, i32, i32, i32, i32, i32, p]
    lib.canna_acc_once.restype = ctypes.c_int
    lib.canna_acc_set_narrow.argtypes = [ctypes.c_int]
    lib.canna_acc_set_narrow.restype = ctypes.c_int
    lib.canna_acc_out_head.argtypes = []
    lib.canna_acc_out_head.restype = ctypes.c_int
    if lib.canna_acc_out_head() != _HEAD:
        raise RuntimeError("accounting.c and accounting.py disagree on the layout of the counts")
    return lib


def available() -> bool:
    """True when the C engine builds and loads (``CANNA_GOLDEN_FAST=0`` disables it, as it
    disables the C twin of the lane model)."""
    return native_golden_available(library)


def exact_mask(a_bits, b_bits, config: CFPUConfig = EXACT, *, lib=None) -> np.ndarray:
    """Element-wise, in C: True where ``a * b`` (uint32 bit patterns) takes ``exact_cycles``,
    i.e. is neither a hit nor a bypass -- the rule the engine applies product by product."""
    a, b = np.broadcast_arrays(np.asarray(a_bits, np.uint32), np.asarray(b_bits, np.uint32))
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty(a.shape, np.uint8)
    (lib or library()).canna_acc_exact_mask(a.size, a.ctypes.data, b.ctypes.data,
                                            *golden.check_config(config).word_fields(),
                                            out.ctypes.data)
    return out.astype(bool)


def _one_config(config, lanes: int) -> CFPUConfig:
    """One configuration for every lane (a list is accepted when all its entries are equal)."""
    if isinstance(config, (list, tuple)):
        configs = lane_configs(config, lanes)
        if len(set(configs)) != 1:
            raise ValueError("accounting needs one configuration for every lane; "
                             "use canna.sim.lanes.run_lane_array for per-lane configurations")
        config = configs[0]
    return golden.check_config(config)


def _address(x: np.ndarray) -> int:
    """The data address of a C-contiguous array (cheaper than ``x.ctypes.data`` when writable)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(x))
    except (TypeError, ValueError, BufferError):
        return x.ctypes.data


class AccountingOperand:
    """The checked operand ``B`` (K x N float32) packed for :func:`account_matmul` under
    ``config`` by :func:`prepare_accounting`: class bitsets over k per column (word-major),
    per-column nonzero counts, exponent ranges, and range-OR tables per lane count (built on
    first use). ``original`` is B itself (not a copy, also when it is a transposed view):
    it must not change afterwards."""

    __slots__ = ("config", "original", "k", "n", "npad", "bcls", "pc_nz", "info", "lib",
                 "_tables", "_args", "_args2")

    def __init__(self, config, original, npad, bcls, pc_nz, info, lib):
        self.config, self.original, self.npad = config, original, npad
        self.bcls, self.pc_nz, self.info, self.lib = bcls, pc_nz, info, lib
        self.k, self.n = original.shape
        self._tables = {}
        # B's address and element strides (a transposed view is read in place)
        item = original.itemsize
        self._args = (original.ctypes.data, original.strides[0] // item,
                      original.strides[1] // item, *config.word_fields())
        self._args2 = (npad, bcls.ctypes.data, pc_nz.ctypes.data, info.ctypes.data)

    @property
    def shape(self) -> tuple:
        return self.original.shape

    @property
    def classes(self) -> int:
        """B classes with range-OR tables: those of the class formula (1 exact, 2 policy b,
        3 dual) and, approximate with a zero/inf/NaN in B, its z class (the no-skip count's
        bypass bits)."""
        if not self.config.enabled:
            return 1
        return (3 if self.config.policy.value == "dual" else 2) + int(self.info[4] != 0)

    def tables(self, lanes: int) -> np.ndarray:
        """Range-OR tables of every B class for tiles of ``lanes`` outputs (cached)."""
        entry = self._tables.get(lanes)
        if entry is None:
            w = (self.k + 63) // 64
            tab = np.empty((self.classes, 2, self.n, w), np.uint64)
            self.lib.canna_acc_tables(self.n, w, self.npad, self.classes, self.bcls.ctypes.data,
                                      lanes, tab.ctypes.data)
            entry = self._tables[lanes] = (tab, tab.ctypes.data)
        return entry[0]

    def run(self, a: np.ndarray, geometry: ArrayGeometry):
        """The engine's raw counts for a checked, C-contiguous ``a`` (M x K float32, M >= 1): a
        ctypes int64 array [cycles lockstep, decoupled, baseline lockstep, baseline decoupled,
        words evaluated product by product, plain cycles, no-skip lockstep, no-skip decoupled,
        then (from :data:`_HEAD`) per lane the sum of exact products, then per lane the sum of
        products that are not bypassed, then the :data:`_TOTALS` fields of LaneArrayTotals]."""
        lanes = geometry.lanes
        entry = self._tables.get(lanes)
        if entry is None:
            self.tables(lanes)
            entry = self._tables[lanes]
        out = (ctypes.c_int64 * (_HEAD + 2 * lanes + _TOTALS))()
        rc = self.lib.canna_acc_run(a.shape[0], self.n, self.k, _address(a), *self._args,
                                    lanes, geometry.exact_cycles, *self._args2, entry[1], out)
        if rc != 0:
            raise MemoryError("accounting: out of memory")
        return out


def prepare_accounting(b, config: CFPUConfig = EXACT, *, lib=None) -> AccountingOperand:
    """Pack the checked operand ``b`` (K x N float32) for ``config``, once for many
    :func:`account_matmul` calls (fixed weights). Needs the C engine (``lib``: a build from
    :func:`library`, the default one unless given). A transposed view (``W.T`` of a C-contiguous
    ``W``, the backward phase's operand) is packed from ``W``'s rows, without a copy."""
    b = np.asarray(b)
    transposed = b.ndim == 2 and b.flags.f_contiguous and not b.flags.c_contiguous
    if not transposed:
        b = np.ascontiguousarray(b)
    if b.dtype != _F32 or b.ndim != 2 or b.shape[0] == 0 or b.shape[1] == 0:
        raise ValueError(f"b must be a non-empty float32 matrix, got {b.dtype} {b.shape}")
    config = golden.check_config(config)
    lib = lib or library()
    k, n = b.shape
    w = (k + 63) // 64
    npad = -(-n // 16) * 16
    enabled, t, dual = config.word_fields()
    nb = 1 if not enabled else 3 if dual else 2
    # approximate: room for the z class too (written when B has a zero/inf/NaN)
    bcls = np.empty((nb + int(enabled != 0)) * lib.canna_acc_bstride(w, npad), np.uint64)
    pc_nz = np.empty(n, np.int32)
    info = np.empty(6, np.int32)
    pack = lib.canna_acc_pack_bt if transposed else lib.canna_acc_pack_b
    pack(k, n, b.ctypes.data, enabled, t, dual, npad, bcls.ctypes.data, pc_nz.ctypes.data,
         info.ctypes.data)
    return AccountingOperand(config, b, npad, bcls, pc_nz, info, lib)


#: (enabled, tuning bits, dual) per configuration, as the engine takes them (computed once)
_WORDS: dict = {}


def _once(a, b, config, geometry: ArrayGeometry):
    """The engine's raw counts (as :meth:`AccountingOperand.run`'s) for a plain ``b`` packed,
    tabled and accounted in one C call (``canna_acc_once``), or None where that path does not
    apply: ``a`` not a C-contiguous float32 matrix, ``b`` not a C- or F-contiguous one (a
    transposed view is read in place), shapes that do not fit, or no C engine."""
    if not (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype is _F32 and b.dtype is _F32
            and a.ndim == 2 and b.ndim == 2 and a.flags.c_contiguous
            and (b.flags.c_contiguous or b.flags.f_contiguous)
            and a.shape[1] == b.shape[0] > 0 and a.shape[0] > 0 and b.shape[1] > 0):
        return None
    words = _WORDS.get(config) if type(config) is CFPUConfig else None
    if words is None:
        if not isinstance(config, CFPUConfig):
            return None      # a list of per-lane configurations: checked by the general path
        words = _WORDS[config] = golden.check_config(config).word_fields()
    if not available():
        return None
    lanes = geometry.lanes
    out = (ctypes.c_int64 * (_HEAD + 2 * lanes + _TOTALS))()
    item = b.itemsize
    if library().canna_acc_once(a.shape[0], b.shape[1], a.shape[1], _address(a), b.ctypes.data,
                                b.strides[0] // item, b.strides[1] // item, *words, lanes,
                                geometry.exact_cycles, out) != 0:
        raise MemoryError("accounting: out of memory")
    return out


def _lane_valid(m: int, n: int, lanes: int) -> np.ndarray:
    """Tiles in which each lane holds an output (the others are padding)."""
    l = np.arange(lanes)
    return np.maximum(0, -(-(m * n - l) // lanes))


def _resolve(a, b, config, geometry):
    """Checked (a, b, config, prepared operand or None)."""
    if isinstance(b, AccountingOperand):
        if config is not None and _one_config(config, geometry.lanes) != b.config:
            raise ValueError(f"b was prepared for {b.config.describe()}, not "
                             f"{_one_config(config, geometry.lanes).describe()}")
        a, _ = check_operands(a, b.original)
        return a, b.original, b.config, b
    config = _one_config(EXACT if config is None else config, geometry.lanes)
    a, b = check_operands(a, b)
    return a, b, config, None


def _use_c(native, prep) -> bool:
    if native is False:
        return False
    if prep is not None or native:
        return True
    return available()


def account_result(a, b, config: CFPUConfig | None = None,
                   geometry: ArrayGeometry = _DEFAULT_GEOMETRY, *,
                   native: bool | None = None) -> LaneArrayResult:
    """The accounting of ``run_lane_array(a, b, config, geometry)`` with its per-lane counters:
    a :class:`~canna.sim.lanes.LaneArrayResult` equal to it field by field, except ``value``,
    which is None (no output is computed). Arguments as :func:`account_matmul`."""
    a, b, config, prep = _resolve(a, b, config, geometry)
    if not _use_c(native, prep):
        return _account_numpy(a, b, config, geometry)
    m, k = a.shape
    n = b.shape[1]
    lanes, e1 = geometry.lanes, geometry.exact_cycles - 1
    raw = _once(a, b, config, geometry) if prep is None else None
    if raw is None:
        raw = (prep or prepare_accounting(b, config)).run(a, geometry)
    out = np.frombuffer(raw, np.int64)
    lane_ex, lane_base = out[_HEAD:_HEAD + lanes], out[_HEAD + lanes:_HEAD + 2 * lanes]
    lane_products = _lane_valid(m, n, lanes) * k
    lane_hits = lane_base - lane_ex
    return LaneArrayResult(
        value=None, products=m * n * k, hits=int(lane_hits.sum()), tiles=tile_count(m, n, lanes),
        cycles_lockstep=int(out[0]), cycles_decoupled=int(out[1]),
        cycles_baseline=int(out[2]), cycles_baseline_decoupled=int(out[3]),
        cycles_plain=int(out[5]), cycles_no_skip_lockstep=int(out[6]),
        cycles_no_skip_decoupled=int(out[7]),
        lane_products=lane_products, lane_hits=lane_hits,
        lane_bypassed=lane_products - lane_base, lane_busy_lockstep=lane_products + e1 * lane_ex,
        extra={"accounting": "c", "product_by_product_words": int(out[4])})


def account_matmul(a, b, config: CFPUConfig | None = None,
                   geometry: ArrayGeometry = _DEFAULT_GEOMETRY, *,
                   native: bool | None = None) -> LaneArrayTotals:
    """The :class:`~canna.sim.lanes.LaneArrayTotals` of ``run_lane_array(a, b, config,
    geometry)`` -- products, hits, bypassed, tiles and the seven cycle counts (CFPU, zero_skip
    and no-skip arrays in both disciplines, plain) -- exactly (see the module docstring),
    without computing ``a @ b``.

    ``a``: M x K float32, the first operand. ``b``: K x N float32, the checked operand, or an
    :class:`AccountingOperand` from :func:`prepare_accounting` (then ``config`` may be omitted,
    and the C engine is used). ``config``: one :class:`CFPUConfig` for every lane (exact when
    omitted with a plain ``b``). ``native``: False forces the NumPy fallback, True the C engine;
    by default C when it builds."""
    out = prep = None
    if (type(b) is AccountingOperand and config is None and native is not False
            and type(a) is np.ndarray and a.dtype is _F32 and a.ndim == 2
            and a.shape[1] == b.k and a.shape[0] > 0 and a.flags.c_contiguous):
        prep = b        # the lean path: everything is already checked
    elif native is not False and type(b) is np.ndarray:
        out = _once(a, b, EXACT if config is None else config, geometry)   # the lean plain path
    if out is None and prep is None:
        a, b, config, prep = _resolve(a, b, config, geometry)
        if not _use_c(native, prep):
            r = _account_numpy(a, b, config, geometry)
            return LaneArrayTotals(r.products, r.hits, r.bypassed, r.tiles, r.cycles_lockstep,
                                   r.cycles_decoupled, r.cycles_baseline,
                                   r.cycles_baseline_decoupled, r.cycles_plain,
                                   r.cycles_no_skip_lockstep, r.cycles_no_skip_decoupled)
        if prep is None:
            out = _once(a, b, config, geometry)
            if out is None:
                prep = prepare_accounting(b, config)
    if out is None:
        out = prep.run(a, geometry)
    return LaneArrayTotals(*out[_HEAD + 2 * geometry.lanes:])


def _account_numpy(a: np.ndarray, b: np.ndarray, config: CFPUConfig, geometry: ArrayGeometry,
                   tile_batch: int = 256) -> LaneArrayResult:
    """The golden lane model's accounting without its sums (the fallback without gcc): the
    same tile batches, hit masks (golden.mul_bits), bypasses and cycles_from_fast."""
    m, k_dim = a.shape
    n = b.shape[1]
    lanes = geometry.lanes
    a_bits, b_bits = a.view(np.uint32), b.view(np.uint32)
    rows, cols, valid = tile_plan(m, n, lanes)
    sums = np.zeros(6, np.int64)
    lane_hits = np.zeros(lanes, np.int64)
    lane_bypassed = np.zeros(lanes, np.int64)
    busy = np.zeros(lanes, np.int64)
    for t0 in range(0, rows.shape[0], tile_batch):
        r, c, v = rows[t0:t0 + tile_batch], cols[t0:t0 + tile_batch], valid[t0:t0 + tile_batch]
        op_a, op_b = lane_operands(a_bits, b_bits, r, c, v)
        hit = golden.mul_bits(op_a, op_b, config).hit & v[:, :, None]
        bypass = multiplier_bypassed(op_a, op_b) & v[:, :, None]
        ls, dc, bz = cycles_from_fast(hit | bypass, v, geometry.exact_cycles)
        bls, bdc, _ = cycles_from_fast(bypass, v, geometry.exact_cycles)
        sums[:4] += [int(ls.sum()), int(dc.sum()), int(bls.sum()), int(bdc.sum())]
        if config.enabled:      # exact mode has no hits: no-skip = plain (below)
            nls, ndc, _ = cycles_from_fast(hit, v, geometry.exact_cycles)
            sums[4:] += [int(nls.sum()), int(ndc.sum())]
        busy += bz
        lane_hits += hit.sum(axis=(0, 2))
        lane_bypassed += bypass.sum(axis=(0, 2))
    plain = rows.shape[0] * k_dim * geometry.exact_cycles
    if not config.enabled:
        sums[4:] = plain
    return LaneArrayResult(
        value=None, products=m * n * k_dim, hits=int(lane_hits.sum()), tiles=rows.shape[0],
        cycles_lockstep=int(sums[0]), cycles_decoupled=int(sums[1]),
        cycles_baseline=int(sums[2]), cycles_baseline_decoupled=int(sums[3]),
        cycles_plain=plain,
        cycles_no_skip_lockstep=int(sums[4]), cycles_no_skip_decoupled=int(sums[5]),
        lane_products=valid.sum(axis=0).astype(np.int64) * k_dim, lane_hits=lane_hits,
        lane_bypassed=lane_bypassed, lane_busy_lockstep=busy, extra={"accounting": "numpy"})
