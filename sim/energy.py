"""Cycle-based energy model of the lane array, built from our own RTL measurements.

    E = e_t * ( sum over products of toggles(mode)  +  adds * toggles(add)
                + cycles * lanes * (2 * flops_lane + leakage * transistors_lane) )

* ``toggles(mode)`` -- gate-level bit toggles per multiply, measured by ``make activity`` on the
  Yosys netlist of the CFPU (zero-delay, NN-like operands): an exact multiply, an approximate hit,
  and a *bypass* (a zero, infinite or NaN operand: the multiplier is held, as on a hit).
* ``toggles(add)`` -- the same measurement for the accumulator adder on the lanes' real
  accumulation sequences.
* Clock: every flip-flop of every lane sees its clock pin toggle twice per cycle, whether the
  lane works or waits (no clock gating); ``flops_lane`` comes from ``make synth``.
* Leakage: ``leakage`` toggle-equivalents per transistor per cycle (the ``stat -tech cmos``
  estimate with flip-flops, as ``make synth`` reports it). Not measurable in RTL simulation;
  default 0.001 (about 3.3% of an exact multiply's energy per lane cycle at our size), a
  documented assumption: reports print the energy ratios at 0 and 10x too, so no conclusion
  hangs on it.
* ``e_t`` (joules per toggle) is the one calibration constant: it is chosen so that our exact
  binary32 multiply costs 3.7 pJ, the 45 nm figure of M. Horowitz, "Computing's energy problem
  (and what we can do about it)", ISSCC 2014. Every report also gives energy normalised to the
  all-exact array, which does not depend on ``e_t`` at all.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .savings import design_cycles, design_events

__all__ = ["EnergyModel", "HOROWITZ_FP32_MUL_PJ", "load_energy_model", "EnergyReport"]

#: 45 nm binary32 multiply energy (Horowitz, ISSCC 2014), the calibration point of e_t.
HOROWITZ_FP32_MUL_PJ = 3.7

@dataclass(frozen=True)
class EnergyModel:
    """Energy per event in toggle units (see the module docstring)."""

    mul_exact: float
    mul_hit: float
    mul_bypass: float
    add: float
    lane_flops: int
    lane_transistors: int
    leakage: float = 0.001
    source: str = ""

    @property
    def pj_per_toggle(self) -> float:
        return HOROWITZ_FP32_MUL_PJ / self.mul_exact

    def lane_cycle(self) -> float:
        """Toggle-equivalents a lane spends per cycle regardless of work: clock and leakage."""
        return 2.0 * self.lane_flops + self.leakage * self.lane_transistors

    def energy(self, *, exact: int, hits: int, bypassed: int, adds: int, cycles: int,
               lanes: int) -> dict:
        """Energy of a run, in toggles and picojoules, split into its parts."""
        parts = {
            "mul_exact": exact * self.mul_exact,
            "mul_hit": hits * self.mul_hit,
            "mul_bypass": bypassed * self.mul_bypass,
            "add": adds * self.add,
            "clock_leakage": cycles * lanes * self.lane_cycle(),
        }
        total = sum(parts.values())
        return {"toggles": total, "pj": total * self.pj_per_toggle, "parts": parts}

    def with_leakage(self, leakage: float) -> "EnergyModel":
        return EnergyModel(**{**asdict(self), "leakage": leakage})


def load_energy_model(activity_json: Path, synth_json: Path, *, leakage: float = 0.001) -> EnergyModel:
    """Read ``make activity`` and ``make synth`` outputs; raise a clear error when missing."""
    for path, target in ((activity_json, "make activity"), (synth_json, "make synth")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} not found: run `{target}` first")
    act = json.loads(Path(activity_json).read_text())
    per_op = act.get("per_operation", {})
    missing = [k for k in ("exact_op", "approx_hit", "bypass_op", "add") if k not in per_op]
    if missing:
        raise ValueError(f"{activity_json} lacks {', '.join(missing)}: rerun `make activity` "
                         "(gate level)")
    syn = json.loads(Path(synth_json).read_text())
    if syn.get("liberty"):
        raise ValueError(f"{synth_json} was mapped to a liberty library; the energy model uses "
                         "the cmos transistor estimate: rerun `make synth` without LIBERTY")
    lane = syn.get("designs", {}).get("lane")
    if lane is None:
        raise ValueError(f"{synth_json} has no 'lane' design: rerun `make synth`")
    flops = int(lane["total"]["flops"])
    transistors = int(lane["total"]["transistors_incl_flops"])
    return EnergyModel(
        mul_exact=float(per_op["exact_op"]["total"]), mul_hit=float(per_op["approx_hit"]["total"]),
        mul_bypass=float(per_op["bypass_op"]["total"]), add=float(per_op["add"]["total"]),
        lane_flops=flops, lane_transistors=transistors, leakage=leakage,
        source=f"{activity_json} ({act.get('unit', '')}); {synth_json} (lane)")


@dataclass
class EnergyReport:
    """Energy and cycles of one lane-array run against the all-exact array (the ``zero_skip``
    design of :mod:`canna.sim.savings`), both disciplines."""

    approx_lockstep: dict
    approx_decoupled: dict
    exact_lockstep: dict
    exact_decoupled: dict

    @classmethod
    def from_result(cls, model: EnergyModel, result, lanes: int) -> "EnergyReport":
        """``result``: a :class:`canna.sim.lanes.LaneArrayResult` or
        :class:`~canna.sim.lanes.LaneArrayTotals`."""
        def energy(design, discipline):
            return model.energy(cycles=design_cycles(result, design, discipline), lanes=lanes,
                                **design_events(result, design))

        return cls(approx_lockstep=energy("cfpu", "lockstep"), approx_decoupled=energy("cfpu", "decoupled"),
                   exact_lockstep=energy("zero_skip", "lockstep"),
                   exact_decoupled=energy("zero_skip", "decoupled"))

    def ratios(self) -> dict:
        """Approximate / all-exact energy in each discipline (independent of e_t)."""
        return {"lockstep": self.approx_lockstep["toggles"] / self.exact_lockstep["toggles"],
                "decoupled": self.approx_decoupled["toggles"] / self.exact_decoupled["toggles"]}
