"""The golden check of a lane-array run: :class:`ArrayRunResult` (what ``run_array`` returns),
the golden lane model it is checked against, and the reproducer a mismatch raises."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig

from ..lanes import LaneArrayResult, run_lane_array
from ..mismatch import Mismatch, differences, report
from ..paths import build_root
from ..toggles import register_toggles

__all__ = ["ArrayMismatch", "ArrayRunResult", "golden_model", "check_result", "toggle_activity"]


class ArrayMismatch(Mismatch):
    """The RTL array disagrees with the golden model; the message is a reproducer."""


@dataclass
class ArrayRunResult:
    """One matmul on the RTL array, with the golden model it was checked against."""

    value: np.ndarray                 # M x N float32, bit-identical to matmul_reference
    products: int
    hits: int
    tiles: int
    discipline: str
    cycles: int                       # the RTL's cycle counter (occupied cycles)
    wall_cycles: int                  # clock cycles from the first operation to the last beat
    counters: dict                    # per-lane RTL counters: ops, hits, bypass, busy, mul
    model: LaneArrayResult | None     # golden lane-array model
    backend: str
    seconds: float                    # simulation time (excluding builds and the golden check)
    activity: dict = field(default_factory=dict)

    @property
    def cycles_lockstep(self) -> int:
        return self.model.cycles_lockstep

    @property
    def cycles_decoupled(self) -> int:
        return self.model.cycles_decoupled

    @property
    def macs_per_second(self) -> float:
        return self.products / self.seconds if self.seconds else float("inf")


def _native_golden() -> bool:
    from .. import lanes_native
    return lanes_native.available()


def golden_model(a, b, config: CFPUConfig | list, geometry: ArrayGeometry) -> LaneArrayResult:
    """The golden lane model of a run (``config``: one for every lane or one per lane): the C
    twin (:mod:`canna.sim.lanes_native`, tested equal to the NumPy model) when it builds, else
    the NumPy model :func:`canna.sim.lanes.run_lane_array`."""
    if _native_golden():
        from .. import lanes_native
        return lanes_native.run_lane_array(a, b, config, geometry)
    return run_lane_array(a, b, config, geometry)


def toggle_activity(parts) -> dict:
    """``run_array``'s activity entries from the measured register toggles of each simulated
    model: ``parts`` = [((tile_lo, tile_hi), start values (lanes, 3), toggles (lanes, 3))]."""
    tot = sum(np.asarray(t, np.int64) for _, _, t in parts)
    return {"toggles_a": tot[:, 0], "toggles_b": tot[:, 1], "toggles_acc": tot[:, 2],
            "toggle_parts": list(parts)}


def _reproducer_path(tag: str) -> Path:
    d = build_root() / "array_mismatch"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"


def check_result(res: ArrayRunResult, a, b, configs, geometry: ArrayGeometry, *, seed=None,
                 check_cycles: bool = True, latency: int | None = None,
                 max_lines: int = 10) -> None:
    """Raise :class:`ArrayMismatch` unless ``res`` equals the golden model."""
    problems = []
    exp = res.model.value
    eb, gb = exp.view(np.uint32), res.value.view(np.uint32)
    idx = np.argwhere(eb != gb)
    if len(idx):
        n, lanes = b.shape[1], geometry.lanes
        problems += differences(
            [f"Y[{i},{j}] (tile {(i * n + j) // lanes}, lane {(i * n + j) % lanes})" for i, j in idx],
            [f"{int(eb[i, j]):08X} ({exp[i, j]!r})" for i, j in idx],
            [f"{int(gb[i, j]):08X} ({res.value[i, j]!r})" for i, j in idx],
            total=eb.size, max_lines=max_lines, unit="outputs")
    model = res.model
    want = {"ops": model.lane_products, "hits": model.lane_hits,
            "bypass": model.lane_bypassed, "busy": model.lane_busy_lockstep,
            "mul": model.lane_products - model.lane_hits - model.lane_bypassed}
    for name, w in want.items():
        got = np.asarray(res.counters[name])
        if not np.array_equal(got, w):
            problems.append(f"lane {name} counters: expected {w.tolist()}, got {got.tolist()}")
    for tiles, start, got in res.activity.get("toggle_parts", ()):
        want = register_toggles(a, b, configs, geometry, tiles=tiles, start=start)
        if not np.array_equal(got, want):
            problems.append(f"register toggles (held_a, held_b, acc) of tiles {tiles[0]}.."
                            f"{tiles[1] - 1}: expected {want.tolist()}, got {got.tolist()}")
    if check_cycles:
        w = model.cycles_lockstep if res.discipline == "lockstep" else model.cycles_decoupled
        if res.cycles != w:
            problems.append(f"cycles ({res.discipline}): expected {w}, got {res.cycles}")
        if latency is not None and res.wall_cycles != w + latency:
            problems.append(f"wall cycles: expected {w} + latency {latency}, got {res.wall_cycles}")
    if problems:
        path = _reproducer_path(res.backend)
        np.savez(path, a=a, b=b, configs=np.array([repr(c) for c in configs]),
                 expected=exp, actual=res.value)
        cfg = configs[0].describe() if len(set(configs)) == 1 else [c.describe() for c in configs]
        what = (f"lane array mismatch: backend {res.backend}, discipline {res.discipline}, "
                f"lanes {geometry.lanes}, exact_cycles {geometry.exact_cycles}, config {cfg}, "
                f"shape {a.shape} x {b.shape}")
        raise ArrayMismatch(report(what, seed=seed, problems=problems,
                                   notes=[f"operands saved to {path}",
                                          "rerun with vcd=... (amaranth/cocotb) for a waveform"]))
