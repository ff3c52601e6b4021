"""The lane array's parameters, shared by the RTL, the golden lane model and every driver: the
geometry (lanes, exact-multiply cycles), the issue disciplines, the per-lane counters, the CFPU's
default pipeline depth, and the tile plan that maps ``Y = A @ B`` onto the lanes.

Tile plan
    ``Y`` (M x N) is cut into *tiles* of ``lanes`` output elements taken in row-major order
    (tile t holds flat outputs ``t*lanes .. t*lanes+lanes-1``; the last tile may leave lanes
    idle); lane ``l`` of a tile owns one output and streams its K products.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

__all__ = ["ArrayGeometry", "DISCIPLINES", "COUNTERS", "DEFAULT_STAGES", "DEFAULT_LANES",
           "DEFAULT_EXACT_CYCLES", "pipeline_latency", "tile_count", "tile_plan", "split_tiles"]

#: Pipeline registers of the CFPU unless a caller asks for another depth.
DEFAULT_STAGES = 3
#: Lanes per SIMD unit (16: one Southern Islands SIMD).
DEFAULT_LANES = 16
#: Cycles an exact multiply occupies a lane (a hit takes 1).
DEFAULT_EXACT_CYCLES = 4
#: Issue disciplines of the array (see :mod:`canna.sim.lanes`).
DISCIPLINES = ("lockstep", "decoupled")
#: Per-lane counters of the RTL, in the order every driver reads them: operations, hits,
#: bypasses (zero/inf/NaN operand), busy cycles, exact multiplies.
COUNTERS = ("ops", "hits", "bypass", "busy", "mul")


@dataclass(frozen=True)
class ArrayGeometry:
    """Parameters of the lane array.

    Parameters
    ----------
    lanes : int
        Lanes per SIMD unit (16: one Southern Islands SIMD).
    exact_cycles : int
        Cycles an exact multiply occupies a lane (a hit takes 1).
    """

    lanes: int = DEFAULT_LANES
    exact_cycles: int = DEFAULT_EXACT_CYCLES

    def __post_init__(self):
        for name in ("lanes", "exact_cycles"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


def pipeline_latency(stages: int) -> int:
    """Cycles from a lane's last operation to its tile's output beat for CFPUs with ``stages``
    registers (the RTL's ``LaneArray.latency``)."""
    return operator.index(stages) + 2


def tile_count(m: int, n: int, lanes: int) -> int:
    """Tiles of an M x N output on ``lanes`` lanes."""
    return -(-(m * n) // lanes)


def tile_plan(m: int, n: int, lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, valid), each of shape (tiles, lanes): the output element of every lane."""
    tiles = tile_count(m, n, lanes)
    flat = np.arange(tiles * lanes)
    valid = flat < m * n
    flat = np.where(valid, flat, 0)
    return (flat // n).reshape(tiles, lanes), (flat % n).reshape(tiles, lanes), valid.reshape(tiles, lanes)


def split_tiles(tiles: int, parts: int) -> list[int]:
    """Bounds of ``min(parts, tiles)`` (at least 1) contiguous, near-equal tile ranges: part
    ``i`` runs tiles ``bounds[i] .. bounds[i+1]-1`` (the threads of a split matmul)."""
    parts = min(parts, max(1, tiles))
    return [tiles * i // parts for i in range(parts + 1)]
