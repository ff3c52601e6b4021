"""``canna workload``: hit rate and error of the CFPU on a real NN workload.

The workload is a small MLP (64-32-10, ReLU) trained by scikit-learn on the bundled digits set;
its layers' real operands -- standardised inputs and ReLU activations times the trained weights,
cast to float32 -- go through the golden CFPU at every tuning-bit level and both policies. The
weights are the second (checked) operand, as in ``y = x @ W``. Printed per configuration:

* hit rate -- share of all products that ran approximately;
* fast rate -- share of all products that skip the exact multiplier: hits and products with a
  zero, infinite or NaN operand (one cycle on the lane array; the reading of the paper's 100% at
  0 tuning bits, docs/savings.md);
* mean / max relative error of the products (over non-zero products, hits and exact ones alike),
  and the proven worst case of a hit (:func:`golden.approx_error_bound`);
* test accuracy of the MLP when every product of inference uses that configuration (fast matmul).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from canna.spec.config import CFPUConfig, Policy, check_tuning_bits

from . import golden
from .lanes import multiplier_bypassed
from .matmul import matmul_fast


@dataclass
class Workload:
    layers: list            # [(W float32 (in, out), b float32 (out,))]
    x_test: np.ndarray      # float32
    y_test: np.ndarray
    seed: int

    def layer_inputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The real first operand of every layer's matmul, for inputs x (exact arithmetic)."""
        inputs = []
        h = x
        for i, (w, b) in enumerate(self.layers):
            inputs.append(h)
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0).astype(np.float32)
        return inputs


def train_digits_mlp(seed: int = 0, hidden: int = 32) -> Workload:
    """Train the reference MLP on scikit-learn's digits (standardised, fixed split by seed)."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed,
                                                        stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", max_iter=300,
                        random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    layers = [(w.astype(np.float32), b.astype(np.float32))
              for w, b in zip(clf.coefs_, clf.intercepts_)]
    return Workload(layers, x_test.astype(np.float32), y_test, seed)


def accuracy(work: Workload, config: CFPUConfig) -> float:
    h = work.x_test
    for i, (w, b) in enumerate(work.layers):
        h = matmul_fast(h, w, config).value + b
        if i < len(work.layers) - 1:
            h = np.maximum(h, 0)
    return float((h.argmax(axis=1) == work.y_test).mean())


def product_stats(work: Workload, config: CFPUConfig, samples: int) -> dict:
    """Hit rate and relative error over every product of every layer for `samples` inputs."""
    hits = products = fast = 0
    err_sum = 0.0
    err_max = 0.0
    nonzero = 0
    for a, (w, _) in zip(work.layer_inputs(work.x_test[:samples]), work.layers):
        a_bits = a.view(np.uint32)[:, :, None]
        w_bits = w.view(np.uint32)[None, :, :]
        approx = golden.mul_bits(a_bits, w_bits, config)
        exact = golden.mul_bits(a_bits, w_bits)
        ex = exact.bits.view(np.float32).astype(np.float64)
        ap = approx.bits.view(np.float32).astype(np.float64)
        nz = ex != 0
        rel = np.abs(ap[nz] - ex[nz]) / np.abs(ex[nz])
        hits += int(approx.hit.sum())
        fast += int((approx.hit | multiplier_bypassed(a_bits, w_bits)).sum())
        products += approx.hit.size
        nonzero += int(nz.sum())
        err_sum += float(rel.sum())
        err_max = max(err_max, float(rel.max(initial=0.0)))
    return {"hits": hits, "products": products, "hit_rate": hits / products, "fast_rate": fast / products,
            "mean_rel_error": err_sum / max(nonzero, 1), "max_rel_error": err_max}


def run_table(seed: int = 0, samples: int = 200, max_tuning_bits: int = 10, out=None) -> dict:
    out = out or sys.stdout   # looked up per call: sys.stdout may be replaced
    t0 = time.time()
    work = train_digits_mlp(seed)
    exact_acc = accuracy(work, CFPUConfig.exact())
    sizes = "-".join(str(n) for n in [work.layers[0][0].shape[0]] + [w.shape[1] for w, _ in work.layers])
    samples = min(samples, len(work.y_test))
    print(f"# canna workload: MLP {sizes} trained by scikit-learn on digits (seed {seed}); "
          f"products of {samples} test inputs x trained weights per configuration; "
          f"accuracy on all {len(work.y_test)} test inputs; checked operand: the weight (policy b), "
          f"either (dual)", file=out)
    print(f"# exact test accuracy {100 * exact_acc:.2f}%", file=out)
    print(f"{'t':>2} {'policy':>6} {'hit rate':>8} {'fast rate':>9} {'mean rel err':>12} {'max rel err':>11} "
          f"{'bound (hit)':>11} {'accuracy':>8}", file=out)
    rows = []
    for t in range(max_tuning_bits + 1):
        for policy in Policy:
            cfg = CFPUConfig.approx(t, policy)
            s = product_stats(work, cfg, samples)
            acc = accuracy(work, cfg)
            row = {"tuning_bits": t, "policy": policy.value, **s, "error_bound": golden.approx_error_bound(t),
                   "test_accuracy": acc}
            rows.append(row)
            print(f"{t:>2} {policy.value:>6} {100 * s['hit_rate']:7.2f}% {100 * s['fast_rate']:8.2f}% "
                  f"{s['mean_rel_error']:12.3e} "
                  f"{s['max_rel_error']:11.3e} {row['error_bound']:11.3e} {100 * acc:7.2f}%", file=out)
    products = rows[0]["products"]
    print(f"# {products} products per configuration, {len(rows)} configurations, "
          f"{time.time() - t0:.1f} s", file=out)
    return {"seed": seed, "samples": samples, "exact_test_accuracy": exact_acc, "rows": rows}


def register(sub) -> None:
    from canna.cli import path_arg
    p = sub.add_parser("workload", help="hit rate and error per tuning bit on a digits MLP",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=200, help="test inputs whose products are measured")
    p.add_argument("--max-tuning-bits", type=int, default=10)
    p.add_argument("--json", type=path_arg, help="also write the table as JSON here (atomically)")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from canna.cli import CliError
    from canna.files import OutputError, check_output_dir, write_json
    try:
        check_tuning_bits(args.max_tuning_bits, "--max-tuning-bits")
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.samples < 1:
        raise CliError(f"--samples must be positive, got {args.samples}")
    if not 0 <= args.seed < 2**32:
        raise CliError(f"--seed must be in 0..2^32-1, got {args.seed}")
    if args.json:   # fail before the computation, not after it
        path = Path(args.json)
        try:
            check_output_dir(path.parent, [path.name], "--json")
        except OutputError as e:
            raise CliError(f"cannot write {args.json}: {e}") from None
    result = run_table(args.seed, args.samples, args.max_tuning_bits)
    if args.json:
        try:
            write_json(args.json, result)
        except OSError as e:
            raise CliError(f"cannot write {args.json}: {e.strerror}") from None
    return 0
