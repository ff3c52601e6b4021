"""The ``make sim`` main job: the paper's experiments end to end on the embedded digits set.

1. exact training (baseline), 2. uniform approximate training at ``apx_min`` tuning bits,
3. GTA training (levels 0 .. ``apx_min``), 4. layer-based and uniform inference approximation of
the exact network under a QoS, 5. inference of a few test inputs on the RTL lane array (fast
Verilator co-simulation, checked bit for bit) with cycles and energy against the exact array. Prints accuracy, quality loss, hit rates per layer and phase, and
the GTA trajectory; ``--out`` also writes every results JSON.

Run: ``python -m canna.nn.main_job`` (``make sim`` runs it; its run time: docs/performance.md).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from canna.cli import OneLineErrorParser, path_arg, run_command

from .backends import get_backend
from .checkpoint import check_output_dir, write_json
from .cli import layer_sizes_arg, print_infer_summary, print_train_summary, seed_arg, tuning_bits_arg
from .datasets import load_digits
from .hardware import print_rtl_report, rtl_inference
from .layerwise import run_inference
from .train import TrainConfig, check_training_memory, train

__all__ = ["main", "OUTPUT_FILES"]

#: The files ``--out`` receives.
OUTPUT_FILES = ("train-exact.json", "train-uniform.json", "train-gta.json", "infer.json", "rtl.json")


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
    args = p.parse_args(argv)
    hidden = args.hidden
    # every option is checked before the first run: a bad one is one line, not a traceback
    # after minutes of training
    t0 = time.monotonic()
    try:
        get_backend(args.backend)
        train_configs = {
            name: TrainConfig.from_preset("default", epochs=args.epochs, hidden=hidden,
                                          seed=args.seed, backend=args.backend, **kw)
            for name, kw in (("exact", dict(mode="exact")),
                             ("uniform", dict(mode="uniform", tuning_bits=args.apx_min)),
                             ("gta", dict(mode="gta", apx_min=args.apx_min)))}
        if not args.qos >= 0:
            raise ValueError(f"--qos must be >= 0, got {args.qos}")
        if args.rtl_samples < 0:
            raise ValueError(f"--rtl-samples must be >= 0, got {args.rtl_samples}")
        if args.out:
            check_output_dir(args.out, OUTPUT_FILES)
        data = load_digits()
        for cfg in train_configs.values():
            check_training_memory(cfg, [data.n_features, *hidden, data.n_classes], data)
    except (TypeError, ValueError) as e:
        p.error(str(e))
    out = Path(args.out) if args.out else None
    s = data.summary()
    print(f"== CANNA NN main job: digits ({s['n_train']} train / {s['n_val']} val / {s['n_test']} test, "
          f"{s['n_features']} features, {s['n_classes']} classes), topology {[s['n_features'], *hidden, 10]}, "
          f"preset default (lr 0.01, momentum 0.9, batch 32, dropout 0.5), {args.epochs} epochs, "
          f"seed {args.seed}, backend {args.backend}, policy b")
    print("   command: python -m canna.nn.main_job " + " ".join(argv if argv is not None else sys.argv[1:]))
    runs = {}
    for name, cfg in train_configs.items():
        t = time.monotonic()
        res = train(data, cfg, out_dir=None, quiet=args.quiet)
        model = res.pop("_model")
        if name != "exact":
            res["exact_test_accuracy"] = runs["exact"][0]["test_accuracy"]
            res["quality_loss"] = res["exact_test_accuracy"] - res["test_accuracy"]
        runs[name] = (res, model)
        print(f"\n-- training: {name} ({time.monotonic() - t:.1f} s)")
        print_train_summary(res)
        if out:
            write_json(out / f"train-{name}.json", res)

    t = time.monotonic()
    inf = run_inference(runs["exact"][1], data, args.qos / 100.0, args.backend)
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
                            data.y_test[:args.rtl_samples], configs)
        print(f"\n-- inference on the RTL lane array ({time.monotonic() - t:.1f} s)")
        print_rtl_report(rtl)
        if out:
            write_json(out / "rtl.json", rtl)

    print("\n-- summary")
    e = runs["exact"][0]["test_accuracy"]
    for name in ("uniform", "gta"):
        r = runs[name][0]
        print(f"  training {name:8s} test accuracy {100 * r['test_accuracy']:.2f}% (exact {100 * e:.2f}%, "
              f"quality loss {100 * r['quality_loss']:+.2f} pp), hit rate {100 * r['hit_rate']:.1f}% "
              f"({100 * r['nonzero_hit_rate']:.1f}% of nonzero products), {r['iterations_run']} iterations")
    for mode in ("layer", "uniform"):
        r = inf[mode]
        print(f"  inference {mode:8s} bits {r['bits']} quality loss {100 * r['quality_loss']:+.2f} pp, "
              f"hit rate {100 * r['hit_rate']:.1f}%")
    if rtl:
        for name, r in rtl["configs"].items():
            e = r.get("energy_ratio")
            print(f"  RTL array {name:8s} cycles {1 / r['speedup_lockstep']:.3f} (lockstep) / "
                  f"{1 / r['speedup_decoupled']:.3f} (decoupled) of the exact array"
                  + (f", energy {e['lockstep']:.3f} / {e['decoupled']:.3f}" if e else ""))
    print(f"  total time {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python -m canna.nn.main_job", main))
