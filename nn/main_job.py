"""The ``make sim`` main job: the paper's experiments end to end on the embedded digits set.

1. exact training (baseline), 2. uniform approximate training at ``apx_min`` tuning bits,
3. GTA training (levels 0 .. ``apx_min``), 4. layer-based and uniform inference approximation of
the exact network under a QoS, 5. inference of a few test inputs on the RTL lane array (fast
Verilator co-simulation, checked bit for bit) with cycles and energy against the exact array,
6. a sample of the GTA run's training matmuls (all three phases, iterations spread over the run)
on the RTL lane array, checked bit for bit against the golden model and counter for counter
against the accounting. Every matmul of 1-4 is accounted on the lane array
(:mod:`canna.sim.accounting`): each run reports its cycles and energy against the two baselines
(:mod:`canna.sim.savings`). Prints accuracy, quality loss, hit and fast rates per layer and
phase, the GTA trajectory and the hardware blocks, and ends with the paper's Fig. 5 / Fig. 6 in
words; ``--out`` also writes every results JSON.

Run: ``python -m canna.nn.main_job`` (``make sim`` runs it; its run time: docs/performance.md).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from canna.cli import OneLineErrorParser, path_arg, run_command

from canna.sim.fpga_timing import exact_cycles_arg
from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_LANES, ArrayGeometry

from .backends import get_backend
from .checkpoint import check_output_dir, write_json
from .cli import (layer_sizes_arg, positive_int_arg, print_infer_summary, print_train_summary, seed_arg,
                  tuning_bits_arg)
from .datasets import load_digits
from .hardware import print_rtl_report, rtl_inference, rtl_replay
from .layerwise import run_inference
from .train import TrainConfig, check_training_memory, train

__all__ = ["main", "OUTPUT_FILES"]

#: The files ``--out`` receives.
OUTPUT_FILES = ("train-exact.json", "train-uniform.json", "train-gta.json", "infer.json", "rtl.json",
                "rtl-training.json")


def main(argv=None) -> int:
    p = OneLineErrorParser(prog="python -m canna.nn.main_job", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20, help="training epochs per run (default 20)")
    p.add_argument("--hidden", type=layer_sizes_arg, default=(500, 500),
                   help="hidden layer sizes (default 500,500)")
    p.add_argument("--apx-min", type=tuning_bits_arg, default=5,
                   help="GTA finest level / uniform level (default 5)")
    p.add_argument("--qos", type=float, default=1.0, help="inference QoS, percentage points (default 1)")
    p.add_argument("--seed", type=seed_arg, default=0, help="training seed (default 0)")
    p.add_argument("--backend", default="golden-fast", help="matmul backend (default golden-fast)")
    p.add_argument("--out", type=path_arg, help="directory for the results JSON files")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--rtl-samples", type=int, default=32,
                   help="test inputs whose inference runs on the RTL lane array (0: skip; default 32)")
    p.add_argument("--rtl-train-iterations", type=int, default=4,
                   help="GTA training iterations (spread over the run) whose matmuls run on the RTL "
                        "lane array (0: skip; default 4)")
    p.add_argument("--lanes", type=positive_int_arg, default=DEFAULT_LANES,
                   help=f"lanes of the accounted array (default {DEFAULT_LANES})")
    p.add_argument("--exact-cycles", type=exact_cycles_arg, default=str(DEFAULT_EXACT_CYCLES),
                   help=f"cycles of an exact multiply: an integer (default {DEFAULT_EXACT_CYCLES}, "
                        "assumed) or 'measured' (by make fpga, build/fpga/fpga.json)")
    args = p.parse_args(argv)
    hidden = args.hidden
    exact_cycles, exact_cycles_source = args.exact_cycles
    # every option is checked before the first run: a bad one is one line, not a traceback
    # after minutes of training
    t0 = time.monotonic()
    try:
        get_backend(args.backend)
        train_configs = {
            name: TrainConfig.from_preset("default", epochs=args.epochs, hidden=hidden,
                                          seed=args.seed, backend=args.backend, lanes=args.lanes,
                                          exact_cycles=exact_cycles,
                                          exact_cycles_source=exact_cycles_source, **kw)
            for name, kw in (("exact", dict(mode="exact")),
                             ("uniform", dict(mode="uniform", tuning_bits=args.apx_min)),
                             ("gta", dict(mode="gta", apx_min=args.apx_min)))}
        if not args.qos >= 0:
            raise ValueError(f"--qos must be >= 0, got {args.qos}")
        if args.rtl_samples < 0:
            raise ValueError(f"--rtl-samples must be >= 0, got {args.rtl_samples}")
        if args.rtl_train_iterations < 0:
            raise ValueError(f"--rtl-train-iterations must be >= 0, got {args.rtl_train_iterations}")
        if args.out:
            check_output_dir(args.out, OUTPUT_FILES)
        data = load_digits()
        for cfg in train_configs.values():
            check_training_memory(cfg, [data.n_features, *hidden, data.n_classes], data)
    except (TypeError, ValueError) as e:
        p.error(str(e))
    out = Path(args.out) if args.out else None
    geometry = ArrayGeometry(args.lanes, exact_cycles)
    s = data.summary()
    print(f"== CANNA NN main job: digits ({s['n_train']} train / {s['n_val']} val / {s['n_test']} test, "
          f"{s['n_features']} features, {s['n_classes']} classes), topology {[s['n_features'], *hidden, 10]}, "
          f"preset default (lr 0.01, momentum 0.9, batch 32, dropout 0.5), {args.epochs} epochs, "
          f"seed {args.seed}, backend {args.backend}, policy b; every matmul accounted on a "
          f"{args.lanes}-lane array, exact multiply {exact_cycles} cycles ({exact_cycles_source})")
    print("   command: python -m canna.nn.main_job " + " ".join(argv if argv is not None else sys.argv[1:]))
    runs = {}
    for name, cfg in train_configs.items():
        t = time.monotonic()
        record = ()
        if name == "gta" and args.rtl_train_iterations:
            # spread over the first 90% of the run: GTA may stop a little early near the end
            n, last = args.rtl_train_iterations, cfg.epochs * -(-len(data.y_train) // cfg.batch_size) - 1
            record = sorted({round(i * 0.9 * last / max(n - 1, 1)) for i in range(n)})
        res = train(data, cfg, out_dir=None, quiet=args.quiet, record_iterations=record)
        model = res.pop("_model")
        recorded = res.pop("_recorded", [])
        if name != "exact":
            res["exact_test_accuracy"] = runs["exact"][0]["test_accuracy"]
            res["quality_loss"] = res["exact_test_accuracy"] - res["test_accuracy"]
        runs[name] = (res, model)
        print(f"\n-- training: {name} ({time.monotonic() - t:.1f} s)")
        print_train_summary(res)
        if out:
            write_json(out / f"train-{name}.json", res)

    t = time.monotonic()
    inf = run_inference(runs["exact"][1], data, args.qos / 100.0, args.backend, geometry=geometry)
    inf["exact_cycles_source"] = exact_cycles_source
    print(f"\n-- inference approximation of the exact network ({time.monotonic() - t:.1f} s)")
    print_infer_summary(inf)
    if out:
        write_json(out / "infer.json", inf)

    rtl = None
    if args.rtl_samples:
        t = time.monotonic()
        exact_bits = [None] * runs["exact"][1].n_layers
        # A search that found nothing within the QoS chose exact arithmetic (bits None).
        configs = {"exact": exact_bits,
                   "layer": inf["layer"]["bits"] or exact_bits,
                   "uniform": inf["uniform"]["bits"] or exact_bits,
                   f"t={args.apx_min}": [args.apx_min] * runs["exact"][1].n_layers}
        rtl = rtl_inference(runs["exact"][1], data.x_test[:args.rtl_samples],
                            data.y_test[:args.rtl_samples], configs, lanes=args.lanes,
                            exact_cycles=exact_cycles, exact_cycles_source=exact_cycles_source)
        print(f"\n-- inference on the RTL lane array ({time.monotonic() - t:.1f} s)")
        print_rtl_report(rtl)
        if out:
            write_json(out / "rtl.json", rtl)

    replay = None
    if recorded:
        t = time.monotonic()
        replay = rtl_replay(recorded, geometry)
        print(f"\n-- GTA training matmuls on the RTL lane array ({time.monotonic() - t:.1f} s)")
        print(f"  {replay['matmuls']} matmuls of iterations {replay['iterations']} (forward, backward, "
              f"gradient: {', '.join(f'{k} {v:,}' for k, v in replay['per_phase_products'].items())} "
              f"products), {replay['products']:,} products in each of {' and '.join(replay['disciplines'])}: "
              f"every output bit-identical to the golden model, every counter equal to the golden lane "
              f"model's and to the accounting's")
        if out:
            write_json(out / "rtl-training.json", replay)

    print(f"\n-- summary: the paper's Fig. 5 (training) and Fig. 6 (inference) in words, "
          f"{args.lanes} lanes, exact multiply {exact_cycles} cycles ({exact_cycles_source})")
    rows = [(f"training {name}", runs[name][0]) for name in ("exact", "uniform", "gta")]
    rows += [(f"inference {mode}", inf[mode]) for mode in ("layer", "uniform")]
    for line in summary_table(rows):
        print(line)
    if replay:
        print(f"  RTL check of GTA training: {replay['products']:,} products of {replay['matmuls']} matmuls "
              f"bit-identical, counters equal to the accounting")
    if rtl:
        for name, r in rtl["configs"].items():
            e = r.get("energy_ratio")
            print(f"  RTL array {name:8s} cycles {1 / r['speedup_lockstep']:.3f} (lockstep) / "
                  f"{1 / r['speedup_decoupled']:.3f} (decoupled) of the exact array"
                  + (f", energy {e['lockstep']:.3f} / {e['decoupled']:.3f}" if e else ""))
    print(f"  total time {time.monotonic() - t0:.1f} s")
    return 0


def _cell(block, kind, baseline, discipline) -> str:
    table = block.get(kind) if block else None
    v = table[baseline][discipline] if table else None
    return "     -" if v is None else f"{v:6.3f}"


def summary_table(rows) -> list[str]:
    """One line per run: quality loss, hit and fast rate, speedup and energy ratio against both
    baselines in both disciplines (LS lockstep, DC decoupled); then the decomposition."""
    head = (f"  {'run':20s} {'quality':>8s} {'hit':>6s} {'fast':>6s}   "
            f"{'speedup vs zero_skip':>13s} {'vs plain':>13s}   {'energy vs zero_skip':>13s} {'vs plain':>13s}")
    lines = [head, f"  {'':20s} {'loss pp':>8s} {'rate':>6s} {'rate':>6s}   "
                   + "   ".join(f"{'LS':>6s} {'DC':>6s} {'LS':>6s} {'DC':>6s}" for _ in range(2))]
    for name, r in rows:
        hw = r.get("hardware")
        ql = r.get("quality_loss", 0.0)
        cells = []
        for kind in ("speedup", "energy_ratio"):
            cells.append(" ".join(_cell(hw, kind, b, s) for b in ("zero_skip", "plain")
                                  for s in ("lockstep", "decoupled")))
        fast = r.get("fast_rate")
        lines.append(f"  {name:20s} {100 * ql:+8.2f} {100 * r['hit_rate']:5.1f}% "
                     f"{'-' if fast is None else f'{100 * fast:5.1f}%':>6s}   {cells[0]}   {cells[1]}")
    lines.append("  decomposition against plain, lockstep speedup / energy ratio: zero skipping alone, "
                 "approximation alone, both")
    for name, r in rows:
        d = (r.get("hardware") or {}).get("decomposition")
        if not d:
            continue
        parts = []
        for key in ("zero_skip_alone", "approximation_alone", "both"):
            e = d[key]["energy_ratio"]
            parts.append(f"{d[key]['speedup']['lockstep']:.3f}x / "
                         + ("-" if e is None else f"{e['lockstep']:.3f}"))
        lines.append(f"  {name:20s} " + "   ".join(parts))
    return lines


if __name__ == "__main__":
    sys.exit(run_command("python -m canna.nn.main_job", main))
