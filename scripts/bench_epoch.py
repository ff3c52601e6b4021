"""Epoch bench: what the lane-array accounting of every matmul costs on a whole training epoch.

A full Fashion-MNIST epoch (784-500-500-10, preset default: batch 32, dropout 0.5; 50 000 training
images, 1563 SGD steps of three matmul phases each) is trained from the same seed with the
accounting off (``--no-accounting``) and on (the default: every matmul accounted on the 16-lane
array, exact multiply 4 cycles), in paired rounds: each round runs A (off) then B (on), so a slow
moment of the machine hits both sides; the ratio B / A is taken round by round, and min / median
/ max over the rounds are printed. The goal (issue 11): the median ratio at most 1.3. Nothing is
asserted on time.

    python scripts/bench_epoch.py [--rounds 5] [--mode uniform --tuning-bits 4] [--train-limit N]
                                  [--json build/bench_epoch.json]

Needs Fashion-MNIST (``apt-get install dataset-fashion-mnist``, or ``--data-dir``).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_accounting import stats          # scripts/ is this script's first import path
from bench_step import save_report
from canna.nn.datasets import DatasetError, load_dataset
from canna.nn.train import TrainConfig, train


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    ap.add_argument("--mode", default="uniform", choices=["exact", "uniform"])
    ap.add_argument("--tuning-bits", type=int, default=4)
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: Debian's)")
    ap.add_argument("--train-limit", type=int, default=None, help="fewer training images (quick look)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    try:
        data = load_dataset("fashion-mnist", args.data_dir)
    except DatasetError as e:
        ap.error(f"{e} (Debian: apt-get install dataset-fashion-mnist)")
    bits = dict(tuning_bits=args.tuning_bits) if args.mode == "uniform" else {}
    configs = {name: TrainConfig.from_preset("default", dataset="fashion-mnist", epochs=1, mode=args.mode,
                                             train_limit=args.train_limit, accounting=on, **bits)
               for name, on in (("off", False), ("on", True))}
    print(f"epoch bench: fashion-mnist, {len(data.y_train) if args.train_limit is None else args.train_limit} "
          f"training images, mode {args.mode}{f' t={args.tuning_bits}' if bits else ''}, accounting off (A) "
          f"vs on (B, 16 lanes, exact 4 cycles), {args.rounds} paired rounds, {platform.machine()} "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
    times = {name: [] for name in configs}
    result = None
    for r in range(args.rounds):
        for name, cfg in configs.items():
            t = time.perf_counter()
            res = train(data, cfg)
            times[name].append(time.perf_counter() - t)
            if name == "on":
                result = res
        print(f"  round {r + 1}: off {times['off'][-1]:.2f} s, on {times['on'][-1]:.2f} s, "
              f"ratio {times['on'][-1] / times['off'][-1]:.3f}", flush=True)
    ratio = np.array(times["on"]) / np.array(times["off"])
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "mode": args.mode, "iterations": result["iterations_run"],
              "products": result["products"], "hit_rate": result["hit_rate"],
              "fast_rate": result["fast_rate"],
              "seconds": {name: stats(v) for name, v in times.items()}, "ratio_on_off": stats(ratio),
              "goal": 1.3}
    s = report["ratio_on_off"]
    print(f"  epoch seconds: off min {min(times['off']):.2f} median {np.median(times['off']):.2f} max "
          f"{max(times['off']):.2f}; on min {min(times['on']):.2f} median {np.median(times['on']):.2f} "
          f"max {max(times['on']):.2f}")
    print(f"  ratio on / off: min {s['min']:.3f} median {s['median']:.3f} max {s['max']:.3f} (goal <= 1.3: "
          f"{'met' if s['median'] <= 1.3 else 'NOT met'}); {result['products']:,} products accounted, "
          f"hit rate {100 * result['hit_rate']:.1f}%, fast rate {100 * result['fast_rate']:.1f}%")
    save_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
