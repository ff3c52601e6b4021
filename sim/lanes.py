"""Golden model of the SIMD lane array: which lane computes what, and how many cycles it takes.

Mapping
    ``Y = A @ B`` (M x K times K x N) is cut into *tiles* of ``lanes`` output elements, taken in
    row-major order of ``Y`` (tile t holds flat outputs ``t*lanes .. t*lanes+lanes-1``; the last
    tile may leave lanes idle). Lane ``l`` of a tile owns one output ``Y[i, j]`` and streams its
    dot product ``acc <- acc + A[i,k] * B[k,j]`` for ``k = 0 .. K-1``, exactly the golden
    sequential reference (:func:`canna.sim.matmul.matmul_reference`): products rounded by the
    CFPU, sums by the binary32 adder, accumulator reset to +0.0 per tile.

Variable latency
    A hit retires in 1 cycle; an exact multiply occupies its lane for ``exact_cycles`` cycles
    (a multi-cycle significand multiplier: the area/energy trade a configurable FPU makes). A
    product with a zero, infinite or NaN operand needs no significand multiply either (its result
    is a special value; the CFPU holds its multiplier still for it as for a hit), so it also
    retires in 1 cycle: with ReLU activations that is a large share of all products. The add is
    pipelined behind the multiply and costs no extra issue cycle.

Two disciplines
    * *lockstep* -- the lanes form one SIMD unit: step ``k`` of a tile completes when its slowest
      lane does, so one exact product among the lanes costs the whole SIMD ``exact_cycles``:
      ``cycles(tile) = sum_k max_l lat(l, k)``.
    * *decoupled* -- each lane runs its own dot product and the lanes synchronise only at tile
      boundaries: ``cycles(tile) = max_l sum_k lat(l, k)``.

Baselines (every one on the same operands, tiles and disciplines; padding lanes cost nothing)
    * ``cycles_baseline`` / ``cycles_baseline_decoupled`` -- *zero_skip*: the all-exact array
      (no hits; bypasses still 1 cycle), so the speedups isolate what approximation buys on top
      of skipping zeros.
    * ``cycles_plain`` -- *plain*: an exact FPU without zero skipping, every product
      ``exact_cycles``: ``tiles * K * exact_cycles`` (the same in both disciplines).
    * ``cycles_no_skip_lockstep`` / ``cycles_no_skip_decoupled`` -- *no_skip*: the CFPU array
      without zero skipping: a product retires in 1 cycle iff it is a hit, every other one
      (zero/inf/NaN operands included) takes ``exact_cycles``.
    Together they decompose the CFPU's saving: zero skipping alone (plain -> zero_skip),
    approximation alone (plain -> no_skip), both (plain -> the CFPU's cycles). Always
    ``cycles <= cycles_no_skip <= cycles_plain`` and ``cycles <= cycles_baseline <= cycles_plain``;
    without zero/inf/NaN operands no_skip equals the CFPU's cycles and zero_skip the plain ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import golden
from canna.spec.array import ArrayGeometry, tile_plan
from canna.spec.config import EXACT, CFPUConfig

__all__ = ["LaneArrayResult", "LaneArrayTotals", "check_operands", "lane_configs",
           "lane_operands", "multiply_lanes", "run_lane_array", "cycles_from_fast",
           "multiplier_bypassed", "plan"]


@dataclass
class LaneArrayResult:
    """Outputs and accounting of one matmul on the lane array."""

    value: np.ndarray                 # M x N float32, bit-identical to matmul_reference
    products: int
    hits: int
    tiles: int
    cycles_lockstep: int
    cycles_decoupled: int
    cycles_baseline: int              # all-exact array (zero skipping only), lockstep
    cycles_baseline_decoupled: int    # all-exact array (zero skipping only), decoupled
    cycles_plain: int                 # exact FPU, no zero skipping: tiles * K * exact_cycles
    cycles_no_skip_lockstep: int      # the CFPU without zero skipping (fast = hit), lockstep
    cycles_no_skip_decoupled: int     # the CFPU without zero skipping (fast = hit), decoupled
    lane_products: np.ndarray         # per lane: products issued
    lane_hits: np.ndarray             # per lane: hits
    lane_bypassed: np.ndarray         # per lane: products with a zero/inf/NaN operand
    lane_busy_lockstep: np.ndarray    # per lane: cycles spent working (not waiting) in lockstep
    extra: dict = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.products if self.products else 0.0

    @property
    def bypassed(self) -> int:
        return int(self.lane_bypassed.sum())

    @property
    def speedup_lockstep(self) -> float:
        """Lockstep approximate array vs the lockstep all-exact array (the GPU baseline)."""
        return self.cycles_baseline / self.cycles_lockstep if self.cycles_lockstep else 1.0

    @property
    def speedup_decoupled(self) -> float:
        """Decoupled approximate array vs the decoupled all-exact array."""
        return self.cycles_baseline_decoupled / self.cycles_decoupled if self.cycles_decoupled else 1.0


@dataclass
class LaneArrayTotals:
    """Counters of many lane-array runs added up (e.g. every matmul of an inference pass)."""

    products: int = 0
    hits: int = 0
    bypassed: int = 0
    tiles: int = 0
    cycles_lockstep: int = 0
    cycles_decoupled: int = 0
    cycles_baseline: int = 0
    cycles_baseline_decoupled: int = 0
    cycles_plain: int = 0
    cycles_no_skip_lockstep: int = 0
    cycles_no_skip_decoupled: int = 0

    def add(self, r: "LaneArrayResult | LaneArrayTotals") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + int(getattr(r, name)))

    @property
    def hit_rate(self) -> float:
        return self.hits / self.products if self.products else 0.0


def lane_operands(a_bits: np.ndarray, b_bits: np.ndarray, rows, cols, valid):
    """The operand bits every lane is fed, (tiles, lanes, K) each, for the tiles of
    ``rows, cols, valid`` (from :func:`tile_plan`): a padding lane's ``nop`` carries zeros."""
    op_a = np.where(valid[:, :, None], a_bits[rows], 0).astype(np.uint32)
    op_b = np.where(valid[:, :, None], b_bits.T[cols], 0).astype(np.uint32)
    return op_a, op_b


def multiply_lanes(op_a: np.ndarray, op_b: np.ndarray, configs: list[CFPUConfig]):
    """(bits, hit) of every lane's products, (tiles, lanes, K): lane ``l`` multiplies with
    ``configs[l]``."""
    if len(set(configs)) == 1:
        prod = golden.mul_bits(op_a, op_b, configs[0])
        return prod.bits, prod.hit
    bits = np.empty(op_a.shape, np.uint32)
    hit = np.empty(op_a.shape, bool)
    for l, cfg in enumerate(configs):
        prod = golden.mul_bits(op_a[:, l], op_b[:, l], cfg)
        bits[:, l], hit[:, l] = prod.bits, prod.hit
    return bits, hit


def multiplier_bypassed(a_bits: np.ndarray, b_bits: np.ndarray) -> np.ndarray:
    """Products that need no significand multiply: an operand is zero, infinite or NaN."""
    def special(x):
        e = (x >> 23) & 0xFF
        return (e == 0xFF) | ((x & 0x7FFFFFFF) == 0)
    return special(a_bits) | special(b_bits)


def cycles_from_fast(fast: np.ndarray, valid: np.ndarray, exact_cycles: int):
    """Cycles of a batch of tiles from its pattern of 1-cycle products (hits and bypasses).

    ``fast``: bool (tiles, lanes, K); ``valid``: bool (tiles, lanes). Returns (lockstep per tile,
    decoupled per tile, per-lane busy cycles in lockstep summed over tiles).
    """
    lat = np.where(fast, 1, exact_cycles) * valid[:, :, None]
    step = lat.max(axis=1)                        # (tiles, K): the SIMD waits for its slowest lane
    lockstep = step.sum(axis=1)
    decoupled = lat.sum(axis=2).max(axis=1)
    busy = lat.sum(axis=(0, 2))
    return lockstep, decoupled, busy


def check_operands(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Validate a lane-array matmul's operands (float32 matrices, a.shape[1] == b.shape[0] >= 1,
    at least one output)
    and return them C-contiguous. Every lane-array path checks through here."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.dtype != np.float32 or b.dtype != np.float32:
        raise TypeError(f"lane array operands must be float32, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape}, b is {b.shape}")
    if a.shape[1] == 0:
        raise ValueError("K must be >= 1")
    if a.shape[0] == 0 or b.shape[1] == 0:
        raise ValueError(f"the lane array needs at least one output: a is {a.shape}, b is {b.shape}")
    return a, b


def lane_configs(config: CFPUConfig | list, lanes: int) -> list[CFPUConfig]:
    """The configuration of every lane: ``config`` broadcast to all, or a list with one per lane
    (checked: ``lanes`` of them)."""
    configs = list(config) if isinstance(config, (list, tuple)) else [config] * lanes
    if len(configs) != lanes or not all(isinstance(c, CFPUConfig) for c in configs):
        raise ValueError(f"config must be a CFPUConfig or a list of {lanes} of them")
    return configs


class LanePlan(NamedTuple):
    """A checked lane-array matmul: operand bits, shapes, every lane's configuration and the
    tile plan (:func:`tile_plan`)."""

    a_bits: np.ndarray
    b_bits: np.ndarray
    m: int
    k: int
    n: int
    configs: list
    rows: np.ndarray
    cols: np.ndarray
    valid: np.ndarray

    @property
    def tiles(self) -> int:
        return self.rows.shape[0]

    def batches(self, lo: int, hi: int, tile_batch: int):
        """Tiles ``lo .. hi`` in batches of ``tile_batch``: ``(r, c, v, op_a, op_b, bits, hit)``,
        the batch's tile plan and every lane's operands and products, (tiles, lanes, K)."""
        for t0 in range(lo, hi, tile_batch):
            t1 = min(hi, t0 + tile_batch)
            r, c, v = self.rows[t0:t1], self.cols[t0:t1], self.valid[t0:t1]
            op_a, op_b = lane_operands(self.a_bits, self.b_bits, r, c, v)
            bits, hit = multiply_lanes(op_a, op_b, self.configs)
            yield r, c, v, op_a, op_b, bits, hit


def plan(a, b, config, geometry: ArrayGeometry) -> LanePlan:
    """The checked plan of ``a @ b`` on the lane array (shared by every golden lane-array run)."""
    a, b = check_operands(a, b)
    (m, k_dim), n = a.shape, b.shape[1]
    return LanePlan(a.view(np.uint32), b.view(np.uint32), m, k_dim, n,
                     lane_configs(config, geometry.lanes), *tile_plan(m, n, geometry.lanes))


def run_lane_array(a, b, config: CFPUConfig | list = EXACT,
                   geometry: ArrayGeometry = ArrayGeometry(), *,
                   tile_batch: int = 256) -> LaneArrayResult:
    """Run ``a @ b`` on the golden lane array: bit-exact outputs, hits and cycles.

    ``config``: one configuration for every lane, or a list of ``geometry.lanes`` of them (lane
    ``l`` runs ``config[l]``, as the array's per-lane configuration writes set it)."""
    lane_plan = plan(a, b, config, geometry)
    m, k_dim, n, lanes = lane_plan.m, lane_plan.k, lane_plan.n, geometry.lanes
    out = np.zeros(m * n, dtype=np.float32)
    lockstep = decoupled = baseline = baseline_decoupled = no_skip = no_skip_decoupled = 0
    lane_products = np.zeros(lanes, np.int64)
    lane_hits = np.zeros(lanes, np.int64)
    busy = np.zeros(lanes, np.int64)
    lane_bypassed = np.zeros(lanes, np.int64)
    for r, c, v, op_a, op_b, bits, hit in lane_plan.batches(0, lane_plan.tiles, tile_batch):
        hit = hit & v[:, :, None]
        bypass = multiplier_bypassed(op_a, op_b) & v[:, :, None]
        acc = np.zeros(r.shape, dtype=np.float32)
        p = bits.view(np.float32)
        for k in range(k_dim):
            acc = golden.add(acc, p[:, :, k])
        flat = (r * n + c)[v]
        out[flat] = acc[v]
        ls, dc, bz = cycles_from_fast(hit | bypass, v, geometry.exact_cycles)
        base_ls, base_dc, _ = cycles_from_fast(bypass, v, geometry.exact_cycles)
        ns_ls, ns_dc, _ = cycles_from_fast(hit, v, geometry.exact_cycles)
        baseline += int(base_ls.sum())
        baseline_decoupled += int(base_dc.sum())
        no_skip += int(ns_ls.sum())
        no_skip_decoupled += int(ns_dc.sum())
        lockstep += int(ls.sum())
        decoupled += int(dc.sum())
        busy += bz
        lane_products += v.sum(axis=0) * k_dim
        lane_hits += hit.sum(axis=(0, 2))
        lane_bypassed += bypass.sum(axis=(0, 2))
    return LaneArrayResult(
        value=out.reshape(m, n), products=m * n * k_dim, hits=int(lane_hits.sum()), tiles=lane_plan.tiles,
        cycles_lockstep=lockstep, cycles_decoupled=decoupled,
        cycles_baseline=baseline, cycles_baseline_decoupled=baseline_decoupled,
        cycles_plain=lane_plan.tiles * k_dim * geometry.exact_cycles,
        cycles_no_skip_lockstep=no_skip, cycles_no_skip_decoupled=no_skip_decoupled,
        lane_products=lane_products, lane_hits=lane_hits, lane_bypassed=lane_bypassed,
        lane_busy_lockstep=busy)
