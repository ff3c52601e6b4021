"""Training-step bench: one SGD step with approximate arithmetic against the same step with native
arithmetic, paired in one run (issue 14, section 3).

What one step is (both sides): :func:`canna.nn.train.sgd_step`, exactly what ``canna train`` runs
per mini-batch: the forward pass of the paper's 784-500-500-10 MLP (ReLU6, dropout 0.5 from a
seeded generator), softmax cross-entropy, the backward error and weight gradients, and the SGD
update with momentum (lr 0.01, momentum 0.9: preset default), in place on the side's own copy of
the network (same initial weights, same batches).

    native   backend ``native``: plain float32 NumPy GEMMs (``x @ W``, ``delta @ W.T`` on a
             transposed view, ``x.T @ delta``), exact plan, nothing counted.
    approx   backend ``golden-fast``, uniform t=4 policy b in all three phases (the checked
             operands by default: weight, weight, input): every product of every GEMM equal to
             the golden CFPU's; products, hits and nonzero products counted per layer and phase
             in a fresh ``Counters`` per step, as training counts them; no lane-array accounting
             (``canna train --no-accounting``).
    approx+acc  the same plus the lane-array accounting of every matmul (16 lanes, exact
             multiply 4 cycles: cycles and energy), what ``canna train`` does by default.

Timing is paired and interleaved: every round runs native, approx, approx-noacc (A B C A B C ...),
each sample the mean of enough steps to last about --sample-ms; the ratios are taken round by
round (approx / native of the same round) so a slow moment of the machine hits both sides, and
min / median / max over the rounds are printed. Both sides run their steps under the same BLAS
thread count: by default the one training uses (``canna.nn.train.blas_threads``: one thread for
these small GEMMs), or --blas-threads N, or ``library`` (the BLAS library's own setting). The
goal (issue 14): median approx / native at most 1.2 at batch 32 and 1.1 at batch 100 (printed
for approx+acc too). Nothing is asserted on time.

    python scripts/bench_step.py [--rounds 11] [--batches 10,32,100] [--sample-ms 100]
                                 [--blas-threads auto|N|library] [--data auto|random|fashion-mnist] [--quick]
                                 [--json build/bench_step.json]

Data: Fashion-MNIST's first training images when installed (/usr/share/datasets/fashion-mnist,
``--data auto``), else random NN-like input (standard normal features, what the standardised
images look like to the network). ``--quick`` (tests): 2 rounds of short samples, random data.
A PyTorch driver adds one function to DRIVERS that returns its steps by name, ``native`` and
``approx`` at least (a step's optional ``reset()`` runs, untimed, before every sample).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from canna.files import write_json
from canna.nn.backends import get_backend
from canna.nn.mlp import MLP, ArithPlan, Counters
from canna.nn.train import blas_threads, sgd_step
from canna.spec.array import ArrayGeometry

SIZES = [784, 500, 500, 10]
TUNING_BITS = 4
LR, MOMENTUM, DROPOUT = 0.01, 0.9, 0.5
GOALS = {32: 1.2, 100: 1.1}
N_BATCHES = 32         # distinct batches each side cycles through


def stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the option, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def batch_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def threads_arg(text: str):
    if text in ("auto", "library"):
        return None if text == "library" else text
    return positive(int)(text)


def positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return v
    return parse


def load_inputs(kind: str, n: int, rng) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` input rows and labels: Fashion-MNIST's first training images, or random NN-like."""
    if kind in ("auto", "fashion-mnist"):
        from canna.nn.datasets import DatasetError, load_dataset
        try:
            data = load_dataset("fashion-mnist")
            return data.x_train[:n], data.y_train[:n], "fashion-mnist (first training images)"
        except DatasetError as e:
            if kind == "fashion-mnist":
                raise ValueError(f"--data fashion-mnist: {e}") from None
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    return x, rng.integers(0, SIZES[-1], n), "random N(0, 1) features"


def numpy_driver(x, y, batch: int, threads) -> dict:
    """The NumPy driver's steps, each on its own network: ``native`` and ``approx`` (what every
    driver returns), and ``approx+acc``. Every variant but native is timed against native."""
    batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(N_BATCHES)]
    L = len(SIZES) - 1

    def side(plan, backend, geometry, count: bool):
        model = MLP(SIZES, seed=0)
        initial = [p.copy() for p in model.weights + model.biases]
        velocity = [np.zeros_like(p) for p in initial]
        it = [0]
        carry = {}      # as training: the update prepares the next step's weights where it can
        initial_carry = initial_transforms(model, plan, backend, count)

        def step():
            i = it[0]
            it[0] += 1
            xb, yb = batches[i % N_BATCHES]
            counters = Counters(L, geometry) if count else None
            sgd_step(model, velocity, xb, yb, plan, backend, counters, lr=LR, momentum=MOMENTUM,
                     dropout=DROPOUT, rng=np.random.default_rng([0, 2, i]), iteration=i, threads=threads,
                     carry=carry)

        def reset():
            """Back to the initial network (untimed, before every sample): hundreds of steps on
            a few batches would overfit them, and vanishing errors turn subnormal, which no
            real training step sees at this stage. The carry goes back to the initial weights'
            transforms, so that every timed step finds what a training step finds: the
            previous update's transforms."""
            for p, p0 in zip(model.weights + model.biases, initial):
                np.copyto(p, p0)
            for v in velocity:
                v[...] = 0.0
            carry.clear()
            carry.update(initial_carry)
            it[0] = 0
        step.reset = reset
        return step

    approx = ArithPlan.uniform(L, TUNING_BITS, "b")
    return {"native": side(ArithPlan.exact(L), "native", None, False),
            "approx": side(approx, "golden-fast", None, True),
            "approx+acc": side(approx, "golden-fast", ArrayGeometry(), True)}


def initial_transforms(model: MLP, plan: ArithPlan, backend: str, counted: bool) -> dict:
    """What a step's update would carry to the next step (``sgd_step(carry=...)``) had it just
    made ``model``'s weights: layer -> ``(prepared, columns, nonzero)``, as
    :meth:`MLP.forward` takes it; empty for a backend without a fused update."""
    be = get_backend(backend)
    if be.update_prepare is None or not plan.checked_right("forward"):
        return {}
    out = {}
    for i, w in enumerate(model.weights):
        cfg = plan.config(i, "forward")
        if cfg.enabled:
            share = MLP._shares_transform(plan, i)
            out[i] = (be.prepare(w, cfg, columns=share, nonzero=counted), share, counted)
    return out


DRIVERS = {"numpy": numpy_driver}


def blas_info():
    """threadpoolctl's view of the BLAS libraries (threads: the library's own setting)."""
    from threadpoolctl import threadpool_info
    return [{"library": d.get("internal_api"), "version": d.get("version"),
             "threads": d.get("num_threads")} for d in threadpool_info() if d.get("user_api") == "blas"]


def steps_for(fn, sample_s: float) -> int:
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, int(sample_s / max(time.perf_counter() - t0, 1e-7)))


def measure(steps: dict, rounds: int, sample_s: float) -> tuple[dict, dict]:
    """Paired interleaved rounds: name -> seconds per step, one per round, as wall time and as
    this process's CPU time (which leaves out the time other jobs held the core)."""
    n = {name: steps_for(fn, sample_s) for name, fn in steps.items()}
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            getattr(fn, "reset", lambda: None)()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n[name]):
                fn()
            wall[name].append((time.perf_counter() - t0) / n[name])
            cpu[name].append((time.process_time() - c0) / n[name])
    return wall, cpu


def ratios(times: dict) -> dict:
    native = np.array(times["native"])
    return {k: stats(np.array(v) / native) for k, v in times.items() if k != "native"}


def main(argv=None) -> int:
    ap = OneLineParser(prog="bench_step.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=positive(int), default=11, help="paired rounds (default 11)")
    ap.add_argument("--batches", type=batch_list, default=[10, 32, 100], help="batch sizes (default 10,32,100)")
    ap.add_argument("--sample-ms", type=positive(float), default=100.0, help="length of one sample (default 100)")
    ap.add_argument("--blas-threads", type=threads_arg, default="auto",
                    help="BLAS threads in both sides' steps: auto (default: as training, "
                         "canna.nn.train.blas_threads), a number, or 'library' (the library's own)")
    ap.add_argument("--data", choices=["auto", "random", "fashion-mnist"], default="auto")
    ap.add_argument("--driver", choices=list(DRIVERS), default="numpy")
    ap.add_argument("--quick", action="store_true", help="2 rounds of short samples, random data (tests)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    rounds, sample_s = (2, 0.005) if args.quick else (args.rounds, args.sample_ms / 1000)
    rng = np.random.default_rng(2026)
    try:
        x, y, data_note = load_inputs("random" if args.quick else args.data, N_BATCHES * max(args.batches), rng)
    except ValueError as e:
        ap.error(str(e))
    blas = blas_info()
    load_start = os.getloadavg()
    blas_text = ", ".join(f"{b['library']} {b['version']} {b['threads']} threads" for b in blas)
    print(f"training-step bench ({args.driver} driver): {'-'.join(map(str, SIZES))}, t={TUNING_BITS} policy b "
          f"all phases vs native float32; {data_note}; {rounds} paired rounds; {platform.machine()} "
          f"{os.cpu_count()} cores, BLAS {blas_text}; "
          f"load average {load_start[0]:.2f} at the start")
    rows = []
    for batch in args.batches:
        threads = blas_threads(SIZES, batch) if args.blas_threads == "auto" else args.blas_threads
        times, cpu = measure(DRIVERS[args.driver](x, y, batch, threads), rounds, sample_s)
        row, text = paired_row(times, cpu, GOALS.get(batch))
        rows.append({"batch": batch, **row, "blas_threads": threads or "library"})
        print(f"  batch {batch:4d}: {text}", flush=True)
    load_end = os.getloadavg()
    print(f"  load average {load_end[0]:.2f} at the end (the other core's jobs slow both sides, "
          f"not always equally)")
    report = {"command": " ".join(["bench_step.py", *(argv if argv is not None else sys.argv[1:])]),
              "driver": args.driver, "network": SIZES, "tuning_bits": TUNING_BITS, "policy": "b",
              "data": data_note, "rounds": rounds, "sample_ms": 1000 * sample_s,
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "numpy": np.__version__,
              "blas": blas, "blas_threads_limit": args.blas_threads,
              "load_average": {"start": list(load_start), "end": list(load_end)},
              "goals": {str(k): v for k, v in GOALS.items()}, "batches": rows}
    save_report(args.json, report)
    return 0


def paired_row(times: dict, cpu: dict, goal: float | None) -> tuple[dict, str]:
    """One batch's figures from :func:`measure`'s wall and CPU times per side (every bench of a
    training step reports them so), and their line of text."""
    row = {"seconds": {k: stats(v) for k, v in times.items()}, "ratio": ratios(times),
           "cpu_seconds": {k: stats(v) for k, v in cpu.items()}, "cpu_ratio": ratios(cpu),
           "goal": goal, "met": None if goal is None else
           {k: v["median"] <= goal for k, v in ratios(times).items()}}
    goal_text = "" if goal is None else f"; goal (median) <= {goal}: " + ", ".join(
        f"{k} {'met' if ok else 'NOT met'}" for k, ok in row["met"].items())
    ms = ", ".join(f"{k} {1e3 * v['median']:.2f}" for k, v in row["seconds"].items())
    text = "; ".join(f"{k} / native {v['min']:.3f} / {v['median']:.3f} / {v['max']:.3f}"
                     for k, v in row["ratio"].items())
    cpu_text = ", ".join(f"{k} {v['median']:.3f}" for k, v in row["cpu_ratio"].items())
    return row, (f"ms per step (median) {ms}; min / median / max {text}{goal_text}; "
                 f"CPU-time ratios (median) {cpu_text}")


def save_report(path, report: dict) -> None:
    """Write a bench's report as strict JSON to ``path`` (folders made), when one was asked for."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(path, report)
        print(f"  wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
