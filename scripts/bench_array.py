"""Lane-array bench: MAC/s of every RTL backend of the matmul driver, measured in one run, and
the cycle findings of the two disciplines (lockstep vs decoupled vs the all-exact array).

Workload (seeded): NN-like, ReLU activations x = max(N(0, 1), 0) (about half exact zeros) times
weights W ~ N(0, 0.05), policy b. Every backend's result is checked bit for bit against the
golden model (and its cycles against the golden lane model) before its rate is printed; the
rate counts simulation time only (not builds, not the golden check); 'MAC/s checked' adds the
check. A last fast co-simulation row runs t=0, where every product takes one cycle: the
simulator's speed at full occupancy (16 products per cycle).

    python scripts/bench_array.py [--lanes 16] [--exact-cycles 4] [--json build/bench_array.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from canna.sim.array import cocotb_sim, run_array
from canna.sim.array import fast as fast_backend
from canna.spec.config import CFPUConfig
from canna.sim.lanes import run_lane_array
from canna.spec.array import DEFAULT_STAGES, ArrayGeometry


def workload(rng, m, k, n):
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    return x, w


def timed_build(fn, **kw):
    t0 = time.perf_counter()
    fn(**kw)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--exact-cycles", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="smaller matrices")
    ap.add_argument("--json", default="build/bench_array.json")
    args = ap.parse_args(argv)
    geo = ArrayGeometry(args.lanes, args.exact_cycles)
    rng = np.random.default_rng(args.seed)
    cfg = CFPUConfig.approx(2)
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "seed": args.seed, "lanes": geo.lanes, "exact_cycles": geo.exact_cycles,
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "backends": {},
              "builds_s": {}, "cycles": []}
    print(f"lane array bench: {geo.lanes} lanes, exact multiply {geo.exact_cycles} cycles, "
          f"workload ReLU(N(0,1)) x N(0,0.05), {cfg.describe()}, seed {args.seed}")

    # ---- builds (cached; a cold build is timed here) ------------------------------------------
    for disc in ("lockstep", "decoupled"):
        report["builds_s"][f"verilator-fast {disc}"] = round(timed_build(
            fast_backend.build, lanes=geo.lanes, exact_cycles=geo.exact_cycles, discipline=disc, stages=DEFAULT_STAGES), 1)
    # cocotb (one Python step per cycle) runs a 4-lane array: its Verilator build flattens every
    # lane into one C++ file, minutes for 16 lanes; its per-product rate is what matters here
    small = ArrayGeometry(4, geo.exact_cycles)
    report["builds_s"]["cocotb lockstep (4 lanes)"] = round(timed_build(
        cocotb_sim.build, lanes=small.lanes, exact_cycles=small.exact_cycles, discipline="lockstep",
        stages=DEFAULT_STAGES), 1)
    print("builds (0 s = cached): " + ", ".join(f"{k} {v} s" for k, v in report["builds_s"].items()))

    # ---- MAC/s per backend ---------------------------------------------------------------------
    shapes = {"amaranth": (4, 32, 8), "cocotb": (4, 32, 8),
              "verilator-fast": (32, 128, 32) if args.quick else (64, 512, 64)}
    # the last run: t=0, where every product takes one cycle (16 per cycle): the simulator's
    # speed at full occupancy, next to the NN workload's (hits and zeros only partly fast)
    runs = [("amaranth", "lockstep", cfg), ("cocotb", "lockstep", cfg),
            ("verilator-fast", "lockstep", cfg), ("verilator-fast", "decoupled", cfg),
            ("verilator-fast", "lockstep", CFPUConfig.approx(0))]
    print("MAC/s: simulation only; 'checked': simulation plus the golden check of every result "
          "(bits, per-lane counters, cycles)")
    print(f"{'backend':16s} {'discipline':10s} {'lanes':>5s} {'shape':>10s} {'products':>9s} "
          f"{'hits':>6s} {'cycles':>8s} {'sim s':>7s} {'MAC/s':>12s} {'cycles/s':>10s} "
          f"{'check s':>7s} {'MAC/s checked':>13s} golden config")
    for backend, disc, run_cfg in runs:
        shape = shapes[backend]
        a, b = workload(rng, *shape)
        g = small if backend == "cocotb" else geo
        t0 = time.perf_counter()
        r = run_array(a, b, run_cfg, backend=backend, geometry=g, discipline=disc, seed=args.seed)
        total = time.perf_counter() - t0
        rate = r.products / r.seconds
        check_s = r.activity.get("check_seconds", 0.0)
        checked = r.products / (r.seconds + check_s)
        label = f"{backend} {disc}" + ("" if run_cfg == cfg else f" {run_cfg.describe()}")
        report["backends"][label] = {
            "backend": backend, "discipline": disc, "config": run_cfg.describe(),
            "lanes": g.lanes, "shape": shape,
            "products": r.products, "hits": r.hits, "cycles": r.cycles,
            "seconds": round(r.seconds, 4), "mac_per_s": round(rate),
            "cycles_per_s": round(r.cycles / r.seconds), "check_seconds": round(check_s, 4),
            "mac_per_s_checked": round(checked), "call_seconds": round(total, 4),
            "golden": r.activity.get("golden"), "models": r.activity.get("models"),
            "evals": r.activity.get("evals"), "sim_cycles": r.activity.get("sim_cycles")}
        print(f"{backend:16s} {disc:10s} {g.lanes:5d} {'x'.join(map(str, shape)):>10s} "
              f"{r.products:9d} {r.hits / r.products:6.3f} {r.cycles:8d} {r.seconds:7.3f} "
              f"{rate:12,.0f} {r.cycles / r.seconds:10,.0f} {check_s:7.3f} {checked:13,.0f} "
              f"{r.activity.get('golden', ''):6s} {run_cfg.describe()}")
    # the golden lane models themselves, for scale (the C twin checks the runs when it builds)
    from canna.sim import lanes_native
    a, b = workload(rng, *shapes["verilator-fast"])
    models = [("golden (numpy)", run_lane_array)]
    if lanes_native.available():
        models.append(("golden (C twin)", lanes_native.run_lane_array))
    for label, fn in models:
        t0 = time.perf_counter()
        g = fn(a, b, cfg, geo)
        dt = time.perf_counter() - t0
        report["backends"][label] = {"products": g.products, "seconds": round(dt, 4),
                                     "mac_per_s": round(g.products / dt)}
        print(f"{label:16s} {'both':10s} {geo.lanes:5d} "
              f"{'x'.join(map(str, shapes['verilator-fast'])):>10s} {g.products:9d} "
              f"{g.hit_rate:6.3f} {g.cycles_lockstep:8d} {dt:7.3f} {g.products / dt:12,.0f}")

    # ---- cycle findings: both disciplines on the RTL, against the all-exact array ------------
    m, k, n = (32, 256, 32) if args.quick else (64, 512, 64)
    a, b = workload(np.random.default_rng(args.seed + 1), m, k, n)
    print(f"\ncycles, {m}x{k} @ {k}x{n} ({m * k * n} products; RTL cycle counters, equal to the "
          f"golden lane model); speedup = all-exact array / this")
    print(f"{'config':16s} {'hit rate':>8s} {'fast ops':>8s} {'lockstep':>9s} {'decoupled':>9s} "
          f"{'exact LS':>9s} {'exact DC':>9s} {'speedup LS':>10s} {'speedup DC':>10s} {'DC vs LS':>8s}")
    for config in (CFPUConfig.exact(), CFPUConfig.approx(0), CFPUConfig.approx(2),
                   CFPUConfig.approx(4), CFPUConfig.approx(2, "dual")):
        rl = run_array(a, b, config, backend="verilator-fast", geometry=geo, discipline="lockstep")
        rd = run_array(a, b, config, backend="verilator-fast", geometry=geo, discipline="decoupled")
        mdl = rl.model
        fast = (mdl.hits + int(mdl.lane_bypassed.sum())) / mdl.products
        row = {"config": config.describe(), "hit_rate": mdl.hit_rate, "fast_share": fast,
               "lockstep": rl.cycles, "decoupled": rd.cycles,
               "baseline_lockstep": mdl.cycles_baseline,
               "baseline_decoupled": mdl.cycles_baseline_decoupled}
        report["cycles"].append(row)
        print(f"{config.describe():16s} {mdl.hit_rate:8.3f} {fast:8.3f} {rl.cycles:9d} {rd.cycles:9d} "
              f"{mdl.cycles_baseline:9d} {mdl.cycles_baseline_decoupled:9d} "
              f"{mdl.cycles_baseline / rl.cycles:10.3f} "
              f"{mdl.cycles_baseline_decoupled / rd.cycles:10.3f} {rl.cycles / rd.cycles:8.3f}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
