"""Helpers every Amaranth-simulator testbench of the project shares (the CFPU, the lanes, the
array): running a simulation with an optional waveform, a clock domain for a combinational
design, and stream handshakes (in the manner of Glasgow's ``stream_put`` / ``stream_get``)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["run_simulator", "with_sync_domain", "stream_put", "stream_get", "CocotbClockReset",
           "log_tail", "run_cocotb_file_test"]


def run_simulator(sim, vcd=None) -> None:
    """Run an Amaranth simulation to its end, writing a waveform to ``vcd`` when given."""
    if vcd:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()


def with_sync_domain(dut, name: str = "dut"):
    """``dut`` inside a module with one clocked signal, so that a combinational design still
    has the ``sync`` domain that ``Simulator.add_clock`` needs."""
    from amaranth.hdl import Module, Signal
    top = Module()
    top.submodules[name] = dut
    heartbeat = Signal()
    top.d.sync += heartbeat.eq(~heartbeat)
    return top


async def stream_put(ctx, stream, payload) -> None:
    """Offer ``payload`` on ``stream`` (an ``amaranth.lib.stream`` interface the testbench
    drives) until it is accepted, then drop ``valid``."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload from ``stream`` (a stream the testbench consumes): raise ``ready`` until
    ``valid``, return the payload."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


class CocotbClockReset:
    """Base of the project's cocotb testbenches (``TB`` classes): owns the DUT's clock (10 ns)
    and reset pulse. Subclasses drive their inputs idle in :meth:`idle_inputs`."""

    def __init__(self, dut):
        self.dut = dut

    def idle_inputs(self) -> None:
        """Drive every input of the DUT to its idle value (called during reset)."""

    async def start(self, reset_cycles: int = 2) -> None:
        """Start the clock and hold reset for ``reset_cycles`` rising edges, inputs idle."""
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge
        dut = self.dut
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        self.idle_inputs()
        for _ in range(reset_cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0


def log_tail(path, n: int = 4000) -> str:
    """The last ``n`` characters of a simulation log, for the error a failed run raises."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return "(no log)"


def run_cocotb_file_test(build_dir, *, module: str, top: str, testcase: str, inputs: dict,
                         in_var: str, out_var: str, env=None, seed: int = 1, vcd=None,
                         quiet: bool = True) -> dict:
    """Run the cocotb test ``module.testcase`` on the Verilator build in ``build_dir``: it reads
    its operands from an ``.npz`` of ``inputs`` (path in the environment variable ``in_var``)
    and writes its results to another (``out_var``), which is returned as a dict of arrays.
    ``vcd``: copy the run's waveform there. A failed run raises RuntimeError with the log's tail."""
    import shutil
    import tempfile

    import numpy as np
    from cocotb_tools.runner import get_runner

    from .rtl_build import apply_verilator_env
    apply_verilator_env()
    with tempfile.TemporaryDirectory(prefix="canna_cocotb_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", **inputs)
        extra = {in_var: str(tmp / "in.npz"), out_var: str(tmp / "out.npz"), "CANNA_SEED": str(seed),
                 **(env or {})}
        log = tmp / "sim.log"
        try:
            get_runner("verilator").test(
                test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                testcase=testcase, build_dir=build_dir, test_dir=tmp, extra_env=extra,
                waves=bool(vcd), seed=seed, log_file=log if quiet else None,
                results_xml=str(tmp / "results.xml"))
        except SystemExit as e:  # cocotb reports a failing run this way
            raise RuntimeError(f"cocotb run of {module}.{testcase} failed ({e}); log:\n"
                               f"{log_tail(log)}") from None
        if not (tmp / "out.npz").exists():
            raise RuntimeError(f"cocotb run of {module}.{testcase} produced no results; log:\n"
                               f"{log_tail(log)}")
        if vcd:
            dump = tmp / "dump.vcd"
            shutil.copyfile(dump if dump.exists() else Path(build_dir) / "dump.vcd", vcd)
        with np.load(tmp / "out.npz") as out:
            return {k: out[k] for k in out.files}
