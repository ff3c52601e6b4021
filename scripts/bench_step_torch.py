"""PyTorch training-step bench: one step with CFPU arithmetic against the same step with native
PyTorch arithmetic, paired in one run (issue 14, section 3; the NumPy driver's twin is
scripts/bench_step.py).

One step is :func:`canna.torch.train.train_step`: forward, ``F.cross_entropy``, backward and
``torch.optim.SGD`` (lr 0.01, momentum 0.9) on the side's own copy of the model (same initial
weights, same batches). Models: the paper's MLP 784-500-500-10 (ReLU6, dropout 0.5) and a
LeNet-5-style CNN on 28x28 images (canna.torch.train.lenet's layers: conv 5x5 6 maps padding 2,
pool, conv 5x5 16 maps, pool, fully connected 120, 84, 10).

    native      the plain PyTorch model (nn.Linear, nn.Conv2d).
    approx      ``convert(copy.deepcopy(model), CFPUConfig.approx(3, "b"))``: every product of
                the three phases equal to the golden CFPU's, nothing counted.
    approx+cnt  the same with ``attach_counters(model)``: products, hits and nonzero products
                per layer and phase.
    approx+acc  the same with ``attach_counters(model, ArrayGeometry())``: plus the lane array's
                accounting (cycles, energy) of every matmul, what ``canna train`` does.
    py-floor    the plain model with each Linear and Conv2d computing exactly what it computes
                natively, but through a Python ``torch.autograd.Function`` (``python_floor``):
                the cost of a layer whose phases are decided in Python, as canna.torch's are,
                with no transform, scan or count: the floor of approx.

Timing is paired and interleaved (native, approx, approx+cnt, approx+acc, py-floor, native, ...): each
sample is the mean of enough steps to last about --sample-ms, the ratios are taken round by
round against the same round's native sample, min / median / max over the rounds (also as CPU
time, which leaves out the time other jobs held the core). One PyTorch
thread and one BLAS thread on both sides (what ``canna train --framework torch`` uses).
Goal (issue 14): median approx / native at most 1.2 at batch 32 and 1.1 at batch 100. Nothing is
asserted on time.

    python scripts/bench_step_torch.py [--rounds 7] [--batches 10,32,100] [--models mlp,lenet]
                                       [--sample-ms 100] [--data auto|random|fashion-mnist]
                                       [--epoch] [--block 20] [--quick]
                                       [--json build/bench_step_torch.json]

``--epoch`` adds, per model and batch, one epoch of the training images (each once, in one
shuffled order, the same on both sides) on native and on approx from the same initial weights,
interleaved in blocks of ``--block`` steps (native's block, approx's block, ...), with no reset
in between: the weights drift as in a training run. Reported as CPU time per side, the epoch's
ratio and min / median / max of the blocks' ratios.

Data: Fashion-MNIST's first training images when installed (``--data auto``), else standard
normal features. ``--quick`` (tests): 2 rounds of short samples, random data, a few seconds
(``--epoch``: 3 blocks of 2 steps at the largest batch).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

# scripts/ is this script's first import path: the NumPy driver's bench shares its helpers.
from bench_step import (OneLineParser, batch_list, blas_info, load_inputs, measure, paired_row, positive,
                        save_report, stats)
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig
from canna.torch import attach_counters, convert
from canna.torch.train import train_step

MODELS = ("mlp", "lenet")
TUNING_BITS = 3
LR, MOMENTUM, DROPOUT = 0.01, 0.9, 0.5
GOALS = {32: 1.2, 100: 1.1}
N_BATCHES = 16         # distinct batches each side cycles through
EPOCH_ROWS = 60000     # --epoch: every training image (Fashion-MNIST's training set is smaller)


def model_list(text: str) -> list[str]:
    names = text.split(",")
    bad = [n for n in names if n not in MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model {bad[0]!r}; known: {', '.join(MODELS)}")
    return names


def plain_model(kind: str) -> nn.Module:
    """The native side: plain PyTorch layers (the CFPU side converts a copy)."""
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 500), nn.ReLU6(), nn.Dropout(DROPOUT),
                             nn.Linear(500, 500), nn.ReLU6(), nn.Dropout(DROPOUT), nn.Linear(500, 10))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Dropout(DROPOUT),
        nn.Linear(120, 84), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(84, 10))


class _PassThroughLinear(torch.autograd.Function):
    """nn.Linear's arithmetic through a Python autograd Function: the floor of any layer that
    decides its GEMMs in Python (as canna.torch's do), with nothing else added."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad
        return (grad @ weight if want_x else None, grad.t() @ x if want_w else None,
                grad.sum(0) if want_b else None)


class _PassThroughConv(torch.autograd.Function):
    """nn.Conv2d's arithmetic (stride 1, no padding arguments beyond ``padding``) through a
    Python autograd Function, as above."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]], (1, 1), ctx.padding, (1, 1), False, (0, 0), 1,
            tuple(ctx.needs_input_grad[:3]))
        return gx, gw, gb, None


class _FloorLinear(nn.Linear):
    def forward(self, x):
        return _PassThroughLinear.apply(x, self.weight, self.bias)


class _FloorConv(nn.Conv2d):
    def forward(self, x):
        return _PassThroughConv.apply(x, self.weight, self.bias, self.padding)


def python_floor(model: nn.Module) -> nn.Module:
    """``model`` with its Linear and Conv2d layers' arithmetic (native, exact) run through
    Python autograd Functions (the same Parameters)."""
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = _FloorLinear
        elif type(m) is nn.Conv2d:
            m.__class__ = _FloorConv
    return model


def sides(kind: str, x: np.ndarray, y: np.ndarray, batch: int) -> dict:
    """name -> step function (with an untimed ``reset()``), every side on its own model."""
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if kind == "lenet":
        xs = xs.reshape(-1, 1, 28, 28)
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
    batches = [(xs[i * batch:(i + 1) * batch], ys[i * batch:(i + 1) * batch]) for i in range(N_BATCHES)]
    base = plain_model(kind)
    approx = CFPUConfig.approx(TUNING_BITS, "b")

    def side(counters):
        model = copy.deepcopy(base)
        if counters == "floor":
            model, counters = python_floor(model), None
        elif counters is not None:
            model = convert(model, approx)
            if counters != "none":
                attach_counters(model, ArrayGeometry() if counters == "acc" else None)
        initial = copy.deepcopy(model.state_dict())
        state = {"i": 0, "opt": None}

        def reset():
            """Back to the initial weights (untimed, before every sample), so that every sample
            sees the same early-training operands."""
            model.load_state_dict(initial)
            state["opt"] = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
            state["i"] = 0
            torch.manual_seed(1)        # the same dropout masks on every side

        def step():
            xb, yb = batches[state["i"] % N_BATCHES]
            state["i"] += 1
            train_step(model, state["opt"], xb, yb)
        reset()
        step.reset = reset
        return step

    return {"native": side(None), "approx": side("none"), "approx+cnt": side("cnt"),
            "approx+acc": side("acc"), "py-floor": side("floor")}


def epoch_row(kind: str, x: np.ndarray, y: np.ndarray, batch: int, block: int) -> tuple[dict, str]:
    """One epoch of ``x`` (shuffled once) on native and approx, interleaved block by block, and
    its line of text."""
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if kind == "lenet":
        xs = xs.reshape(-1, 1, 28, 28)
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
    order = torch.from_numpy(np.random.default_rng(1).permutation(len(xs)))
    base = plain_model(kind)
    models = {"native": base, "approx": convert(copy.deepcopy(base), CFPUConfig.approx(TUNING_BITS, "b"))}
    opts = {k: torch.optim.SGD(m.parameters(), lr=LR, momentum=MOMENTUM) for k, m in models.items()}
    steps = len(xs) // batch
    blocks = {k: [] for k in models}
    for start in range(0, steps, block):
        for k, m in models.items():
            torch.manual_seed(start)                # the same dropout masks on both sides
            c0 = time.process_time()
            for i in range(start, min(steps, start + block)):
                idx = order[i * batch:(i + 1) * batch]
                train_step(m, opts[k], xs[idx], ys[idx])
            blocks[k].append(time.process_time() - c0)
    total = {k: float(sum(v)) for k, v in blocks.items()}
    ratio = total["approx"] / total["native"]
    per_block = stats(np.array(blocks["approx"]) / np.array(blocks["native"]))
    goal = GOALS.get(batch)
    row = {"model": kind, "batch": batch, "steps": steps, "block": block, "cpu_seconds": total,
           "ratio": ratio, "block_ratio": per_block, "goal": goal,
           "met": None if goal is None else ratio <= goal}
    goal_text = "" if goal is None else f"; goal <= {goal}: {'met' if row['met'] else 'NOT met'}"
    return row, (f"one epoch, {steps} steps in blocks of {block}: CPU s native {total['native']:.2f}, "
                 f"approx {total['approx']:.2f}, approx / native {ratio:.3f} (blocks min / median / "
                 f"max {per_block['min']:.2f} / {per_block['median']:.2f} / {per_block['max']:.2f}){goal_text}")


def main(argv=None) -> int:
    ap = OneLineParser(prog="bench_step_torch.py", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=positive(int), default=7, help="paired rounds (default 7)")
    ap.add_argument("--batches", type=batch_list, default=[10, 32, 100], help="batch sizes (default 10,32,100)")
    ap.add_argument("--models", type=model_list, default=list(MODELS), help="mlp,lenet (default both)")
    ap.add_argument("--sample-ms", type=positive(float), default=100.0, help="length of one sample (default 100)")
    ap.add_argument("--data", choices=["auto", "random", "fashion-mnist"], default="auto")
    ap.add_argument("--epoch", action="store_true", help="also one epoch per model and batch (see above)")
    ap.add_argument("--block", type=positive(int), default=20, help="steps per block of --epoch (default 20)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of short samples, random data (tests)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    rounds, sample_s = (2, 0.002) if args.quick else (args.rounds, args.sample_ms / 1000)
    # --epoch: the whole training set (--quick: 3 blocks of 2 steps of the largest batch)
    block = 2 if args.quick else args.block
    n = (EPOCH_ROWS if not args.quick else 3 * block * max(args.batches)) if args.epoch else 0
    try:
        x, y, data_note = load_inputs("random" if args.quick else args.data,
                                      max(N_BATCHES * max(args.batches), n), np.random.default_rng(2026))
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    rows = []
    with threadpool_limits(1, user_api="blas"):
        blas = blas_info()
        blas_text = ", ".join(f"{b['library']} {b['threads']} thread" for b in blas)
        print(f"PyTorch training-step bench: CFPU t={TUNING_BITS} policy b all phases vs native "
              f"float32; {data_note}; {rounds} paired rounds; {platform.machine()} "
              f"{os.cpu_count()} cores, torch {torch.__version__} {torch.get_num_threads()} thread, "
              f"BLAS {blas_text}; "
              f"load average {load_start[0]:.2f} at the start")
        for kind in args.models:
            for batch in args.batches:
                times, cpu = measure(sides(kind, x, y, batch), rounds, sample_s)
                row, text = paired_row(times, cpu, GOALS.get(batch))
                rows.append({"model": kind, "batch": batch, **row})
                print(f"  {kind:5s} batch {batch:4d}: {text}", flush=True)
        epochs = []
        for kind in args.models if args.epoch else ():
            for batch in args.batches:
                row, text = epoch_row(kind, x[:n], y[:n], batch, block)
                epochs.append(row)
                print(f"  {kind:5s} batch {batch:4d}: {text}", flush=True)
    load_end = os.getloadavg()
    print(f"  load average {load_end[0]:.2f} at the end (other jobs slow both sides, not always equally)")
    report = {"command": " ".join(["bench_step_torch.py", *(argv if argv is not None else sys.argv[1:])]),
              "tuning_bits": TUNING_BITS, "policy": "b", "data": data_note, "rounds": rounds,
              "sample_ms": 1000 * sample_s, "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "blas": blas,
              "load_average": {"start": list(load_start), "end": list(load_end)},
              "goals": {str(k): v for k, v in GOALS.items()}, "rows": rows, "epochs": epochs}
    save_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
