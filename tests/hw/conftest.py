"""Shared helpers of the Amaranth simulator unit tests (level 1)."""
from __future__ import annotations

import os

import pytest
from amaranth.sim import Simulator


def evaluate(component, inputs: list[dict], outputs: list[str], *, vcd: str | None = None):
    """Drive a combinational component with each dict of ``inputs`` (port name -> int) and
    collect the named ``outputs`` (as ints) in the Amaranth simulator."""
    results = []

    def port(name):
        value = getattr(component, name)
        return value.as_value() if hasattr(value, "as_value") else value

    async def testbench(ctx):
        for vec in inputs:
            for name, value in vec.items():
                ctx.set(port(name), int(value))
            results.append({name: ctx.get(port(name)) for name in outputs})

    sim = Simulator(component)
    sim.add_testbench(testbench)
    if vcd or os.environ.get("CANNA_WAVES") == "1":
        if not vcd:
            from canna.sim.paths import build_root
            (build_root() / "waves").mkdir(parents=True, exist_ok=True)
            vcd = str(build_root() / "waves" / f"{type(component).__name__}.vcd")
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results


@pytest.fixture
def comb_eval():
    return evaluate
