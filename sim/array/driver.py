"""``run_array``: a matmul on the RTL lane array, on any backend, checked against the golden
lane model (see :mod:`canna.sim.array`)."""
from __future__ import annotations

import importlib
import time

import numpy as np

from canna.spec.array import DEFAULT_STAGES, ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig, encode_config

from ..lanes import check_operands, lane_configs
from .check import ArrayRunResult, check_result, golden_model, toggle_activity
from .job import ArrayJob

__all__ = ["BACKENDS", "run_array"]

#: Backend name -> module with ``run(job: ArrayJob) -> RawRun`` (imported on first use).
BACKENDS = {"amaranth": "amaranth_sim", "cocotb": "cocotb_sim", "verilator-fast": "fast"}


def backend_module(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {tuple(BACKENDS)}")
    return importlib.import_module(f"{__package__}.{BACKENDS[name]}")


def run_array(a, b, config: CFPUConfig | list = EXACT, *, backend: str = "verilator-fast",
              geometry: ArrayGeometry = ArrayGeometry(), discipline: str = "lockstep",
              stages: int = DEFAULT_STAGES, seed=None, vcd=None, p_stall: float = 0.0,
              check: bool = True, activity: bool = False) -> ArrayRunResult:
    """Run ``a @ b`` on the RTL lane array and check it against the golden model.

    ``config``: one :class:`CFPUConfig` broadcast to every lane, or a list of ``lanes``
    configurations (lane ``l`` uses ``config[l]``).
    """
    module = backend_module(backend)
    a, b = check_operands(a, b)
    configs = lane_configs(config, geometry.lanes)
    job = ArrayJob(a_bits=a.view(np.uint32), b_bits=b.view(np.uint32),
                   codes=tuple(encode_config(c) for c in configs), geometry=geometry,
                   discipline=discipline, stages=stages, seed=seed, vcd=vcd, p_stall=p_stall,
                   activity=activity)
    raw = module.run(job)
    extra = dict(raw.extra)
    if raw.toggle_parts:
        extra.update(toggle_activity(raw.toggle_parts))
    counters = {k: np.asarray(v, dtype=np.int64) for k, v in raw.counters.items()}
    t_check = time.perf_counter()
    uniform = len(set(configs)) == 1
    model = golden_model(a, b, configs[0] if uniform else configs, geometry)
    m, n = raw.out.shape
    res = ArrayRunResult(value=raw.out.view(np.float32).copy(), products=m * n * a.shape[1],
                         hits=int(counters["hits"].sum()), tiles=job.tiles, discipline=discipline,
                         cycles=int(raw.cycles), wall_cycles=int(raw.wall_cycles),
                         counters=counters, model=model, backend=backend, seconds=raw.seconds,
                         activity=extra)
    if check:
        check_result(res, a, b, configs, geometry, seed=seed, check_cycles=not p_stall,
                     latency=None if p_stall else raw.latency)
    res.activity["check_seconds"] = time.perf_counter() - t_check
    res.activity["golden"] = "c" if model.extra.get("golden") == "c" else "numpy"
    return res
