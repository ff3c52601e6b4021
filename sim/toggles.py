"""Switching activity of the lane array's registers, the energy model's measured input
(:mod:`canna.sim.energy`): the golden count of every lane register's bit toggles for a matmul
(:func:`register_toggles`) and the probe the simulations count them with (:class:`ToggleProbe`).
"""
from __future__ import annotations

import numpy as np

from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig

from . import golden
from .lanes import plan

__all__ = ["TOGGLE_REGISTERS", "popcount", "register_toggles", "ToggleProbe"]


#: The lane registers whose bit toggles :func:`register_toggles` counts, in its column order.
TOGGLE_REGISTERS = ("held_a", "held_b", "acc")


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of every element of a uint32 array (int64)."""
    x = np.asarray(x, dtype=np.uint32)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 4), axis=-1).sum(axis=-1, dtype=np.int64)


def register_toggles(a, b, config: CFPUConfig | list = EXACT,
                     geometry: ArrayGeometry = ArrayGeometry(), *, tiles: tuple | None = None,
                     start: np.ndarray | None = None, tile_batch: int = 256) -> np.ndarray:
    """Bit toggles of every lane's registers while the array runs ``a @ b``: (lanes, 3) for
    :data:`TOGGLE_REGISTERS` - the held operands ``a`` and ``b`` (loaded with every accepted
    operation, a padding lane's ``nop`` carrying zeros) and the accumulator (loaded with every
    partial sum ``add(acc, p_k)`` of a real operation, ``add(+0.0, p_0)`` first in each tile).

    Only tiles ``tiles = (lo, hi)`` run (default: all), starting from the register values
    ``start`` ((lanes, 3) uint32; default zeros, the reset state): the switching activity the
    fast co-simulation measures on each of its models, checked against this.
    """
    lane_plan = plan(a, b, config, geometry)
    lanes = geometry.lanes
    lo, hi = (0, lane_plan.tiles) if tiles is None else tiles
    if not 0 <= lo <= hi <= lane_plan.tiles:
        raise ValueError(f"tiles must be a range within 0..{lane_plan.tiles}, got {tiles}")
    prev = np.zeros((lanes, 3), np.uint32) if start is None else np.array(start, np.uint32)
    if prev.shape != (lanes, 3):
        raise ValueError(f"start must have shape ({lanes}, 3), got {prev.shape}")
    toggles = np.zeros((lanes, 3), np.int64)
    for r, c, v, op_a, op_b, bits, _ in lane_plan.batches(lo, hi, tile_batch):
        for col, ops in ((0, op_a), (1, op_b)):   # every accepted operation loads the register
            seq = np.concatenate([prev[:, col, None], ops.transpose(1, 0, 2).reshape(lanes, -1)],
                                 axis=1)
            toggles[:, col] += popcount(seq[:, 1:] ^ seq[:, :-1]).sum(axis=1)
            prev[:, col] = seq[:, -1]
        # partial sums of every lane of every tile; the accumulator before a tile holds the
        # previous tile's final sum (padding lanes, only in the last tile, leave it alone)
        partial = np.zeros(r.shape, np.float32)
        acc_toggles = np.zeros(r.shape, np.int64)
        for k in range(lane_plan.k):
            last = partial.view(np.uint32)
            partial = golden.add(partial, bits[:, :, k].view(np.float32))
            if k == 0:
                first = partial.view(np.uint32)
            else:
                acc_toggles += popcount(partial.view(np.uint32) ^ last)
        finals = partial.view(np.uint32)
        before = np.concatenate([prev[None, :, 2], finals[:-1]])
        acc_toggles += popcount(first ^ before)
        toggles[:, 2] += np.where(v, acc_toggles, 0).sum(axis=0)
        last_real = np.where(v.any(axis=0), v.shape[0] - 1 - np.argmax(v[::-1], axis=0), -1)
        prev[:, 2] = np.where(last_real >= 0, finals[np.maximum(last_real, 0), np.arange(lanes)],
                              prev[:, 2])
    return toggles


class ToggleProbe:
    """Counts the bit toggles of every lane's registers (:data:`TOGGLE_REGISTERS`) in a
    simulation: call ``sample(values)`` ((lanes, 3) register values) after every clock edge;
    the first sample is the start. ``start`` and ``toggles`` are what
    :func:`register_toggles` predicts from that start."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.start = None
        self.toggles = np.zeros((lanes, 3), np.int64)

    def sample(self, values) -> None:
        v = np.asarray(values, np.uint32).reshape(self.lanes, 3)
        if self.start is None:
            self.start = v
        else:
            self.toggles += popcount(self._prev ^ v)
        self._prev = v
