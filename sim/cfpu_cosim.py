"""The CFPU on the RTL simulators: the backends of ``canna mul`` and of the CFPU regressions.

* :func:`simulate_amaranth` / :func:`mul_amaranth` stream operands through
  :class:`canna.hw.CFPU` in the Amaranth simulator.
* :func:`simulate_verilator` / :func:`mul_verilator` stream them through the Verilog of the same
  design on Verilator, driven by the cocotb testbench :mod:`canna.sim.cocotb_cfpu`
  (:func:`cfpu_build`: built once, cached under ``build/cocotb``).
* :func:`golden_for_codes` is the golden model over per-operation configuration codes and
  :func:`mismatch_report` the report of a disagreement.

The ``mul_*`` backends take ``(a, b, config, **options)`` with uint32 arrays and return a
:class:`canna.sim.golden.MulResult`; ``vcd="path"`` writes a waveform of the run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from canna.spec.array import DEFAULT_STAGES
from canna.spec.config import CFPUConfig, decode_config, encode_config
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import pack_inputs, unpack_outputs

from .golden import MulResult
from .mismatch import differences, report
from .paths import build_root
from .rtl_build import cfpu_verilog, cocotb_build
from .testbench import run_cocotb_file_test, run_simulator, with_sync_domain

__all__ = ["mul_amaranth", "mul_verilator", "simulate_amaranth", "simulate_verilator",
           "cfpu_build", "config_codes", "golden_for_codes", "mismatch_report"]


# ---- configuration codes and the golden model --------------------------------------------------

def config_codes(config, n: int, fmt: FloatFormat = BINARY32) -> np.ndarray:
    """One configuration code per operand pair: ``config`` (a CFPUConfig) encoded ``n`` times, or
    an array of ``n`` codes, checked."""
    if isinstance(config, CFPUConfig):
        return np.full(n, encode_config(config, fmt), dtype=np.uint64)
    codes = np.asarray(config, dtype=np.uint64)
    if codes.shape != (n,):
        raise ValueError(f"expected one configuration code per operand pair ({n}), got {codes.shape}")
    return codes


def golden_for_codes(a, b, codes, fmt: FloatFormat = BINARY32) -> MulResult:
    """The golden model over per-operation configuration codes, in bulk (one call per code)."""
    from . import golden
    a = np.asarray(a)
    b = np.asarray(b)
    codes = np.asarray(codes, dtype=np.uint64)
    bits = np.zeros(a.shape, dtype=fmt.storage_dtype)
    flags = np.zeros(a.shape, dtype=np.uint8)
    hit = np.zeros(a.shape, dtype=bool)
    for code in np.unique(codes):
        sel = codes == code
        r = golden.mul_bits(a[sel], b[sel], decode_config(code, fmt), fmt=fmt)
        bits[sel], flags[sel], hit[sel] = r.bits, r.flags, r.hit
    return MulResult(bits, flags, hit)



# ---- mismatch report ---------------------------------------------------------------------

def mismatch_report(a, b, codes, expected: MulResult, actual: MulResult, *, seed=None,
                    source: str = "", max_lines: int = 20, fmt: FloatFormat = BINARY32) -> str:
    """Empty string when ``actual`` equals ``expected`` (bits, flags, hit), else the
    :func:`canna.sim.mismatch.report` naming every differing vector's operands and
    configuration."""
    bad = ((np.asarray(expected.bits) != np.asarray(actual.bits))
           | (np.asarray(expected.flags) != np.asarray(actual.flags))
           | (np.asarray(expected.hit) != np.asarray(actual.hit)))
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return ""
    d = (fmt.width + 3) // 4
    codes = np.broadcast_to(np.asarray(codes, dtype=np.uint64), bad.shape)

    def result(r, i):
        return f"{int(r.bits[i]):0{d}X} flags {int(r.flags[i]):02X} hit {int(r.hit[i])}"
    labels = [f"#{i} a={int(a[i]):0{d}X} b={int(b[i]):0{d}X} "
              f"config=({decode_config(codes[i], fmt).describe()})" for i in idx]
    problems = differences(labels, [result(expected, i) for i in idx],
                           [result(actual, i) for i in idx], total=len(bad), max_lines=max_lines)
    return report(f"CFPU {fmt.name}" + (f" ({source})" if source else ""), seed=seed,
                  problems=problems,
                  notes=["rerun with CANNA_WAVES=1 (tests) or --vcd FILE (canna mul) for a waveform"])


# ---- Amaranth simulator --------------------------------------------------------------------

def simulate_amaranth(a, b, codes, *, stages: int = DEFAULT_STAGES, approx: bool = True,
                      fmt: FloatFormat = BINARY32, vcd=None, rng=None, p_idle: float = 0.0,
                      p_stall: float = 0.0, dut=None, max_cycles=None) -> tuple[MulResult, int]:
    """Stream ``a, b`` (with per-operation ``codes``) through a CFPU in the Amaranth simulator.

    ``p_idle`` / ``p_stall`` are the probabilities of an idle input cycle and of ``o.ready``
    low (drawn from ``rng``). Returns the results in order and the cycle count.
    """
    from amaranth.sim import Simulator

    from canna.hw import CFPU
    a = np.asarray(a)
    b = np.asarray(b)
    n = len(a)
    words = pack_inputs(a, b, codes, fmt)
    if dut is None:
        dut = CFPU(fmt=fmt, stages=stages, approx=approx)
    rng = rng if rng is not None else np.random.default_rng(0)
    idle = (rng.random(n * 4 + 64) < p_idle).tolist() if p_idle else None
    stall = (rng.random(n * 4 + 64) < p_stall).tolist() if p_stall else None
    limit = max_cycles if max_cycles is not None else 4 * n + 64 + 8 * dut.latency
    outs: list[int] = []
    state = {"cycles": 0}

    async def testbench(ctx):
        i_valid, i_ready, i_payload = dut.i.valid, dut.i.ready, dut.i.payload.as_value()
        o_valid, o_ready, o_payload = dut.o.valid, dut.o.ready, dut.o.payload.as_value()
        sent = 0
        cycle = 0
        while len(outs) < n:
            if cycle >= limit:
                raise RuntimeError(f"CFPU stalled: {len(outs)} of {n} results after {cycle} cycles")
            k = cycle % len(idle) if idle else 0
            offer = sent < n and not (idle and idle[k])
            ctx.set(i_valid, offer)
            if offer:
                ctx.set(i_payload, words[sent])
            ctx.set(o_ready, not (stall and stall[k]))
            if ctx.get(o_valid) and ctx.get(o_ready):
                outs.append(ctx.get(o_payload))
            if offer and ctx.get(i_ready):
                sent += 1
            await ctx.tick()
            cycle += 1
        state["cycles"] = cycle

    sim = Simulator(with_sync_domain(dut, "cfpu"))   # stages=0 has no registers of its own
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    run_simulator(sim, vcd)
    bits, flags, hit = unpack_outputs(outs, fmt)
    return MulResult(bits, flags, hit), state["cycles"]


def mul_amaranth(a, b, config: CFPUConfig, *, vcd=None, stages: int = DEFAULT_STAGES,
                 fmt: FloatFormat = BINARY32) -> MulResult:
    """``canna mul --backend amaranth``: the CFPU in the Amaranth simulator."""
    codes = config_codes(config, len(a), fmt)
    result, _ = simulate_amaranth(a, b, codes, stages=stages, fmt=fmt, vcd=vcd)
    return result


# ---- Verilator (cocotb) ----------------------------------------------------------------------

def cfpu_build(*, stages: int = DEFAULT_STAGES, approx: bool = True, waves: bool = False,
               fmt: FloatFormat = BINARY32, quiet: bool = True, source=None, name=None,
               extra_args=()) -> Path:
    """The cocotb/Verilator simulation of the CFPU (:func:`canna.sim.rtl_build.cocotb_build`,
    ``build/cocotb/<name>``). ``source``/``name`` build another Verilog file whose top is
    ``cfpu`` (e.g. the gate-level netlist of ``scripts/activity.py``)."""
    if source is None:
        name = f"cfpu_{fmt.name}_s{stages}{'' if approx else '_exact'}{'_trace' if waves else ''}"
        source = cfpu_verilog(build_root() / "cocotb" / "rtl" / f"{name}.v", stages=stages,
                              approx=approx, fmt=fmt)
    name = name or Path(source).stem
    return cocotb_build(source, top="cfpu", build_dir=build_root() / "cocotb" / name,
                        waves=waves, extra_args=extra_args, quiet=quiet)


def simulate_verilator(a, b, codes, *, stages: int = DEFAULT_STAGES, approx: bool = True,
                       fmt: FloatFormat = BINARY32, vcd=None, seed: int = 1, p_idle: float = 0.0,
                       p_stall: float = 0.0, quiet: bool = True, build_dir=None) -> MulResult:
    """Stream vectors through the Verilator build with the cocotb ``stream_file`` test
    (``build_dir``: an existing build to use instead of the CFPU's)."""
    bdir = build_dir or cfpu_build(stages=stages, approx=approx, waves=bool(vcd), fmt=fmt,
                                   quiet=quiet)
    out = run_cocotb_file_test(
        bdir, module="canna.sim.cocotb_cfpu", top="cfpu", testcase="stream_file",
        inputs={"a": np.asarray(a).astype(np.uint64), "b": np.asarray(b).astype(np.uint64),
                "codes": np.asarray(codes, dtype=np.uint64)},
        in_var="CANNA_STREAM_IN", out_var="CANNA_STREAM_OUT", seed=seed, vcd=vcd, quiet=quiet,
        env={"CANNA_FORMAT": fmt.name, "CANNA_P_IDLE": str(p_idle), "CANNA_P_STALL": str(p_stall)})
    return MulResult(out["bits"].astype(fmt.storage_dtype), out["flags"].astype(np.uint8),
                     out["hit"].astype(bool))


def mul_verilator(a, b, config: CFPUConfig, *, vcd=None, stages: int = DEFAULT_STAGES,
                  fmt: FloatFormat = BINARY32) -> MulResult:
    """``canna mul --backend verilator``: the CFPU's Verilog on Verilator (cocotb-driven)."""
    codes = config_codes(config, len(a), fmt)
    return simulate_verilator(a, b, codes, stages=stages, fmt=fmt, vcd=vcd)
