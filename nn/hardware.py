"""Inference of a trained network on the RTL lane array: cycles and energy of each configuration.

Every forward matmul of ``samples`` test inputs runs on the Verilated lane array (both
disciplines, :class:`canna.nn.backends.ArrayCosim`), is checked bit for bit against the golden
model, and its counters feed the energy model of :mod:`canna.sim.energy` (measured toggles and
synthesized lane area from ``make activity`` / ``make synth``). Everything is reported against the
all-exact array on the same inputs.
"""
from __future__ import annotations

import time

import numpy as np

from canna.sim.energy import EnergyReport
from canna.sim.lanes import LaneArrayResult
from canna.sim.savings import default_energy_model

from .backends import ArrayCosim, Backend
from .mlp import MLP, ArithPlan, Counters

__all__ = ["rtl_inference", "rtl_replay", "print_rtl_report"]


def rtl_inference(model: MLP, x: np.ndarray, y: np.ndarray, configs: dict, *, lanes: int = 16,
                  exact_cycles: int = 4, policy: str = "b",
                  exact_cycles_source: str = "assumed") -> dict:
    """Run ``configs`` (name -> per-layer tuning bits, None = exact) on the RTL array
    (``exact_cycles_source``: where ``exact_cycles`` came from, for the report)."""
    energy_model, energy_error = default_energy_model()
    sims = {d: ArrayCosim(d, lanes, exact_cycles) for d in ("lockstep", "decoupled")}
    rows = {}
    for name, bits in configs.items():
        plan = ArithPlan.per_layer(list(bits), policy, ("forward",))
        row = {"bits": list(bits), "label": "exact" if all(b is None for b in bits) else str(list(bits))}
        for discipline, sim in sims.items():
            sim.reset()
            t = time.monotonic()
            counters = Counters(model.n_layers)
            r = model.evaluate(x, y, plan, Backend(f"rtl-{discipline}", sim), counters)
            row[discipline] = {"rtl_cycles": sim.rtl_cycles, "seconds": time.monotonic() - t}
            row["accuracy"] = r["accuracy"]
            totals = sim.totals
        row.update(products=totals.products, hits=totals.hits, bypassed=totals.bypassed,
                   fast_rate=(totals.hits + totals.bypassed) / totals.products,
                   cycles_baseline=totals.cycles_baseline,
                   cycles_baseline_decoupled=totals.cycles_baseline_decoupled)
        row["speedup_lockstep"] = totals.cycles_baseline / totals.cycles_lockstep
        row["speedup_decoupled"] = totals.cycles_baseline_decoupled / totals.cycles_decoupled
        if energy_model is not None:
            rep = EnergyReport.from_result(energy_model, totals, lanes)
            row["energy_ratio"] = rep.ratios()
            row["energy_pj"] = {"lockstep": rep.approx_lockstep["pj"], "decoupled": rep.approx_decoupled["pj"]}
            row["energy_ratio_no_leakage"] = EnergyReport.from_result(
                energy_model.with_leakage(0.0), totals, lanes).ratios()
            row["energy_ratio_10x_leakage"] = EnergyReport.from_result(
                energy_model.with_leakage(10 * energy_model.leakage), totals, lanes).ratios()
        rows[name] = row
    return {"samples": int(len(y)), "lanes": lanes, "exact_cycles": exact_cycles,
            "exact_cycles_source": exact_cycles_source,
            "energy_model": None if energy_model is None else energy_model.source,
            "energy_error": energy_error,
            "pj_per_toggle": None if energy_model is None else energy_model.pj_per_toggle,
            "configs": rows}


def print_rtl_report(rep: dict) -> None:
    print(f"RTL lane array ({rep['lanes']} lanes, exact multiply {rep['exact_cycles']} cycles "
          f"({rep.get('exact_cycles_source', 'assumed')}), fast "
          f"Verilator co-simulation, every matmul checked bit for bit against the golden model), "
          f"forward pass of {rep['samples']} test inputs; checked operand: forward weight")
    if rep["energy_error"]:
        print(f"  energy: not available ({rep['energy_error']})")
    print(f"  {'config':10s} {'bits':>12s} {'acc':>7s} {'hit rate':>8s} {'fast':>7s} {'cycles LS':>10s} {'speedup':>7s} "
          f"{'cycles DC':>10s} {'speedup':>7s} {'energy LS':>9s} {'energy DC':>9s}")
    for name, r in rep["configs"].items():
        e = r.get("energy_ratio")
        energy = f"{e['lockstep']:9.3f} {e['decoupled']:9.3f}" if e else f"{'-':>9s} {'-':>9s}"
        print(f"  {name:10s} {r['label']:>12s} {100 * r['accuracy']:6.2f}% "
              f"{100 * r['hits'] / r['products']:7.2f}% {100 * r['fast_rate']:6.2f}% {r['lockstep']['rtl_cycles']:10d} "
              f"{r['speedup_lockstep']:6.3f}x {r['decoupled']['rtl_cycles']:10d} "
              f"{r['speedup_decoupled']:6.3f}x {energy}")
    print("  cycles: the RTL's counters (equal to the golden lane model); speedup and energy are "
          "relative to the all-exact array in the same discipline (LS lockstep, DC decoupled)")
    if rep.get("pj_per_toggle"):
        print(f"  energy model: measured toggles (make activity) and lane area (make synth), "
              f"{rep['pj_per_toggle'] * 1e3:.3f} fJ per toggle (exact multiply = 3.7 pJ, Horowitz "
              f"2014); leakage 0 / 10x changes the ratios to "
              + "; ".join(f"{n} {r['energy_ratio_no_leakage']['lockstep']:.3f}/"
                          f"{r['energy_ratio_10x_leakage']['lockstep']:.3f} (LS)"
                          for n, r in rep["configs"].items() if n != "exact"))


def rtl_replay(recorded, geometry, disciplines=("lockstep", "decoupled")) -> dict:
    """Run recorded training matmuls (``train(..., record_iterations=...)["_recorded"]``) on the
    Verilated lane array in each discipline: every output checked bit for bit and every counter
    against the golden lane model (:func:`canna.sim.array.run_array`), and the golden lane
    model's counters and the RTL's cycles against the accounting of :mod:`canna.sim.accounting`.
    Raises on the first disagreement (the array's own check saves the operands); returns what
    was checked."""
    from canna.sim.accounting import account_result
    from canna.sim.array import run_array
    t0 = time.monotonic()
    per_phase: dict = {}
    products = 0
    for iteration, layer, phase, a, b, config in recorded:
        acc = account_result(a, b, config, geometry)
        for discipline in disciplines:
            r = run_array(a, b, config, backend="verilator-fast", geometry=geometry, discipline=discipline)
            want = acc.cycles_lockstep if discipline == "lockstep" else acc.cycles_decoupled
            problems = [f for f in LANE_COUNTS if not np.array_equal(getattr(r.model, f), getattr(acc, f))]
            if r.cycles != want:
                problems.append(f"RTL cycles {r.cycles} vs accounting {want}")
            if problems:
                raise AssertionError(f"iteration {iteration} layer {layer + 1} {phase} ({a.shape} x {b.shape}, "
                                     f"{config.describe()}, {discipline}): the accounting disagrees with the "
                                     f"array on {', '.join(problems)}")
        products += a.shape[0] * a.shape[1] * b.shape[1]
        per_phase[phase] = per_phase.get(phase, 0) + a.shape[0] * a.shape[1] * b.shape[1]
    return {"matmuls": len(recorded), "products": products, "per_phase_products": per_phase,
            "iterations": sorted({r[0] for r in recorded}), "disciplines": list(disciplines),
            "lanes": geometry.lanes, "exact_cycles": geometry.exact_cycles,
            "seconds": time.monotonic() - t0}


#: The LaneArrayResult counts compared between the golden lane model and the accounting: all
#: its fields but the output values and the notes.
LANE_COUNTS = tuple(f for f in LaneArrayResult.__dataclass_fields__ if f not in ("value", "extra"))
