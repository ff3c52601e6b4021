"""What the CFPU array saves on a run: speedup and energy against two baselines, decomposed.

Four designs run the same matmuls on the same lane array (:class:`canna.spec.array.ArrayGeometry`:
``lanes`` lanes, an exact multiply ``exact_cycles`` = E cycles, an add pipelined behind it):

=============  =====================================  ===================================
design         a product retires in one cycle when    multiplier energy per product
=============  =====================================  ===================================
``cfpu``       it is a hit, or an operand is zero,    hit, bypass or exact multiply
               infinite or NaN (a *bypass*)
``zero_skip``  an operand is zero/inf/NaN (bypass)    bypass or exact multiply
``no_skip``    it is a hit                            hit or exact multiply
``plain``      never (every product E cycles)         exact multiply
=============  =====================================  ===================================

``cfpu`` is our RTL array in approximate mode; ``zero_skip`` the same array in exact mode (the
baseline the RTL's counters have always reported); ``plain`` an exact FPU that multiplies every
pair as a GPU's FPU does (the paper's baseline); ``no_skip`` the CFPU's approximation without
its zero skipping (a hypothetical array, counted by the golden lane model only). Cycles of each
come from :class:`canna.sim.lanes.LaneArrayTotals` in both disciplines (lockstep and decoupled,
:mod:`canna.sim.lanes`); energy from :class:`canna.sim.energy.EnergyModel` on the same events
(every product also costs one add; every lane pays clock and leakage each cycle of its design).

The *baselines* of a report are ``zero_skip`` and ``plain``: ``speedup[baseline][discipline]``
is baseline cycles / CFPU cycles, ``energy_ratio[baseline][discipline]`` CFPU energy / baseline
energy (below 1 saves). The *decomposition* puts every design against ``plain``: zero skipping
alone (``zero_skip``), approximation alone (``no_skip``) and both (``cfpu``); it says how much of
a saving is the approximation and how much is only not multiplying by zero.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from canna.spec.array import ArrayGeometry

from .lanes import LaneArrayTotals

if TYPE_CHECKING:                # canna.sim.energy builds its report on this module's designs
    from .energy import EnergyModel

__all__ = ["DESIGNS", "BASELINES", "DISCIPLINES_REPORTED", "DECOMPOSITION", "design_cycles",
           "design_events", "hardware_block", "default_energy_model"]

DESIGNS = ("cfpu", "zero_skip", "no_skip", "plain")
BASELINES = ("zero_skip", "plain")
DISCIPLINES_REPORTED = ("lockstep", "decoupled")
#: Decomposition entry -> the design that realises it (each against ``plain``).
DECOMPOSITION = {"zero_skip_alone": "zero_skip", "approximation_alone": "no_skip", "both": "cfpu"}


def design_cycles(t: LaneArrayTotals, design: str, discipline: str) -> int:
    """Cycles of ``design`` in ``discipline`` for the matmuls counted in ``t``."""
    lock = discipline == "lockstep"
    if discipline not in DISCIPLINES_REPORTED:
        raise ValueError(f"unknown discipline {discipline!r}; known: {', '.join(DISCIPLINES_REPORTED)}")
    if design == "cfpu":
        return t.cycles_lockstep if lock else t.cycles_decoupled
    if design == "zero_skip":
        return t.cycles_baseline if lock else t.cycles_baseline_decoupled
    if design == "no_skip":
        return t.cycles_no_skip_lockstep if lock else t.cycles_no_skip_decoupled
    if design == "plain":
        return t.cycles_plain
    raise ValueError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")


def design_events(t: LaneArrayTotals, design: str) -> dict:
    """The multiplier and adder events of ``design`` (the energy model's inputs but cycles)."""
    p, h, b = int(t.products), int(t.hits), int(t.bypassed)
    events = {"cfpu": (p - h - b, h, b), "zero_skip": (p - b, 0, b),
              "no_skip": (p - h, h, 0), "plain": (p, 0, 0)}
    if design not in events:
        raise ValueError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    exact, hits, bypassed = events[design]
    return {"exact": exact, "hits": hits, "bypassed": bypassed, "adds": p}


def _energy(model: EnergyModel, t: LaneArrayTotals, design: str, discipline: str, lanes: int) -> float:
    return model.energy(cycles=design_cycles(t, design, discipline), lanes=lanes,
                        **design_events(t, design))["toggles"]


def _ratio(x: float, y: float) -> float | None:
    return x / y if y else None


def default_energy_model():
    """``(model, None)`` from ``build/activity`` and ``build/synth``, or ``(None, why)`` in one
    line when they are missing (``make activity`` / ``make synth`` make them)."""
    from .energy import load_energy_model
    from .paths import build_root
    try:
        return load_energy_model(build_root() / "activity" / "activity.json",
                                 build_root() / "synth" / "synth.json"), None
    except (FileNotFoundError, ValueError) as e:
        return None, str(e)


def hardware_block(t: LaneArrayTotals, geometry: ArrayGeometry, energy_model: EnergyModel | None,
                   energy_error: str | None = None) -> dict:
    """The ``hardware`` block of a results file for the matmuls counted in ``t`` (strict JSON:
    a ratio with a zero denominator, i.e. no products, is None)."""
    lanes = geometry.lanes
    cyc = {d: {s: design_cycles(t, d, s) for s in DISCIPLINES_REPORTED} for d in DESIGNS}
    block = {
        "lanes": lanes, "exact_cycles": geometry.exact_cycles,
        "products": int(t.products), "hits": int(t.hits), "bypassed": int(t.bypassed),
        "exact": int(t.products - t.hits - t.bypassed), "tiles": int(t.tiles),
        "cycles": cyc["cfpu"],
        "baseline_cycles": {b: cyc[b] for b in BASELINES},
        "speedup": {b: {s: _ratio(cyc[b][s], cyc["cfpu"][s]) for s in DISCIPLINES_REPORTED}
                    for b in BASELINES},
    }
    energy = None
    if energy_model is not None:
        energy = {d: {s: _energy(energy_model, t, d, s, lanes) for s in DISCIPLINES_REPORTED}
                  for d in DESIGNS}
        block["energy_ratio"] = {b: {s: _ratio(energy["cfpu"][s], energy[b][s])
                                     for s in DISCIPLINES_REPORTED} for b in BASELINES}
        block["energy_pj"] = {s: energy["cfpu"][s] * energy_model.pj_per_toggle
                              for s in DISCIPLINES_REPORTED}
    else:
        block["energy_ratio"] = None
        block["energy_note"] = f"energy not available: {energy_error or 'no energy model'}"
    block["decomposition"] = {
        name: {"design": d,
               "speedup": {s: _ratio(cyc["plain"][s], cyc[d][s]) for s in DISCIPLINES_REPORTED},
               "energy_ratio": None if energy is None else
               {s: _ratio(energy[d][s], energy["plain"][s]) for s in DISCIPLINES_REPORTED}}
        for name, d in DECOMPOSITION.items()}
    if energy_model is not None:
        block["energy_model"] = {"source": energy_model.source, "leakage": energy_model.leakage,
                                 "pj_per_toggle": energy_model.pj_per_toggle}
    return block


def _x(v) -> str:
    return "-" if v is None else f"{v:.3f}x"


def _e(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_hardware_block(block: dict, exact_cycles_source: str | None = None) -> list[str]:
    """The lines ``canna train`` / ``canna infer`` print for a ``hardware`` block;
    ``exact_cycles_source`` says where its ``exact_cycles`` came from (default: assumed)."""
    p = block["products"]
    pct = (lambda n: f"{100 * n / p:.1f}%") if p else (lambda n: "n/a")
    lines = [f"  hardware ({block['lanes']} lanes, exact multiply {block['exact_cycles']} cycles, "
             f"{exact_cycles_source or 'assumed'}): "
             f"{p:,} products, {pct(block['hits'])} hits, {pct(block['bypassed'])} bypassed "
             f"(zero/inf/NaN operand), {pct(block['exact'])} exact",
             f"    {'':26s} {'lockstep':>20s} {'decoupled':>20s}   (speedup, energy ratio)"]
    er = block.get("energy_ratio")
    for b in BASELINES:
        cells = [f"{_x(block['speedup'][b][s]):>9s} {_e(er[b][s]) if er else '-':>10s}"
                 for s in DISCIPLINES_REPORTED]
        lines.append(f"    {'against ' + b:26s} {cells[0]:>20s} {cells[1]:>20s}")
    lines.append("    decomposition, each against plain:")
    for name, d in block["decomposition"].items():
        e = d["energy_ratio"]
        cells = [f"{_x(d['speedup'][s]):>9s} {_e(e[s]) if e else '-':>10s}" for s in DISCIPLINES_REPORTED]
        lines.append(f"      {name.replace('_', ' '):24s} {cells[0]:>20s} {cells[1]:>20s}")
    if block.get("energy_note"):
        lines.append(f"    {block['energy_note']}")
    return lines
