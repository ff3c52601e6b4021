"""Fast C twin of the golden lane-array model (``sim/lanes_native.c``), for checking the RTL.

The NumPy golden model (:mod:`canna.sim.golden`, :func:`canna.sim.lanes.run_lane_array`) stays
the specification; this module computes the same results bit for bit and count for count, fast
enough that checking a co-simulation run does not cost more than running it (its speed:
docs/performance.md). ``tests/sim/test_lanes_native.py`` checks it against the NumPy model on
millions of vectors (every tuning bit count, both policies, random and directed operands).

Built on first use with :func:`canna.sim.native.build_shared` (gcc, cached by content hash).
:func:`available` says whether the build works; :mod:`canna.sim.array` falls back to the
NumPy model when it does not.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from canna.spec.array import ArrayGeometry, split_tiles, tile_count
from canna.spec.config import EXACT, CFPUConfig

from .lanes import LaneArrayResult, check_operands, lane_configs
from .native import native_golden_available, run_parts

__all__ = ["available", "library", "mul_bits", "add_bits", "run_lane_array"]

_SOURCE = Path(__file__).with_name("lanes_native.c")
#: Never -ffast-math (it would flush subnormals); no fused multiply-add.
FLAGS = ("-O2", "-march=native", "-std=c11", "-ffp-contract=off", "-fno-fast-math")
_lib = None
_error: Exception | None = None


def library():
    """The loaded shared library (built on first use); raises if it cannot be built."""
    global _lib, _error
    if _lib is None:
        if _error is not None:
            raise _error
        try:
            from .native import build_shared
            lib = build_shared("lanes_native", [_SOURCE], flags=FLAGS)
        except Exception as e:  # no compiler: the NumPy model is used instead
            _error = e
            raise
        p, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
        lib.canna_golden_mul.argtypes = [i64, p, p, i32, i32, i32, p, p]
        lib.canna_golden_mul.restype = None
        lib.canna_golden_add.argtypes = [i64, p, p, p]
        lib.canna_golden_add.restype = None
        lib.canna_golden_lanes.argtypes = [i64, i64, i64, p, p, i32, i32, p, p, p, p, p, p, p,
                                           i64, i64]
        lib.canna_golden_lanes.restype = ctypes.c_int
        _lib = lib
    return _lib


def available() -> bool:
    """True when the C twin builds and loads (``CANNA_GOLDEN_FAST=0`` disables it)."""
    return native_golden_available(library)


def _u32(x) -> np.ndarray:
    x = np.ascontiguousarray(x)
    if x.dtype != np.uint32:
        raise TypeError(f"expected uint32 bit patterns, got {x.dtype}")
    return x


def mul_bits(a, b, config: CFPUConfig = EXACT) -> tuple[np.ndarray, np.ndarray]:
    """``(bits, hit)`` of :func:`canna.sim.golden.mul_bits` (no flags)."""
    a, b = np.broadcast_arrays(_u32(a), _u32(b))
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty(a.shape, np.uint32)
    hit = np.empty(a.shape, np.uint8)
    library().canna_golden_mul(a.size, a.ctypes.data, b.ctypes.data, *config.word_fields(),
                               out.ctypes.data, hit.ctypes.data)
    return out, hit.astype(bool)


def add_bits(a, b) -> np.ndarray:
    """The bits of :func:`canna.sim.golden.add_bits` (= :func:`canna.sim.golden.add`)."""
    a, b = np.broadcast_arrays(_u32(a), _u32(b))
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty(a.shape, np.uint32)
    library().canna_golden_add(a.size, a.ctypes.data, b.ctypes.data, out.ctypes.data)
    return out


def _run(a, b, configs, geometry: ArrayGeometry, threads: int | None):
    a, b = check_operands(a, b)
    lib = library()
    m, k_dim = a.shape
    n = b.shape[1]
    lanes = geometry.lanes
    a_bits = a.view(np.uint32)
    bt = np.ascontiguousarray(b.view(np.uint32).T)
    cfgs = np.array([c.word_fields() for c in configs], np.int32).reshape(-1)
    out = np.zeros(m * n, np.uint32)
    tiles = tile_count(m, n, lanes)
    threads = threads or min(2, os.cpu_count() or 1)
    bounds = split_tiles(tiles, min(threads, max(1, m * n * k_dim // 200_000)))
    parts = len(bounds) - 1
    per_lane = np.zeros((parts, 4, lanes), np.int64)
    sums = np.zeros((parts, 7), np.int64)

    def part(i):
        return lib.canna_golden_lanes(
            m, n, k_dim, a_bits.ctypes.data, bt.ctypes.data, lanes, geometry.exact_cycles,
            cfgs.ctypes.data, out.ctypes.data, per_lane[i, 0].ctypes.data,
            per_lane[i, 1].ctypes.data, per_lane[i, 2].ctypes.data, per_lane[i, 3].ctypes.data,
            sums[i].ctypes.data, bounds[i], bounds[i + 1])
    rcs = run_parts(part, parts)
    if any(rcs):
        raise ValueError(f"golden_lanes rejected lanes={lanes}")
    return out.view(np.float32).reshape(m, n), per_lane.sum(axis=0), sums.sum(axis=0), tiles


def run_lane_array(a, b, config: CFPUConfig | list = EXACT,
                   geometry: ArrayGeometry = ArrayGeometry(), *,
                   threads: int | None = None) -> LaneArrayResult:
    """:func:`canna.sim.lanes.run_lane_array`, computed in C: the same result, field by field
    (``config``: one for every lane or a list, one per lane, as there)."""
    value, lane, sums, tiles = _run(a, b, lane_configs(config, geometry.lanes), geometry, threads)
    return LaneArrayResult(
        value=value, products=int(lane[0].sum()), hits=int(lane[1].sum()), tiles=tiles,
        cycles_lockstep=int(sums[0]), cycles_decoupled=int(sums[1]),
        cycles_baseline=int(sums[2]), cycles_baseline_decoupled=int(sums[3]),
        cycles_plain=int(sums[4]), cycles_no_skip_lockstep=int(sums[5]),
        cycles_no_skip_decoupled=int(sums[6]),
        lane_products=lane[0], lane_hits=lane[1], lane_bypassed=lane[2],
        lane_busy_lockstep=lane[3], extra={"golden": "c"})
