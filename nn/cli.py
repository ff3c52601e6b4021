"""``canna train`` and ``canna infer``: the NN experiments of the paper from the command line.

Examples::

    canna train --dataset digits --mode gta --apx-min 5 --baseline --out runs/digits-gta
    canna train --dataset digits --mode uniform --tuning-bits 3 --epochs 5
    canna train --dataset mnist --data-dir ~/data/mnist --preset paper --mode gta --apx-min 5
    canna infer --dataset digits --model runs/digits-gta/model.npz --mode both --qos 1
    canna train ... --resume          # continue an interrupted run from --out/checkpoint.npz

Every option and output location is checked before any data is loaded or any training starts:
a bad one is one line (``canna train: error: ...``), exit status 2. ``--data-dir`` with the
embedded ``digits`` dataset is an error, not silently ignored (digits reads no files: the
option most likely belongs to a forgotten ``--dataset``).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from canna.cli import CliError, path_arg
from canna.spec.config import MAX_TUNING_BITS, check_tuning_bits

__all__ = ["register", "run_train", "run_infer", "layer_sizes_arg", "tuning_bits_arg", "seed_arg",
           "print_train_summary", "print_infer_summary"]


def _integer(text: str, low: int, what: str) -> int:
    """``text`` as an integer >= ``low``, else an ArgumentTypeError saying ``what`` it must be."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"{what} must be an integer >= {low}, got {v}")
    return v


def seed_arg(text: str) -> int:
    """argparse type of a seed option (``--seed``, ``--split-seed``): a non-negative integer, as
    NumPy's generators take it."""
    return _integer(text, 0, "a seed")


def positive_int_arg(text: str) -> int:
    """argparse type of a count option (``--lanes``, ``--exact-cycles``): an integer >= 1."""
    return _integer(text, 1, "the value")


def layer_sizes_arg(text: str) -> tuple:
    """argparse type of ``--hidden``: comma-separated positive layer sizes, e.g. ``500,500``."""
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return vals


def tuning_bits_arg(text: str) -> int:
    """argparse type of a tuning-bit option (``--tuning-bits``, ``--apx-min``): an integer in
    ``0 .. MAX_TUNING_BITS``, range-checked by :func:`canna.spec.config.check_tuning_bits`."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tuning bits must be an integer, got {text!r}") from None
    try:
        return check_tuning_bits(v, "tuning bits")
    except (TypeError, ValueError) as e:   # argparse reports only ArgumentTypeError as one line
        raise argparse.ArgumentTypeError(str(e)) from None


def _checked(text: str) -> dict:
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        phase, sep, operand = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected phase=operand pairs, got {item!r}")
        out[phase.strip()] = operand.strip()
    return out


def _add_common(p: argparse.ArgumentParser) -> None:
    from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_LANES
    from .backends import backend_names
    from .datasets import DATASETS, INPUT_SCALES
    from .train import HIT_ACCOUNTINGS
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="dataset (default: digits, embedded; others read files from --data-dir)")
    g.add_argument("--data-dir", type=path_arg, help="directory with the dataset files (an error with digits, which reads none)")
    g.add_argument("--split-seed", type=seed_arg, default=0, help="seed of the train/val/test split (default 0)")
    g.add_argument("--hyper-classes", type=int, default=9,
                   help="hyperspectral: keep the N most populous classes (default 9, the paper's setup)")
    g.add_argument("--input-scale", default="standard", choices=INPUT_SCALES,
                   help="features standardised (default) or on the raw [0, 1] scale (unit: pixels "
                        "k/255 as the paper's MNIST; see docs/datasets.md)")
    a = p.add_argument_group("arithmetic")
    a.add_argument("--policy", default="b", choices=["b", "dual"],
                   help="operand whose mantissa may be discarded (default b: the checked operand)")
    a.add_argument("--backend", default="golden-fast", choices=backend_names(),
                   help="matmul backend (default golden-fast)")
    a.add_argument("--checked", type=_checked, default={},
                   help="checked operand per phase, e.g. forward=weight,backward=weight,gradient=input "
                        "(the defaults)")
    h = p.add_argument_group("hardware accounting (every matmul, on the lane array)")
    h.add_argument("--lanes", type=positive_int_arg, default=DEFAULT_LANES,
                   help=f"lanes of the array (default {DEFAULT_LANES})")
    from canna.sim.fpga_timing import exact_cycles_arg
    h.add_argument("--exact-cycles", type=exact_cycles_arg, default=str(DEFAULT_EXACT_CYCLES),
                   help=f"cycles of an exact multiply: an integer (default {DEFAULT_EXACT_CYCLES}, "
                        "assumed) or 'measured' (by make fpga, build/fpga/fpga.json); hits and "
                        "zero/inf/NaN operands take 1")
    h.add_argument("--no-accounting", dest="accounting", action="store_false",
                   help="no lane-array accounting (no fast rate, no hardware block)")
    h.add_argument("--hit-accounting", default="approx", choices=HIT_ACCOUNTINGS,
                   help="what reports call the hit rate: approx (hits / products, default) or fast "
                        "(hits + zero/inf/NaN-operand products, the share retiring in one cycle)")
    t = p.add_argument_group("training")
    t.add_argument("--preset", default="default", choices=["default", "paper"],
                   help="hyper-parameters: default (lr 0.01, momentum 0.9, batch 32) or paper "
                        "(lr 0.001, momentum 0.1, batch 10); dropout 0.5 in both")
    t.add_argument("--hidden", type=layer_sizes_arg, default=(500, 500),
                   help="hidden layer sizes (default 500,500)")
    t.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    t.add_argument("--seed", type=seed_arg, default=0, help="seed of weights, shuffling and dropout (default 0)")
    t.add_argument("--lr", type=float, help="learning rate (overrides the preset)")
    t.add_argument("--momentum", type=float, help="momentum (overrides the preset)")
    t.add_argument("--batch-size", type=int, help="mini-batch size (overrides the preset)")
    t.add_argument("--dropout", type=float, help="dropout on hidden layers (overrides the preset)")
    t.add_argument("--train-limit", type=int, help="use only N training samples (quick runs)")
    p.add_argument("--out", type=path_arg, help="output directory (results JSON, checkpoint, model)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def register(sub) -> None:
    tr = sub.add_parser("train", help="train an MLP with exact, uniform or GTA approximate arithmetic",
                        description="Train an MLP whose every matmul multiplication runs on the CFPU "
                                    "arithmetic (forward, backward error, weight gradient).")
    _add_common(tr)
    m = tr.add_argument_group("approximation")
    m.add_argument("--mode", default="exact", choices=["exact", "uniform", "gta"],
                   help="exact, uniform (--tuning-bits for the whole run) or gta (levels 0..--apx-min)")
    m.add_argument("--tuning-bits", type=tuning_bits_arg,
                   help=f"uniform mode: tuning bits (0..{MAX_TUNING_BITS})")
    m.add_argument("--apx-min", type=tuning_bits_arg, help="gta mode: finest level allowed (tuning bits)")
    m.add_argument("--phases", default="forward,backward,gradient",
                   help="matmul phases that run approximately (default all three)")
    m.add_argument("--gta-window", type=int, default=50, help="GTA slope window, iterations (default 50)")
    m.add_argument("--gta-thr", type=float, default=0.002,
                   help="GTA relative improvement threshold per iteration (default 0.002)")
    m.add_argument("--gta-reserve", type=float, default=0.25,
                   help="GTA fraction of iter_max reserved for the final level (default 0.25)")
    m.add_argument("--gta-patience", type=int, default=3,
                   help="GTA converged windows at apx-min before stopping (default 3)")
    m.add_argument("--gta-no-stop", action="store_true", help="GTA: train all epochs even when converged")
    tr.add_argument("--framework", default="numpy", choices=["numpy", "torch"],
                    help="numpy (default: this driver) or torch "
                         "(PyTorch models with CFPU layers, canna.torch; docs/torch.md)")
    tr.add_argument("--model", default="mlp", choices=["mlp", "lenet"],
                    help="the paper's MLP (default) or, with --framework torch, a LeNet-5-style CNN")
    tr.add_argument("--baseline", action="store_true",
                    help="also train the exact network (same seed) and report the quality loss")
    tr.add_argument("--resume", action="store_true",
                    help="continue from --out/checkpoint.npz (with --baseline: whichever of "
                         "--out/baseline/checkpoint.npz and --out/checkpoint.npz was interrupted)")
    tr.set_defaults(run=run_train)

    inf = sub.add_parser("infer", help="layer-based (Algorithm 2) and uniform inference approximation",
                         description="Sensitivity analysis and per-layer approximation of a trained "
                                     "network on validation data, evaluated on test data.")
    _add_common(inf)
    inf.add_argument("--model", type=path_arg, help="model.npz from `canna train` (default: train an exact one first)")
    inf.add_argument("--mode", default="both", choices=["layer", "uniform", "both"],
                     help="layer-based, uniform or both (default both)")
    inf.add_argument("--qos", type=float, default=1.0,
                     help="maximum added classification error, percentage points (default 1.0)")
    inf.add_argument("--metric", default="kl", choices=["kl", "loss", "error"],
                     help="sensitivity metric on validation data: KL divergence from the exact "
                          "outputs (default), loss increase, or error increase (the paper's)")
    inf.add_argument("--spread", type=float, default=3.0,
                     help="tuning-bit offset of the least sensitive layer (default 3, Table II)")
    inf.set_defaults(run=run_infer)


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _load(args):
    from .datasets import load_dataset
    return load_dataset(args.dataset, args.data_dir, split_seed=args.split_seed,
                        max_classes=args.hyper_classes, input_scale=args.input_scale)


def _train_config(args, **over):
    from .train import TrainConfig
    phases = tuple(p.strip() for p in getattr(args, "phases", "forward,backward,gradient").split(",") if p.strip())
    kw = dict(dataset=args.dataset, hidden=args.hidden, policy=args.policy, backend=args.backend,
              checked={**args.checked}, epochs=args.epochs, seed=args.seed, lr=args.lr,
              momentum=args.momentum, batch_size=args.batch_size, dropout=args.dropout,
              train_limit=args.train_limit, phases=phases, lanes=args.lanes,
              exact_cycles=args.exact_cycles.value, exact_cycles_source=args.exact_cycles.source,
              input_scale=args.input_scale,
              hit_accounting=args.hit_accounting, accounting=args.accounting)
    for name in ("mode", "tuning_bits", "apx_min", "gta_window", "gta_thr", "gta_reserve", "gta_patience"):
        if hasattr(args, name):
            kw[name] = getattr(args, name)
    if getattr(args, "gta_no_stop", False):
        kw["gta_stop"] = False
    kw.update(over)
    from .mlp import DEFAULT_CHECKED
    kw["checked"] = {**DEFAULT_CHECKED, **kw["checked"]}
    return TrainConfig.from_preset(args.preset, **kw)


def _errors():
    from .checkpoint import CheckpointError
    from .datasets import DatasetError
    return (ValueError, TypeError, FloatingPointError, DatasetError, CheckpointError, OSError)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _rates(row: dict, accounting: str) -> str:
    """``hit X (fast Y)`` of a results row; under ``fast`` accounting the fast rate leads."""
    hit, fast = row.get("hit_rate"), row.get("fast_rate")
    if fast is None:
        return f"hit {_pct(hit)}"
    if accounting == "fast":
        return f"fast {_pct(fast)} (hit {_pct(hit)})"
    return f"hit {_pct(hit)} (fast {_pct(fast)})"


def _checked_line(checked: dict) -> str:
    return "checked operand: " + ", ".join(f"{phase} {operand}" for phase, operand in checked.items())


def print_train_summary(res: dict, file=None) -> None:
    from canna.sim.savings import format_hardware_block
    file = file or sys.stdout   # looked up per call: sys.stdout may be replaced
    cfg = res["config"]
    accounting = res.get("hit_accounting", "approx")
    print(f"train {cfg['dataset']} mode={cfg['mode']} topology={res['topology']} backend={cfg['backend']} "
          f"policy={cfg['policy']} seed={cfg['seed']} iterations={res['iterations_run']}/{res['iter_max']}",
          file=file)
    print(f"  {_checked_line(cfg['checked'])}; input scale {cfg.get('input_scale', 'standard')}; "
          f"hit accounting {accounting}", file=file)
    line = f"  test accuracy {_pct(res['test_accuracy'])}"
    if "exact_test_accuracy" in res:
        line += (f"   exact baseline {_pct(res['exact_test_accuracy'])}   "
                 f"quality loss {100 * res['quality_loss']:+.2f} pp")
    if "test_accuracy_final_level" in res:
        line += f"   (inference at final level t={res['final_level']}: {_pct(res['test_accuracy_final_level'])})"
    print(line, file=file)
    print(f"  products {res['products']:,}   {_rates(res, accounting)}; "
          f"hit rate of products with nonzero operands {_pct(res['nonzero_hit_rate'])}", file=file)
    for row in res["per_layer"]:
        parts = [f"{ph} {_rates(row[ph], accounting)}" for ph in ("forward", "backward", "gradient") if ph in row]
        print(f"    layer {row['layer']}: {', '.join(parts)}", file=file)
    if "gta" in res:
        traj = " -> ".join(f"t={e['level']}@{e['iteration']}" for e in res["gta"]["trajectory"]
                           if e["reason"] != "stop")
        stop = " (stopped: converged at apx-min)" if res["gta"]["stopped_early"] else ""
        print(f"  GTA trajectory (level@iteration): {traj}{stop}", file=file)
    if "hardware" in res:
        for line in format_hardware_block(res["hardware"], cfg.get("exact_cycles_source")):
            print(line, file=file)


def print_infer_summary(res: dict, file=None) -> None:
    from canna.sim.savings import format_hardware_block
    file = file or sys.stdout   # looked up per call: sys.stdout may be replaced
    accounting = res.get("hit_accounting", "approx")
    print(f"infer: QoS {100 * res['qos']:.2f} pp on validation; exact test accuracy "
          f"{_pct(res['exact_test_accuracy'])}", file=file)
    if "checked" in res:
        print(f"  {_checked_line({'forward': res['checked']['forward']})}; policy {res['policy']}; "
              f"hit accounting {accounting}", file=file)
    if "sensitivity" in res:
        s = res["sensitivity"]
        print(f"  sensitivity ({s['metric']}, one layer at t={s['apx_max']}): "
              + "  ".join(f"L{i + 1} {v:.2f}" for i, v in enumerate(s["normalized"])), file=file)
    for mode in ("layer", "uniform"):
        if mode not in res:
            continue
        r = res[mode]
        bits = "exact" if r["bits"] is None else "[" + ", ".join(map(str, r["bits"])) + "] bits"
        per_layer = r["layer_fast_rates"] if accounting == "fast" and "layer_fast_rates" in r else r["layer_hit_rates"]
        print(f"  {mode:8s} {bits:24s} test accuracy {_pct(r['test_accuracy'])} "
              f"quality loss {100 * r['quality_loss']:+.2f} pp  {_rates(r, accounting)}  per layer "
              + " ".join(_pct(h) for h in per_layer), file=file)
        if "hardware" in r:
            for line in format_hardware_block(r["hardware"], res.get("exact_cycles_source")):
                print("  " + line, file=file)


def _baseline_dir(out):
    return None if out is None else Path(out) / "baseline"


def _resume_plan(args, with_baseline: bool) -> tuple[bool, bool]:
    """Whether ``--resume`` resumes ``(the baseline, the main run)``.

    A ``--baseline`` run trains the exact baseline in ``--out/baseline`` first, then the main
    run in ``--out``; Ctrl-C can land in either. Each resumes from its checkpoint where it has
    one and starts fresh where it has none (the main run, when the baseline was the one
    interrupted), so the files equal an uninterrupted run's. No checkpoint at all is an error.
    """
    from .checkpoint import CheckpointError
    if not args.resume:
        return False, False
    if args.out is None:
        raise CheckpointError("--resume: no checkpoint to resume from (no --out given)")
    if not with_baseline:
        return False, True      # train() names the missing checkpoint
    main_ckpt, base_ckpt = Path(args.out) / "checkpoint.npz", _baseline_dir(args.out) / "checkpoint.npz"
    have_base, have_main = base_ckpt.is_file(), main_ckpt.is_file()
    if not (have_base or have_main):
        raise CheckpointError(f"--resume: no checkpoint {main_ckpt} or {base_ckpt} to resume from")
    return have_base, have_main


def run_train(args) -> int:
    if args.framework == "torch":
        from canna.torch.train import run_train_cli
        return run_train_cli(args)
    if args.model != "mlp":
        raise CliError(f"--model {args.model}: the NumPy driver trains MLPs only; add --framework torch")
    from .train import OUTPUT_FILES, train
    return run_training(args, train, OUTPUT_FILES, "model.npz")


#: What the results keep of the exact baseline's (those it has: no accounting, no fast rate or hardware).
BASELINE_KEYS = ("test_accuracy", "val_accuracy", "products", "seconds", "hit_rate", "fast_rate", "hardware")


def run_training(args, train, output_files, model_file: str) -> int:
    """``canna train`` on a driver: ``train(data, cfg, *, out_dir, resume, progress, quiet)``
    (:func:`canna.nn.train.train`, or canna.torch's) writes ``output_files`` in its ``out_dir``,
    the trained model as ``model_file``. Options and output locations are checked before any
    loading; with ``--baseline`` the exact baseline trains first in ``--out/baseline``
    (``--resume``: :func:`_resume_plan`) and the results get its accuracy, the quality loss and
    its :data:`BASELINE_KEYS`."""
    from .checkpoint import check_output_dir, write_json
    try:
        # Checked before any loading or training, so that a typo costs nothing.
        cfg = _train_config(args)
        with_baseline = args.baseline and cfg.mode != "exact"
        if args.out is not None:
            check_output_dir(args.out, [*output_files, *(f"baseline/{f}" for f in output_files if with_baseline)])
        resume_base, resume_main = _resume_plan(args, with_baseline)
        data = _load(args)
        base = None
        if with_baseline:
            bcfg = _train_config(args, mode="exact", tuning_bits=None, apx_min=None)
            base = train(data, bcfg, out_dir=_baseline_dir(args.out), resume=resume_base,
                         progress=_progress(args), quiet=args.quiet)
        res = train(data, cfg, out_dir=args.out, resume=resume_main, progress=_progress(args),
                    quiet=args.quiet)
    except _errors() as e:
        raise CliError(str(e)) from None
    res.pop("_model", None)
    if base is not None:
        res["exact_test_accuracy"] = base["test_accuracy"]
        res["quality_loss"] = base["test_accuracy"] - res["test_accuracy"]
        res["baseline"] = {k: base[k] for k in BASELINE_KEYS if k in base}
    if args.out:
        write_json(Path(args.out) / "results.json", res)
    print_train_summary(res)
    if args.out:
        print(f"  results: {Path(args.out) / 'results.json'}   model: {Path(args.out) / model_file}")
    return 0


def run_infer(args) -> int:
    from .checkpoint import check_output_dir, write_json
    from .layerwise import run_inference
    from .train import OUTPUT_FILES, load_model, train
    try:
        # Checked before any loading or training, so that a typo costs nothing.
        if args.out is not None:
            trained = [] if args.model else [f"trained/{f}" for f in OUTPUT_FILES]
            check_output_dir(args.out, ["infer.json", *trained])
        if not (math.isfinite(args.qos) and args.qos >= 0):
            raise ValueError(f"--qos must be a finite number >= 0 (percentage points), got {args.qos}")
        if not (math.isfinite(args.spread) and 0 <= args.spread <= MAX_TUNING_BITS):
            raise ValueError(f"--spread must be in 0..{MAX_TUNING_BITS} tuning bits, got {args.spread}")
        for name, value in vars(args).items():   # all of them go to infer.json, strict JSON
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        data = _load(args)
        if args.model:
            model, meta = load_model(args.model)
            if model.sizes[0] != data.n_features or model.sizes[-1] != data.n_classes:
                raise ValueError(f"model {args.model} takes {model.sizes[0]} features / {model.sizes[-1]} "
                                 f"classes; dataset {data.name} has {data.n_features} / {data.n_classes}")
            source = str(args.model)
        else:
            cfg = _train_config(args, mode="exact", tuning_bits=None, apx_min=None)
            tr = train(data, cfg, out_dir=None if args.out is None else Path(args.out) / "trained",
                       progress=_progress(args), quiet=args.quiet)
            model, source = tr["_model"], "trained exact network (this run)"
        modes = ("layer", "uniform") if args.mode == "both" else (args.mode,)
        from .mlp import DEFAULT_CHECKED
        from canna.spec.array import ArrayGeometry
        res = run_inference(model, data, args.qos / 100.0, args.backend, policy=args.policy,
                            checked={**DEFAULT_CHECKED, **args.checked}, metric=args.metric,
                            spread=args.spread, modes=modes,
                            geometry=ArrayGeometry(args.lanes, args.exact_cycles.value) if args.accounting else None)
        res["hit_accounting"] = args.hit_accounting
        res["exact_cycles_source"] = args.exact_cycles.source
    except _errors() as e:
        raise CliError(str(e)) from None
    res["model"] = source
    res["dataset"] = data.summary()
    res["config"] = {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else list(v))
                     for k, v in vars(args).items() if k != "run"}
    if args.out:
        write_json(Path(args.out) / "infer.json", res)
    print_infer_summary(res)
    if args.out:
        print(f"  results: {Path(args.out) / 'infer.json'}")
    return 0
