"""Deliberately broken decision rules, for the mutation test of the proofs.

Each mutant wraps the real :class:`~canna.hw.approx.ApproxDecide` and changes only the
configuration it sees; :func:`applied` swaps it into :mod:`canna.hw.cfpu` while a design is
elaborated, so hw/ stays untouched and every CFPU built meanwhile (also inside a lane, also in
the simulator that replays a counterexample) carries the mutation.
"""
from __future__ import annotations

import contextlib

from amaranth.hdl import Module, Mux

import canna.hw.cfpu as cfpu_module
from canna.hw.approx import ApproxDecide

__all__ = ["MUTANTS", "applied"]


class _Mutant(ApproxDecide):
    def mutate(self, m: Module, inner):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = ApproxDecide(fmt=self.fmt)
        m.d.comb += [inner.a.eq(self.a), inner.b.eq(self.b), inner.exp.eq(self.exp),
                     inner.config.eq(self.config), self.hit.eq(inner.hit), self.approx.eq(inner.approx)]
        self.mutate(m, inner)
        return m


class DualSecondCheckDropped(_Mutant):
    """The dual policy never tries ``a``: it behaves as policy ``b``."""

    def mutate(self, m, inner):
        m.d.comb += inner.config.policy.eq(0)


class LastTuningBitIgnored(_Mutant):
    """The last checked bit is not checked: ``t`` tuning bits act as ``t - 1`` (``t >= 1``)."""

    def mutate(self, m, inner):
        t = self.config.tuning_bits
        m.d.comb += inner.config.tuning_bits.eq(Mux(t == 0, 0, t - 1))


MUTANTS = {"dual-second-check-dropped": DualSecondCheckDropped,
           "last-tuning-bit-ignored": LastTuningBitIgnored}


@contextlib.contextmanager
def applied(name: str | None):
    """Build every CFPU with mutant ``name`` as its decision rule (``None``: the real one)."""
    if name is None:
        yield
        return
    original = cfpu_module.ApproxDecide
    cfpu_module.ApproxDecide = MUTANTS[name]
    try:
        yield
    finally:
        cfpu_module.ApproxDecide = original
