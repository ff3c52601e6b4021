"""Matmul driver of the SIMD lane array (:class:`canna.hw.array.LaneArray`) over three backends.

``run_array(a, b, config, backend=..., geometry=..., discipline=...)`` tiles ``a @ b`` onto the
array exactly as the golden lane model does (:mod:`canna.sim.lanes`: tiles of ``lanes``
consecutive outputs of ``Y`` in row-major order, lane ``l`` streams the ``K`` products of its
output, padding lanes of the last tile stream ``nop`` operations), runs it, and checks every
result against the golden model: output bits, per-lane operation / hit / bypass / busy counts
and the cycle count of the discipline (the RTL's ``cycles`` counter must equal
``cycles_lockstep`` or ``cycles_decoupled``; wall-clock cycles are ``cycles + latency``).

Backends (one module each, one interface: ``run(ArrayJob) -> RawRun``, :mod:`.job`)
    ``"amaranth"`` (:mod:`.amaranth_sim`)
        The Amaranth simulator, one Python testbench step per cycle (small matrices only).
    ``"cocotb"`` (:mod:`.cocotb_sim`)
        cocotb on the Verilated array (:mod:`.cocotb_tb`), one Python step per cycle.
    ``"verilator-fast"`` (:mod:`.fast`)
        The Verilated array driven by a compiled C++ loop (``fast_driver.cpp``) loaded with
        ctypes: Python hands over whole matrices, the driver runs every cycle in C++. Built once
        and cached by content hash under ``build/array/`` (``CANNA_BUILD_DIR``).

Operands are fed with no idle cycles and the output is always ready, unless ``p_stall`` (output
back-pressure probability, amaranth/cocotb) is set: then results are still checked bit for bit,
cycles are not (the model has no back-pressure).

Switching activity (``activity=True``, every backend): the testbench or driver reads every
lane's held operand registers and accumulator after every clock edge and counts their bit
toggles (``activity["toggles_a"]``, ``["toggles_b"]``, ``["toggles_acc"]``, per lane). Each
simulated model's counts are checked like the results: against
:func:`canna.sim.toggles.register_toggles` for its tiles, from its registers' values at the
start of the run.

A mismatch raises :class:`ArrayMismatch` whose message is the reproducer
(:mod:`canna.sim.mismatch`): backend, discipline, geometry, configuration, seed, the first
differing outputs (index, expected, actual) and the path of an ``.npz`` with the operands.
``vcd=path`` writes a waveform (amaranth, cocotb).
"""
from .check import ArrayMismatch, ArrayRunResult, golden_model
from .driver import BACKENDS, run_array
from .job import ArrayJob, RawRun, lane_ops

__all__ = ["BACKENDS", "ArrayRunResult", "ArrayMismatch", "ArrayJob", "RawRun", "run_array",
           "lane_ops", "golden_model"]
