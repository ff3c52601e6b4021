"""Accounting bench: what the lane-array accounting of a matmul (canna.sim.accounting) costs
next to the matmul itself.

Workload (seeded, NN-like): ReLU activations x = max(N(0, 1), 0) (about half exact zeros) times
weights W ~ N(0, 0.05), t=4 policy b, the default array (16 lanes, exact multiply 4 cycles). Every
shape's accounting is first checked against the C twin of the golden lane model
(canna.sim.lanes_native.run_lane_array): all totals equal, or the bench stops.

Timing is paired and interleaved: every round runs each variant once, in the same order
(A, B, A, B, ...), each sample the mean of enough calls to last about --sample-ms; min, median
and max over the rounds are printed, and the ratios are taken round by round (B / A of the same
round) so that a slow moment of the machine hits both sides. Variants:

    mf          matmul_fast(x, Prepared W)                 (weights prepared once, as inference)
    mf+acc      matmul_fast(x, Prepared W) + account_matmul(x, AccountingOperand W)
    np          np.matmul(x, W)
    acc         account_matmul(x, AccountingOperand W)
    mf raw      matmul_fast(x, W, config)                  (W prepared inside every call)
    mf+acc raw  matmul_fast(x, W, config) + account_matmul(x, W, config)

Nothing is asserted on time.

    python scripts/bench_accounting.py [--rounds 11] [--sample-ms 20] [--json build/bench_accounting.json]
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

from canna.sim import accounting, lanes_native
from canna.sim.matmul import matmul_fast, prepare
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig

SHAPES = [(32, 500, 500), (100, 500, 500), (32, 784, 500), (500, 500, 10)]
TOTALS = ("products", "hits", "bypassed", "tiles", "cycles_lockstep", "cycles_decoupled",
          "cycles_baseline", "cycles_baseline_decoupled", "cycles_plain",
          "cycles_no_skip_lockstep", "cycles_no_skip_decoupled")


def workload(rng, m, k, n):
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    return x, w


def calls_for(fn, sample_s: float) -> int:
    """Calls per sample so that one sample lasts about ``sample_s``."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(sample_s / one))


def sample(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=11, help="paired rounds (at least 9)")
    ap.add_argument("--sample-ms", type=float, default=20.0, help="length of one sample")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--tuning-bits", type=int, default=4)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.rounds < 9:
        ap.error("--rounds must be at least 9")
    config = CFPUConfig.approx(args.tuning_bits, "b")
    geometry = ArrayGeometry()
    rng = np.random.default_rng(args.seed)
    simd = accounting.library().canna_acc_simd()
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, engine SIMD {'on' if simd else 'off'}",
              "config": config.describe(), "lanes": geometry.lanes,
              "exact_cycles": geometry.exact_cycles, "rounds": args.rounds, "shapes": []}
    print(f"accounting bench: {config.describe()}, {geometry.lanes} lanes, exact multiply "
          f"{geometry.exact_cycles} cycles, {args.rounds} paired rounds, {report['machine']}")
    for m, k, n in SHAPES:
        x, w = workload(rng, m, k, n)
        p_mm = prepare(w, config)
        p_acc = accounting.prepare_accounting(w, config)
        p_acc.tables(geometry.lanes)
        ref = lanes_native.run_lane_array(x, w, config, geometry)
        got = accounting.account_matmul(x, p_acc, geometry=geometry)
        bad = [f for f in TOTALS if int(getattr(got, f)) != int(getattr(ref, f))]
        if bad or accounting.account_matmul(x, w, config, geometry) != got:
            print(f"{m}x{k} @ {k}x{n}: accounting differs from the lane model in {bad}")
            return 1
        variants = {
            "mf": lambda: matmul_fast(x, p_mm),
            "mf+acc": lambda: (matmul_fast(x, p_mm), accounting.account_matmul(x, p_acc)),
            "np": lambda: np.matmul(x, w),
            "acc": lambda: accounting.account_matmul(x, p_acc),
            "mf raw": lambda: matmul_fast(x, w, config),
            "mf+acc raw": lambda: (matmul_fast(x, w, config), accounting.account_matmul(x, w, config)),
        }
        calls = {name: calls_for(fn, args.sample_ms / 1e3) for name, fn in variants.items()}
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times[name].append(sample(fn, calls[name]))
        t = {name: np.array(v) for name, v in times.items()}
        ratios = {"mf+acc / mf": t["mf+acc"] / t["mf"], "acc / np": t["acc"] / t["np"],
                  "mf+acc raw / mf raw": t["mf+acc raw"] / t["mf raw"]}
        entry = {"shape": [m, k, n], "hit_rate": got.hit_rate,
                 "speedup_lockstep": ref.speedup_lockstep,
                 "times_us": {name: {s: 1e6 * v for s, v in stats(vals).items()}
                              for name, vals in times.items()},
                 "ratios": {name: stats(v) for name, v in ratios.items()}}
        report["shapes"].append(entry)
        print(f"\n{m}x{k} @ {k}x{n}: accounting = lane model (hit rate {got.hit_rate:.3f}, "
              f"lockstep speedup {ref.speedup_lockstep:.3f})")
        print(f"  {'variant':<12} {'min us':>9} {'median us':>10} {'max us':>9}")
        for name, s in entry["times_us"].items():
            print(f"  {name:<12} {s['min']:9.1f} {s['median']:10.1f} {s['max']:9.1f}")
        for name, s in entry["ratios"].items():
            print(f"  ratio {name:<20} min {s['min']:.3f}  median {s['median']:.3f}  max {s['max']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
