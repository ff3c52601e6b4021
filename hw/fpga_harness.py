"""FPGA harnesses: wrap a design so that place and route measures its logic, not its pins.

:class:`ShiftHarness` feeds every input of the wrapped design from one shift register that a
single pin (``din``) fills, registers every output, and folds the output registers into one
registered parity bit on one pin (``dout``). So the whole design needs four pins (``clk``,
``rst``, ``din``, ``dout``), every input and output path runs register to register (the flow
times the design's paths from its inputs and to its outputs too), and nothing is optimised
away: each input bit is a flip-flop whose value synthesis cannot know, each output bit reaches
a pin. The harness's own cost is one flip-flop per input bit, one per output bit and a parity
tree of about ``outputs / 3`` LUT4s; :func:`harness_cost` states it, and ``scripts/fpga.py``
keeps the design in its own module during synthesis so the design's cells are counted apart.

Outputs named in ``probe`` are captured in a second clock domain (``probe``) instead, so that
the timing report lists their paths (say the lane's ``i.ready``) apart from the design's own
critical path: nextpnr reports each pair of clock domains separately.

:class:`ApproxPath` is the CFPU's approximate path alone (the exponent sum of
:class:`~canna.hw.stages.Unpack`, :class:`~canna.hw.approx.ApproxDecide` and
:class:`~canna.hw.approx.ResultSelect`, the exact result coming from a register), for measuring
its delay apart from the exact path's.
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from canna.spec.config import config_layout
from canna.spec.formats import BINARY32, FloatFormat
from canna.spec.layouts import FLAGS_LAYOUT, check_format, float_layout

from .approx import ApproxDecide, ResultSelect
from .stages import Unpack

__all__ = ["ShiftHarness", "ApproxPath", "harness_cost", "port_bits"]


def _ports(design):
    """(name, direction, value) of every port of a component, flattened."""
    return [("__".join(str(p) for p in path), member.flow, Value.cast(value))
            for path, member, value in design.signature.flatten(design)]


def port_bits(design) -> tuple[int, int]:
    """Input and output bits of a component."""
    ins = sum(len(v) for _, flow, v in _ports(design) if flow == In)
    outs = sum(len(v) for _, flow, v in _ports(design) if flow == Out)
    return ins, outs


def harness_cost(design, probe=()) -> dict:
    """Flip-flops the harness adds around ``design``: the input shift register, the output
    registers and the parity register (its parity tree adds about ``outputs / 3`` LUT4s)."""
    ins, outs = port_bits(design)
    return {"input_bits": ins, "output_bits": outs, "flops": ins + outs + 1,
            "probe": list(probe)}


class ShiftHarness(wiring.Component):
    """Registered, pin-light wrapper of ``design`` (see the module docstring).

    Parameters
    ----------
    design : wiring.Component
        The design; elaborated as the submodule ``dut``.
    probe : iterable of str
        Flattened output names (``i__ready``) captured in the ``probe`` clock domain.

    Members
    -------
    din : In(1)
        Serial input: shifts into the input register chain every cycle.
    dout : Out(1)
        Registered parity of every output register.
    probe_clk : In(1)
        Clock of the ``probe`` domain (only when ``probe`` is not empty).
    """

    def __init__(self, design, *, probe=()):
        self.design = design
        self.probe = tuple(probe)
        names = {name for name, flow, _ in _ports(design) if flow == Out}
        unknown = [p for p in self.probe if p not in names]
        if unknown:
            raise ValueError(f"probe names no output of the design: {', '.join(unknown)}")
        members = {"din": In(1), "dout": Out(1)}
        if self.probe:
            members["probe_clk"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.design
        ports = _ports(dut)
        ins = [v for _, flow, v in ports if flow == In]
        width = sum(len(v) for v in ins)
        chain = Signal(width, name="in_chain")
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]) if width > 1 else self.din)
        lo = 0
        for v in ins:
            m.d.comb += v.eq(chain[lo:lo + len(v)])
            lo += len(v)
        if self.probe:
            m.domains.probe = ClockDomain("probe")
            m.d.comb += [ClockSignal("probe").eq(self.probe_clk), ResetSignal("probe").eq(0)]
        captured, probes = [], []
        for name, flow, v in ports:
            if flow != Out:
                continue
            reg = Signal(len(v), name=f"out_{name}")
            m.d["probe" if name in self.probe else "sync"] += reg.eq(v)
            (probes if name in self.probe and len(self.probe) > 1 else captured).append(reg)
        if probes:
            # identical probes (the lockstep array's ready lines are one signal) would cancel
            # in the parity and be optimised away: fold them with an OR first
            captured.append(Cat(*probes).any())
        parity = Signal(name="parity")
        m.d.sync += parity.eq(Cat(*captured).xor())
        m.d.comb += self.dout.eq(parity)
        return m


class ApproxPath(wiring.Component):
    """The CFPU's approximate path between registers: the exponent sum, the hit decision and the
    result select (``exact_bits``/``exact_flags`` stand for the exact path's result).

    Members
    -------
    a, b : In(float_layout(fmt))
    config : In(config_layout(fmt))
    exact_bits : In(W), exact_flags : In(FLAGS_LAYOUT)
    bits : Out(W), flags : Out(FLAGS_LAYOUT), hit : Out(1)
    """

    def __init__(self, *, fmt: FloatFormat = BINARY32):
        self.fmt = check_format(fmt)
        super().__init__({
            "a": In(float_layout(fmt)), "b": In(float_layout(fmt)),
            "config": In(config_layout(fmt)),
            "exact_bits": In(fmt.width), "exact_flags": In(FLAGS_LAYOUT),
            "bits": Out(fmt.width), "flags": Out(FLAGS_LAYOUT), "hit": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        m.submodules.unpack = unpack = Unpack(fmt=fmt)
        m.submodules.decide = decide = ApproxDecide(fmt=fmt)
        m.submodules.select = select = ResultSelect(fmt=fmt)
        m.d.comb += [
            unpack.a.eq(self.a), unpack.b.eq(self.b),
            decide.a.eq(self.a), decide.b.eq(self.b), decide.config.eq(self.config),
            decide.exp.eq(unpack.exp),
            select.exact_bits.eq(self.exact_bits), select.exact_flags.eq(self.exact_flags),
            select.hit.eq(decide.hit), select.approx.eq(decide.approx),
            select.sign.eq(unpack.sign),
            self.bits.eq(select.bits), self.flags.eq(select.flags), self.hit.eq(decide.hit),
        ]
        return m
