"""Lane-array backend ``"cocotb"``: cocotb on the Verilated array, one Python step per cycle
(the testbench is :mod:`canna.sim.array.cocotb_tb`); supports back-pressure and waveforms."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from canna.spec.array import COUNTERS, DEFAULT_STAGES, pipeline_latency

from ..paths import build_root
from ..rtl_build import array_name, array_verilog, cocotb_build
from ..testbench import run_cocotb_file_test
from .job import ArrayJob, RawRun, lane_ops

__all__ = ["build", "run"]


def build(*, lanes: int, exact_cycles: int, discipline: str, stages: int = DEFAULT_STAGES,
          waves: bool = False) -> Path:
    """The cocotb/Verilator simulation of the array (cached under ``build/array/cocotb/``);
    returns the build directory."""
    name = array_name(lanes, exact_cycles, discipline, stages) + ("_trace" if waves else "")
    root = build_root() / "array" / "cocotb"
    src = array_verilog(root / "rtl" / f"{name}.v", lanes=lanes, exact_cycles=exact_cycles,
                        discipline=discipline, stages=stages)
    return cocotb_build(src, top="lane_array", build_dir=root / name, waves=waves)


def run(job: ArrayJob) -> RawRun:
    lanes = job.lanes
    bdir = build(lanes=lanes, exact_cycles=job.geometry.exact_cycles, discipline=job.discipline,
                 stages=job.stages, waves=bool(job.vcd))
    t0 = time.perf_counter()   # the run, not the (cached) build
    op_a, op_b, nop = lane_ops(job.a_bits, job.b_bits, lanes)
    tiles, _, k_dim = op_a.shape
    last = np.broadcast_to((np.arange(k_dim) == k_dim - 1)[None, None, :], op_a.shape)

    def per_lane(x):
        return np.ascontiguousarray(np.asarray(x).transpose(1, 0, 2).reshape(lanes, tiles * k_dim))
    seed = job.seed or 1
    out = run_cocotb_file_test(
        bdir, module="canna.sim.array.cocotb_tb", top="lane_array", testcase="matmul_file",
        inputs={"a": per_lane(op_a), "b": per_lane(op_b), "last": per_lane(last).astype(np.uint8),
                "nop": per_lane(np.broadcast_to(nop[:, :, None], op_a.shape)).astype(np.uint8),
                "cfg": np.array(job.config_writes(), np.uint64), "tiles": tiles},
        in_var="CANNA_ARRAY_IN", out_var="CANNA_ARRAY_OUT", seed=seed, vcd=job.vcd,
        env={"CANNA_P_STALL": str(job.p_stall), "CANNA_ACTIVITY": "1" if job.activity else "0"})
    m, n = job.a_bits.shape[0], job.b_bits.shape[1]
    toggles = [((0, tiles), out["toggle_start"], out["toggles"])] if job.activity else []
    return RawRun(out=out["beats"].reshape(-1)[:m * n].reshape(m, n), cycles=int(out["cycles"]),
                  wall_cycles=int(out["wall"]), latency=pipeline_latency(job.stages),
                  counters={name: out[name].astype(np.int64) for name in COUNTERS},
                  seconds=time.perf_counter() - t0, toggle_parts=toggles)
