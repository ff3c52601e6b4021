"""``canna workload`` (sim/workload.py), the source of the energy model's hit rates: run_table's
hit rates against golden.mul_bits on the same operands (the trained MLP's real layer inputs
times its weights), and the command's bad options: one line, exit status 2, no JSON written."""
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from canna.sim import golden, workload
from canna.spec.config import CFPUConfig


def test_run_table_hit_rates_equal_golden(monkeypatch):
    trained = []
    real_train = workload.train_digits_mlp

    def train(seed=0, **kw):          # the table's own workload, kept to restate its operands
        trained.append(real_train(seed, **kw))
        return trained[-1]
    monkeypatch.setattr(workload, "train_digits_mlp", train)
    samples, max_t = 12, 3
    out = io.StringIO()
    result = workload.run_table(seed=1, samples=samples, max_tuning_bits=max_t, out=out)
    work, = trained
    assert work.seed == 1 and result["samples"] == samples
    # the layers' real operands: standardised inputs, then the ReLU activations, times weights
    (w0, b0), (w1, _) = work.layers
    x = work.x_test[:samples]
    pairs = [(x, w0), (np.maximum(x @ w0 + b0, 0).astype(np.float32), w1)]
    assert [w.shape for _, w in pairs] == [(64, 32), (32, 10)]
    products = samples * (64 * 32 + 32 * 10)
    rows = result["rows"]
    assert [(r["tuning_bits"], r["policy"]) for r in rows] == \
        [(t, p) for t in range(max_t + 1) for p in ("b", "dual")]
    table = [line.split() for line in out.getvalue().splitlines()[3:-1]]
    assert len(table) == len(rows)
    for row, printed in zip(rows, table):
        config = CFPUConfig.approx(row["tuning_bits"], row["policy"])
        hits = fast = 0
        for a, w in pairs:
            s, k = a.shape
            n = w.shape[1]
            ai = np.repeat(np.arange(s), k * n)              # every (input, k, output) product
            ki = np.tile(np.repeat(np.arange(k), n), s)
            ji = np.tile(np.arange(n), s * k)
            av, wv = a[ai, ki], w[ki, ji]
            hit = golden.mul_bits(av.view(np.uint32), wv.view(np.uint32), config).hit
            hits += int(hit.sum())
            fast += int((hit | (av == 0) | (wv == 0) | ~np.isfinite(av) | ~np.isfinite(wv)).sum())
        assert (row["hits"], row["products"]) == (hits, products), config.describe()
        assert row["fast_rate"] == fast / products
        assert row["hit_rate"] == hits / products
        assert printed[:4] == [str(row["tuning_bits"]), row["policy"], f"{100 * hits / products:.2f}%",
                               f"{100 * fast / products:.2f}%"]
        assert 0 <= row["test_accuracy"] <= 1
    rates = {(r["tuning_bits"], r["policy"]): r["hit_rate"] for r in rows}
    assert all(rates[t, "b"] <= rates[t, "dual"] for t in range(max_t + 1))
    assert all(rates[t + 1, p] <= rates[t, p] for t in range(max_t) for p in ("b", "dual"))
    assert rates[0, "b"] > 0.5
    assert rows[0]["fast_rate"] == 1.0      # t = 0: every product of normal operands hits
    print(f"run_table: {len(rows)} configurations x {products} products of {samples} inputs, "
          f"hit rates equal golden.mul_bits (t=0 b {rates[0, 'b']:.4f} .. t={max_t} b "
          f"{rates[max_t, 'b']:.4f})")


def canna_command() -> str:
    """The installed console script ``canna`` (beside this interpreter, or on PATH)."""
    here = Path(sys.executable).parent / "canna"
    found = str(here) if here.exists() else shutil.which("canna")
    assert found, "the canna console script is not installed (pip install -e .)"
    return found


BAD_OPTIONS = [
    (["--samples", "0"], "--samples must be positive, got 0"),
    (["--samples", "many"], "argument --samples: invalid int value: 'many'"),
    (["--seed", "-1"], "--seed must be in 0..2^32-1, got -1"),
    (["--seed", str(2**32)], "--seed must be in 0..2^32-1"),
    (["--max-tuning-bits", "23"], "--max-tuning-bits must be in 0..22, got 23"),
    (["--max-tuning-bits", "-1"], "--max-tuning-bits must be in 0..22, got -1"),
    # argparse reports unknown options from the top-level parser
    (["--frobnicate"], "unrecognized arguments: --frobnicate", "canna"),
]


def run_cli(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def check_one_line_error(p, message, prog="canna workload"):
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.endswith("\n"), p.stderr
    assert p.stderr.startswith(f"{prog}: error: ") and message in p.stderr, p.stderr


def test_cli_bad_options_one_line_exit_2(tmp_path):
    target = tmp_path / "out" / "table.json"
    for options, message, *prog in BAD_OPTIONS:
        p = run_cli([canna_command(), "workload", "--json", str(target), *options])
        check_one_line_error(p, message, *prog)
        assert not target.parent.exists() or not any(target.parent.iterdir()), options
    # an unwritable --json fails before the computation, as one line too
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = run_cli([canna_command(), "workload", "--json", str(blocker / "table.json")])
    check_one_line_error(p, f"cannot write {blocker}")
    print(f"canna workload --json F: {len(BAD_OPTIONS) + 1} bad options, each one line and exit 2, "
          f"nothing written")


def test_python_m_cli_bad_option_one_line_exit_2(tmp_path):
    p = run_cli([sys.executable, "-m", "canna.cli", "workload", "--json", str(tmp_path / "t.json"),
                 "--samples", "0"])
    print(f"python -m canna.cli workload --samples 0: exit {p.returncode}, "
          f"{p.stderr.count(chr(10))} line(s) on stderr")
    check_one_line_error(p, "--samples must be positive, got 0")
