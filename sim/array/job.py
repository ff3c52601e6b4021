"""What every lane-array backend is given (:class:`ArrayJob`) and returns (:class:`RawRun`).

A backend is a module with ``run(job: ArrayJob) -> RawRun``: it simulates the RTL array on the
job's operands and reports what the RTL produced, unchecked; :mod:`canna.sim.array.check`
compares that with the golden lane model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from canna.spec.array import ArrayGeometry, tile_count, tile_plan
from canna.spec.formats import BINARY32
from canna.spec.layouts import config_write_layout, pack

from ..lanes import lane_operands

__all__ = ["ArrayJob", "RawRun", "lane_ops"]


def lane_ops(a_bits: np.ndarray, b_bits: np.ndarray, lanes: int):
    """Per-lane operation streams: (op_a, op_b, nop), op_* of shape (tiles, lanes, K) and nop
    (tiles, lanes). Padding lanes get zero operands and ``nop``."""
    m, _ = a_bits.shape
    n = b_bits.shape[1]
    rows, cols, valid = tile_plan(m, n, lanes)
    return (*lane_operands(a_bits, b_bits, rows, cols, valid), ~valid)


@dataclass(frozen=True)
class ArrayJob:
    """One checked matmul for a backend: operand bits, every lane's encoded configuration, the
    array's parameters and the simulation options."""

    a_bits: np.ndarray                # M x K uint32
    b_bits: np.ndarray                # K x N uint32
    codes: tuple                      # per lane: canna.spec.config.encode_config
    geometry: ArrayGeometry
    discipline: str
    stages: int
    seed: int | None = None
    vcd: str | None = None            # waveform path (amaranth, cocotb)
    p_stall: float = 0.0              # output back-pressure probability (amaranth, cocotb)
    activity: bool = False            # measure the registers' switching activity

    @property
    def lanes(self) -> int:
        return self.geometry.lanes

    @property
    def tiles(self) -> int:
        return tile_count(self.a_bits.shape[0], self.b_bits.shape[1], self.lanes)

    def config_writes(self) -> list[int]:
        """The configuration writes (:func:`canna.spec.layouts.config_write_layout`) that set
        every lane: one broadcast when all lanes agree, else one per lane."""
        layout = config_write_layout(BINARY32, self.lanes)
        if len(set(self.codes)) == 1:
            return pack(layout, config=self.codes[0], lane=0, broadcast=1)
        return pack(layout, config=list(self.codes), lane=np.arange(self.lanes), broadcast=0)


@dataclass
class RawRun:
    """What a backend's RTL produced for one :class:`ArrayJob`, before any check."""

    out: np.ndarray                   # M x N uint32 result bits
    cycles: int                       # the RTL's cycle counter (occupied cycles)
    wall_cycles: int                  # clock cycles from the first operation to the last beat
    latency: int                      # pipeline fill and drain included in wall_cycles
    counters: dict                    # canna.spec.array.COUNTERS -> per-lane int64 array
    seconds: float                    # simulation time (excluding builds)
    toggle_parts: list = field(default_factory=list)  # [((tile lo, hi), start, toggles)] per model
    extra: dict = field(default_factory=dict)
